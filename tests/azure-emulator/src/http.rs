//! The request as every emulated service sees it: the *original* Azure URL, headers and the whole body.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use url::Url;

/// One inbound request, after the router rebuilt the URL it was meant for.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// The original URL, e.g. `https://management.azure.com/subscriptions/...?...`.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// Lower-cased host of the original URL.
    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_ascii_lowercase()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// First value of a query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        self.url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// The bearer token, if the request carries one.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
    }
}
