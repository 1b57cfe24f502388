//! Shared fixtures of the `azure_*` tests: a recording axum stub used as the test proxy, and counting credentials.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cmk_handler::azure::{ClientConfig, RetryOptions, Transport};
use cmk_handler::cloud::Cloud;

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the stub answers: status, headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, String);

type Script = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// A recording HTTP stub on 127.0.0.1:0; `script` gets each request and its 0-based index.
pub struct Stub {
    pub url: url::Url,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    pub async fn start(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let recorded = requests.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorded = recorded.clone();
            let script = script.clone();
            async move {
                let request = Recorded {
                    at: Instant::now(),
                    method,
                    path: uri.path().to_owned(),
                    query: url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect(),
                    headers,
                    body: body.to_vec(),
                };
                let index = {
                    let mut all = recorded.lock().unwrap();
                    all.push(request.clone());
                    all.len() - 1
                };
                let (status, headers, body) = script(&request, index);
                let mut response: Response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

pub fn json(status: u16, body: serde_json::Value) -> Reply {
    (status, vec![("content-type", "application/json".to_owned())], body.to_string())
}

/// Key Vault's answer to a request without a token: 401 with the challenge naming the vault's tenant.
pub fn key_vault_challenge(tenant: &str) -> Reply {
    (
        401,
        vec![
            ("content-type", "application/json".to_owned()),
            (
                "www-authenticate",
                format!(
                    "Bearer authorization=\"https://login.windows.net/{tenant}\", resource=\"https://vault.azure.net\""
                ),
            ),
        ],
        r#"{"error":{"code":"Unauthorized","message":"Request is missing a Bearer or PoP token."}}"#.to_owned(),
    )
}

/// A credential returning a fixed token and counting its calls.
#[derive(Debug, Default)]
pub struct CountingToken {
    pub calls: AtomicUsize,
}

impl CountingToken {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for CountingToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(azure_core::credentials::AccessToken::new(
            "static-token",
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

pub fn fast_retry() -> RetryOptions {
    RetryOptions {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_attempts: 4,
        budget: Duration::from_secs(10),
    }
}

pub fn config(proxy: &url::Url, retry: RetryOptions) -> ClientConfig {
    ClientConfig {
        cloud: Cloud::Public,
        test_proxy: Some(proxy.clone()),
        http_timeout: Duration::from_secs(5),
        retry,
        service_bus_namespace: "myns.servicebus.windows.net".to_owned(),
        uami_client_id: None,
    }
}

pub fn transport(proxy: &url::Url) -> Transport {
    Transport::new(Cloud::Public, Some(proxy.clone()), Duration::from_secs(5)).unwrap()
}
