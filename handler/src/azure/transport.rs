//! The only way out to Azure: one pooled HTTP client behind the allow-list, the test-proxy rewrite and trace propagation.
//!
//! Every request — ours and the ones `azure_identity` credentials make — passes [`Transport`]. The host is checked
//! first, so a request to a host outside the configured cloud is refused before any token is fetched or attached.
//! With a test proxy the request keeps its real `https://` URL everywhere above this layer; only the bytes go to the
//! loopback proxy, with the original origin in `x-recording-upstream-base-uri` (the Azure SDK test-proxy convention).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::Injector;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use crate::cloud::{Cloud, is_loopback_host};
use crate::error::{AzureService, Error, TransportError, TransportErrorKind};

/// Header carrying the original origin when a request is sent to the test proxy.
pub const UPSTREAM_HEADER: &str = "x-recording-upstream-base-uri";

/// The instance-metadata address `azure_identity` uses for managed identity outside App Service.
const IMDS_HOST: &str = "169.254.169.254";

/// Largest response body read from Azure unless a request allows more: the biggest documents we read (a storage
/// account, a page of credentials, a key) are a few KiB, so anything near this is not what the API documents.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The pooled, allow-listed outbound HTTP transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Arc<LazyClient>,
    cloud: Cloud,
    /// Timeout of one request unless it sets its own; always shortened to the invocation's deadline.
    timeout: Duration,
    test_proxy: Option<Url>,
    /// Hosts allowed besides the cloud's own endpoints (the configured Service Bus namespace), lower-case.
    extra_hosts: Vec<String>,
}

/// The pooled reqwest client, built once, off the async runtime, on first use or by [`Transport::warm_up`].
///
/// Building it loads the system trust store (the CA bundle and every file under `/etc/ssl/certs`), which the host's
/// readiness probe must not wait for: the handler binds its port first and builds this in the background
/// (ARCHITECTURE.md, decision "Nothing before listening"). A request that arrives meanwhile waits for the same build.
#[derive(Debug)]
struct LazyClient {
    connect_timeout: Duration,
    client: tokio::sync::OnceCell<reqwest::Client>,
}

impl LazyClient {
    async fn get(&self) -> Result<&reqwest::Client, String> {
        let connect_timeout = self.connect_timeout;
        self.client
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || build_client(connect_timeout))
                    .await
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?
            })
            .await
    }
}

/// Each request sets its own timeout (the invocation's deadline shortens it), so the client has none of its own.
fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // A redirect could lead anywhere; nothing we call redirects, so never follow one.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A request as our clients describe it: the real Azure URL, never rewritten.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// Overrides the transport's HTTP timeout (long polls such as Service Bus receives).
    pub timeout: Option<Duration>,
    /// Overrides [`DEFAULT_MAX_RESPONSE_BYTES`] (Service Bus receives return whole messages).
    pub max_response_bytes: Option<usize>,
    /// Whether the W3C trace context goes out as `traceparent`/`tracestate` headers. Off for Service Bus sends, where
    /// every extra header becomes an application property of the message.
    pub propagate_trace_context: bool,
}

impl OutgoingRequest {
    pub fn new(method: reqwest::Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            max_response_bytes: None,
            propagate_trace_context: true,
        }
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.body = Some(body.to_string().into_bytes());
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Deserializes the body; a body that is not what the API documents is a [`TransportErrorKind::BadResponse`].
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        service: AzureService,
        operation: &'static str,
    ) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Transport(TransportError {
                service,
                operation,
                kind: TransportErrorKind::BadResponse,
                message: format!("unexpected response body: {e}"),
            })
        })
    }
}

/// The value that goes into the `Authorization` header. `Debug` never shows it.
#[derive(Clone)]
pub struct AuthorizationValue(pub(crate) String);

impl std::fmt::Debug for AuthorizationValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthorizationValue(<redacted>)")
    }
}

impl Transport {
    /// Builds the transport. `test_proxy` must be `http://` on a loopback address; anything else is refused, because
    /// sending Azure-bound requests (with tokens) to an arbitrary address is exactly what the allow-list prevents.
    pub fn new(cloud: Cloud, test_proxy: Option<Url>, timeout: Duration) -> Result<Self, String> {
        if let Some(proxy) = &test_proxy {
            validate_test_proxy(proxy)?;
        }
        let client =
            Arc::new(LazyClient { connect_timeout: timeout.min(Duration::from_secs(10)), client: Default::default() });
        Ok(Self { inner: Arc::new(Inner { client, cloud, timeout, test_proxy, extra_hosts: Vec::new() }) })
    }

    /// Builds the HTTP client now (on a blocking thread) unless it exists; the handler calls it right after it starts
    /// listening, so the first invocation finds the client ready.
    pub async fn warm_up(&self) -> Result<(), String> {
        self.inner.client.get().await.map(|_| ())
    }

    /// Also allows `host` (the configured Service Bus namespace FQDN, which may sit outside the cloud's suffix).
    pub fn with_allowed_host(self, host: &str) -> Self {
        let mut extra_hosts = self.inner.extra_hosts.clone();
        extra_hosts.push(host.to_ascii_lowercase());
        Self {
            inner: Arc::new(Inner {
                client: self.inner.client.clone(),
                cloud: self.inner.cloud,
                timeout: self.inner.timeout,
                test_proxy: self.inner.test_proxy.clone(),
                extra_hosts,
            }),
        }
    }

    pub fn cloud(&self) -> Cloud {
        self.inner.cloud
    }

    /// The allow-list check. Callers run it before fetching a token for `url`.
    pub fn ensure_allowed(&self, url: &Url) -> Result<(), Error> {
        let host = url.host_str().unwrap_or_default();
        let allowed = url.scheme() == "https"
            && (self.inner.cloud.allowed_host(host)
                || self.inner.extra_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
        if allowed { Ok(()) } else { Err(Error::HostNotAllowed { host: host.to_owned() }) }
    }

    /// Sends one request (no retries) and reads the whole response, within the invocation's deadline and the size cap.
    /// Non-2xx statuses are returned, not errors.
    pub async fn execute(
        &self,
        service: AzureService,
        operation: &'static str,
        request: &OutgoingRequest,
        authorization: Option<&AuthorizationValue>,
    ) -> Result<HttpResponse, Error> {
        self.ensure_allowed(&request.url)?;
        let (target, upstream) = self.destination(&request.url);
        tracing::debug!(%service, operation, method = %request.method, url = %request.url, "azure request");
        let mut headers = request.headers.clone();
        if let Some(upstream) = upstream {
            headers.insert(HeaderName::from_static(UPSTREAM_HEADER), upstream);
        }
        if request.propagate_trace_context {
            inject_trace_context(&mut headers);
        }
        if let Some(auth) = authorization {
            let mut value = HeaderValue::from_str(&auth.0).map_err(|_| {
                transport_error(
                    service,
                    operation,
                    TransportErrorKind::BadResponse,
                    "authorization value is not a valid header",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let timeout = super::deadline::bounded(request.timeout.unwrap_or(self.inner.timeout));
        if timeout.is_zero() {
            return Err(out_of_time(service, operation));
        }
        let client = self
            .inner
            .client
            .get()
            .await
            .map_err(|message| transport_error(service, operation, TransportErrorKind::Connect, &message))?;
        let mut builder = client.request(request.method.clone(), target).headers(headers).timeout(timeout);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        } else if matches!(request.method, reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH) {
            // Azure front doors answer 411 to a body-less POST without Content-Length.
            builder = builder.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let mut response = builder.send().await.map_err(|e| map_reqwest_error(service, operation, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(detail) = proxy_dns_error(&headers) {
            let message = format!("{} does not resolve ({detail})", request.url.host_str().unwrap_or_default());
            return Err(transport_error(service, operation, TransportErrorKind::NameNotResolved, &message));
        }
        let limit = request.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        let too_large = || {
            let message = format!("the response body exceeds the {limit}-byte limit");
            transport_error(service, operation, TransportErrorKind::BadResponse, &message)
        };
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| map_reqwest_error(service, operation, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(%service, operation, status, "azure response");
        Ok(HttpResponse { status, headers, body })
    }

    /// Where the bytes go, and the upstream header value when that is the test proxy.
    fn destination(&self, url: &Url) -> (Url, Option<HeaderValue>) {
        let Some(proxy) = &self.inner.test_proxy else { return (url.clone(), None) };
        let origin = match url.port() {
            Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default()),
            None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
        };
        let mut target = url.clone();
        // Both are absolute http(s) URLs with hosts, so these setters cannot fail.
        let _ = target.set_scheme(proxy.scheme());
        let _ = target.set_host(proxy.host_str());
        let _ = target.set_port(proxy.port_or_known_default());
        (target, HeaderValue::from_str(&origin).ok())
    }
}

fn validate_test_proxy(proxy: &Url) -> Result<(), String> {
    if proxy.scheme() != "http" {
        return Err(format!("refusing test proxy {proxy}: it must be an http:// URL on a loopback address"));
    }
    if !proxy.host_str().is_some_and(is_loopback_host) {
        return Err(format!(
            "refusing test proxy {proxy}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed"
        ));
    }
    Ok(())
}

fn transport_error(service: AzureService, operation: &'static str, kind: TransportErrorKind, message: &str) -> Error {
    Error::Transport(TransportError { service, operation, kind, message: message.to_owned() })
}

fn out_of_time(service: AzureService, operation: &'static str) -> Error {
    transport_error(service, operation, TransportErrorKind::OutOfTime, "the invocation ran out of time")
}

/// A forward proxy's report that the upstream host does not resolve: RFC 9209 `Proxy-Status` with
/// `error=dns_error` (the test proxy answers this way for a host that has no DNS record). Returns its detail.
fn proxy_dns_error(headers: &HeaderMap) -> Option<String> {
    headers.get_all("proxy-status").iter().filter_map(|v| v.to_str().ok()).find_map(|value| {
        let mut parameters = value.split(';').skip(1).map(str::trim);
        parameters.any(|p| p.eq_ignore_ascii_case("error=dns_error")).then(|| value.trim().to_owned())
    })
}

/// True when the error chain holds hyper's resolver failure ("dns error"): the name does not resolve.
fn is_dns_error(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.to_string() == "dns error" {
            return true;
        }
        source = inner.source();
    }
    false
}

fn map_reqwest_error(service: AzureService, operation: &'static str, e: &reqwest::Error) -> Error {
    if e.is_timeout() && super::deadline::remaining().is_some_and(|left| left.is_zero()) {
        // The invocation's deadline cut the request short: say so, not reqwest's "operation timed out".
        return out_of_time(service, operation);
    }
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() && is_dns_error(e) {
        TransportErrorKind::NameNotResolved
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_decode() || e.is_builder() {
        TransportErrorKind::BadResponse
    } else {
        TransportErrorKind::Reset
    };
    // reqwest's Display includes the URL (never a token); strip it to keep messages short and stable.
    let message = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
    transport_error(service, operation, kind, &message)
}

/// W3C trace context of the current span into the headers (no-op without a global propagator).
fn inject_trace_context(headers: &mut HeaderMap) {
    struct HeaderInjector<'a>(&'a mut HeaderMap);
    impl Injector for HeaderInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if value.is_empty() {
                return;
            }
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
                self.0.insert(name, value);
            }
        }
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut HeaderInjector(headers)));
}

/// Error carried inside an `azure_core::Error` when the transport refuses a credential's request, so the credential
/// layer can turn it back into [`Error::HostNotAllowed`].
#[derive(Debug)]
pub(crate) struct HostRefused(pub String);

impl std::fmt::Display for HostRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused to call {}: not an allowed Azure endpoint", self.0)
    }
}

impl std::error::Error for HostRefused {}

/// Largest token-endpoint response read (a token response is a few KiB).
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A credential request that did not finish within its time (the HTTP timeout or what was left of the deadline).
#[derive(Debug)]
pub(crate) struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no response within {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

/// A credential response larger than [`MAX_TOKEN_RESPONSE_BYTES`].
#[derive(Debug)]
pub(crate) struct ResponseTooLarge(pub usize);

impl std::fmt::Display for ResponseTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response body exceeds the {}-byte limit", self.0)
    }
}

impl std::error::Error for ResponseTooLarge {}

/// `azure_identity` credentials send through this. Besides allow-listed hosts it lets through the managed-identity
/// endpoints: the App Service `IDENTITY_ENDPOINT` (loopback, sent as is) and IMDS (rewritten to the test proxy when
/// there is one). Those requests carry no bearer token: they are the token source.
#[async_trait::async_trait]
impl azure_core::http::HttpClient for Transport {
    async fn execute_request(
        &self,
        request: &azure_core::http::Request,
    ) -> azure_core::Result<azure_core::http::AsyncRawResponse> {
        let url = request.url().clone();
        let host = url.host_str().unwrap_or_default().to_owned();
        let managed_identity_endpoint = url.scheme() == "http" && (is_loopback_host(&host) || host == IMDS_HOST);
        if !managed_identity_endpoint && self.ensure_allowed(&url).is_err() {
            return Err(azure_core::Error::new(azure_core::error::ErrorKind::Other, HostRefused(host)));
        }
        tracing::debug!(method = %request.method(), url = %url, "credential request");
        let mut req = request.clone();
        let loopback = is_loopback_host(&host);
        if !loopback {
            let (target, upstream) = self.destination(&url);
            *req.url_mut() = target;
            if let Some(upstream) = upstream.and_then(|v| v.to_str().ok().map(str::to_owned)) {
                req.insert_header(UPSTREAM_HEADER, upstream);
            }
        }
        let mut trace_headers = HeaderMap::new();
        inject_trace_context(&mut trace_headers);
        for (name, value) in &trace_headers {
            if let Ok(value) = value.to_str() {
                req.insert_header(name.as_str().to_owned(), value.to_owned());
            }
        }
        // The same bounds as our own requests: the invocation's deadline and a size cap on what is read.
        let timeout = super::deadline::bounded(self.inner.timeout);
        let exchange = async {
            let client = self.inner.client.get().await.map_err(|message| {
                azure_core::Error::with_message(azure_core::error::ErrorKind::Connection, message)
            })?;
            let response = azure_core::http::HttpClient::execute_request(client, &req).await?;
            let (status, headers, body) = response.deconstruct();
            let mut buffer = vec![0_u8; MAX_TOKEN_RESPONSE_BYTES];
            let length = body.collect_into(&mut buffer).await.map_err(|_| {
                azure_core::Error::new(
                    azure_core::error::ErrorKind::DataConversion,
                    ResponseTooLarge(MAX_TOKEN_RESPONSE_BYTES),
                )
            })?;
            buffer.truncate(length);
            Ok::<_, azure_core::Error>((status, headers, buffer))
        };
        let (status, headers, body) = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => return Err(azure_core::Error::new(azure_core::error::ErrorKind::Io, TimedOut(timeout))),
        };
        if status.is_success() {
            return Ok(azure_core::http::AsyncRawResponse::from_bytes(status, headers, body));
        }
        // Hand error responses back as errors that keep status, headers and body: azure_identity otherwise tries to
        // parse them and, for a non-JSON 503 or an empty 429, loses the status that makes the failure retryable.
        let raw = azure_core::http::RawResponse::from_bytes(status, headers, body);
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::HttpResponse { status, error_code: None, raw_response: Some(Box::new(raw)) },
            format!("token endpoint answered HTTP {}", u16::from(status)),
        ))
    }
}
