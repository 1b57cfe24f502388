//! Service Bus over its REST runtime API: send (with scheduling), and for the ops CLI peek-lock and settlement.
//!
//! Our own client rather than `azure_messaging_servicebus` 0.21 (reference `rust-crates.md` §5): bearer *or* SAS
//! auth, 64-bit sequence numbers, and every non-success status is an error (a 401 is never "no message").

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::credentials::{AppScope, TokenSource};
use super::retry::{self, Authorizer, RetryOptions};
use super::transport::{AuthorizationValue, HttpResponse, OutgoingRequest, Transport};
use crate::error::{AzureService, Error};

/// Lifetime of each SAS token; one is signed per request, so it only has to outlive the request.
const SAS_LIFETIME: Duration = Duration::from_secs(3600);

/// Largest response a receive may return: a whole message (Premium entities allow 100 MB) and its headers.
const MAX_RECEIVE_BYTES: usize = 101 * 1024 * 1024;

/// Service Bus client for one namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceBusClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Url,
    transport: Transport,
    auth: ServiceBusAuth,
    retry: RetryOptions,
}

/// How requests are authorized.
#[derive(Clone)]
pub enum ServiceBusAuth {
    /// Entra bearer tokens for `https://servicebus.azure.net/.default` from the app's identity.
    Bearer(TokenSource),
    /// A shared access signature computed per request from a policy name and key.
    SharedAccessKey { key_name: String, key: SasKey },
}

/// A SAS key. `Debug` never prints it.
#[derive(Clone)]
pub struct SasKey(String);

impl SasKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for SasKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasKey(<redacted>)")
    }
}

impl fmt::Debug for ServiceBusAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer"),
            Self::SharedAccessKey { key_name, .. } => {
                f.debug_struct("SharedAccessKey").field("key_name", key_name).finish_non_exhaustive()
            }
        }
    }
}

impl ServiceBusAuth {
    /// Parses `Endpoint=sb://{ns}/;SharedAccessKeyName=…;SharedAccessKey=…`; returns the namespace FQDN and the auth.
    /// Errors never echo the key.
    pub fn from_connection_string(connection_string: &str) -> Result<(String, Self), String> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        for part in connection_string.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("malformed Service Bus connection string: a part has no '='".to_owned());
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.trim().to_owned()),
                "sharedaccesskey" => key = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or("Service Bus connection string has no Endpoint")?;
        let host = Url::parse(&endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .ok_or("Service Bus connection string has an unparseable Endpoint")?;
        let key_name = key_name.ok_or("Service Bus connection string has no SharedAccessKeyName")?;
        let key = key.ok_or("Service Bus connection string has no SharedAccessKey")?;
        Ok((host, Self::SharedAccessKey { key_name, key: SasKey(key) }))
    }
}

/// A message to send. Unset fields are left to the broker's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub label: Option<String>,
    pub session_id: Option<String>,
    pub time_to_live: Option<Duration>,
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
}

/// System properties of a received message (`BrokerProperties`). Sequence numbers are 64-bit: partitioned entities
/// use the high bits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerProperties {
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub delivery_count: Option<i64>,
    #[serde(default)]
    pub sequence_number: Option<i64>,
    #[serde(default)]
    pub enqueued_sequence_number: Option<i64>,
    #[serde(default)]
    pub enqueued_time_utc: Option<String>,
    #[serde(default)]
    pub lock_token: Option<String>,
    #[serde(default)]
    pub locked_until_utc: Option<String>,
    #[serde(default)]
    pub time_to_live: Option<f64>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub dead_letter_source: Option<String>,
    #[serde(default)]
    pub scheduled_enqueue_time_utc: Option<String>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub broker_properties: BrokerProperties,
    /// Custom headers, JSON-decoded where they are JSON (string values arrive quoted).
    pub application_properties: BTreeMap<String, serde_json::Value>,
    /// The lock URL (peek-lock only): complete, abandon and renew act on it.
    pub lock_location: Option<Url>,
}

/// `BrokerProperties` of a send.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_live: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_enqueue_time_utc: Option<String>,
}

/// Headers of a response that are not application properties.
const SYSTEM_HEADERS: &[&str] = &[
    "brokerproperties",
    "content-type",
    "content-length",
    "date",
    "server",
    "location",
    "transfer-encoding",
    "connection",
    "strict-transport-security",
    "keep-alive",
    "traceparent",
    "tracestate",
];

impl ServiceBusClient {
    /// `namespace` is the FQDN (`myns.servicebus.windows.net`); it is added to the transport's allow-list.
    pub fn new(
        namespace: &str,
        transport: Transport,
        auth: ServiceBusAuth,
        retry: RetryOptions,
    ) -> Result<Self, String> {
        let endpoint = Url::parse(&format!("https://{namespace}/"))
            .map_err(|e| format!("bad Service Bus namespace {namespace:?}: {e}"))?;
        let transport = transport.with_allowed_host(namespace);
        Ok(Self { inner: Arc::new(Inner { endpoint, transport, auth, retry }) })
    }

    /// Sends one message to a queue or topic.
    pub async fn send(&self, entity: &str, message: &OutgoingMessage) -> Result<(), Error> {
        const OP: &str = "send message";
        let properties = SendProperties {
            message_id: message.message_id.as_deref(),
            correlation_id: message.correlation_id.as_deref(),
            label: message.label.as_deref(),
            session_id: message.session_id.as_deref(),
            time_to_live: message.time_to_live.map(|d| d.as_secs_f64()),
            scheduled_enqueue_time_utc: message.scheduled_enqueue_time.map(rfc1123),
        };
        let mut request = OutgoingRequest::new(Method::POST, self.entity_url(entity, "messages", None));
        // Every header of a send that is not the protocol's own becomes an application property of the message: the
        // request's trace context must not (the message carries its own in `diagnostic-id`).
        request.propagate_trace_context = false;
        request.body = Some(message.body.clone());
        let content_type = message.content_type.as_deref().unwrap_or("application/octet-stream");
        request.headers.insert(reqwest::header::CONTENT_TYPE, header_value(content_type, OP)?);
        let broker = ascii_json(&serde_json::to_value(&properties).unwrap_or_default());
        request.headers.insert(HeaderName::from_static("brokerproperties"), header_value(&broker, OP)?);
        for (name, value) in &message.application_properties {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad_response(OP, format!("application property name {name:?} is not a valid header")))?;
            // The REST protocol reads a header value as JSON when it is one: strings go quoted, numbers and bools bare.
            request.headers.insert(name, header_value(&ascii_json(value), OP)?);
        }
        self.send_request(&request, OP).await.map(drop)
    }

    /// Sends several messages in one request (the REST API's batch, `application/vnd.microsoft.servicebus.json`:
    /// `[{"Body", "BrokerProperties", "UserProperties"}]`); a batch is at most one message's size (256 KB on Standard),
    /// which callers keep to. Bodies must be UTF-8 text (they travel as JSON strings); content types do not travel.
    pub async fn send_batch(&self, entity: &str, messages: &[OutgoingMessage]) -> Result<(), Error> {
        const OP: &str = "send message batch";
        let mut items = Vec::with_capacity(messages.len());
        for message in messages {
            let body = std::str::from_utf8(&message.body)
                .map_err(|_| bad_response(OP, "a batched message body is not UTF-8 text"))?;
            let properties = SendProperties {
                message_id: message.message_id.as_deref(),
                correlation_id: message.correlation_id.as_deref(),
                label: message.label.as_deref(),
                session_id: message.session_id.as_deref(),
                time_to_live: message.time_to_live.map(|d| d.as_secs_f64()),
                scheduled_enqueue_time_utc: message.scheduled_enqueue_time.map(rfc1123),
            };
            items.push(serde_json::json!({
                "Body": body,
                "BrokerProperties": properties,
                "UserProperties": message.application_properties,
            }));
        }
        let mut request = OutgoingRequest::new(Method::POST, self.entity_url(entity, "messages", None));
        request.propagate_trace_context = false;
        request.body = Some(ascii_json(&serde_json::Value::Array(items)).into_bytes());
        request.headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.microsoft.servicebus.json"),
        );
        self.send_request(&request, OP).await.map(drop)
    }

    /// Locks the next message for `timeout` at most; `None` when the entity stayed empty (204).
    pub async fn peek_lock(&self, entity: &str, timeout: Duration) -> Result<Option<ReceivedMessage>, Error> {
        const OP: &str = "peek-lock message";
        let request = long_poll(Method::POST, self.entity_url(entity, "messages/head", Some(timeout)), timeout);
        let response = self.send_request(&request, OP).await?;
        received(response, OP)
    }

    /// Receives and deletes the next message; `None` when the entity stayed empty.
    pub async fn receive_and_delete(&self, entity: &str, timeout: Duration) -> Result<Option<ReceivedMessage>, Error> {
        const OP: &str = "receive and delete message";
        let request = long_poll(Method::DELETE, self.entity_url(entity, "messages/head", Some(timeout)), timeout);
        let response = self.send_request(&request, OP).await?;
        received(response, OP)
    }

    /// Completes (deletes) a peek-locked message.
    pub async fn complete(&self, message: &ReceivedMessage) -> Result<(), Error> {
        self.settle(message, Method::DELETE, "complete message").await
    }

    /// Abandons (unlocks) a peek-locked message: it becomes available again.
    pub async fn abandon(&self, message: &ReceivedMessage) -> Result<(), Error> {
        self.settle(message, Method::PUT, "abandon message").await
    }

    pub async fn renew_lock(&self, message: &ReceivedMessage) -> Result<(), Error> {
        self.settle(message, Method::POST, "renew message lock").await
    }

    /// The management API's description of a queue or subscription: Atom XML whose `CountDetails` hold the runtime
    /// counts (for the ops console). Needs the Manage right with SAS, or read access to the entity with Entra.
    pub async fn entity_description(&self, entity: &str) -> Result<String, Error> {
        let mut url = self.inner.endpoint.clone();
        url.set_path(&format!("/{}", entity.trim_matches('/')));
        url.query_pairs_mut().append_pair("api-version", "2021-05");
        let response = self.send_request(&OutgoingRequest::new(Method::GET, url), "get entity description").await?;
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    async fn settle(&self, message: &ReceivedMessage, method: Method, operation: &'static str) -> Result<(), Error> {
        let url =
            message.lock_location.clone().ok_or_else(|| bad_response(operation, "the message has no lock location"))?;
        self.send_request(&OutgoingRequest::new(method, url), operation).await.map(drop)
    }

    /// `https://{ns}/{entity}/{suffix}[?timeout=…]`; `entity` may be `topic/subscriptions/sub` or `queue/$DeadLetterQueue`.
    fn entity_url(&self, entity: &str, suffix: &str, timeout: Option<Duration>) -> Url {
        let mut url = self.inner.endpoint.clone();
        url.set_path(&format!("/{}/{suffix}", entity.trim_matches('/')));
        if let Some(timeout) = timeout {
            url.query_pairs_mut().append_pair("timeout", &timeout.as_secs().max(1).to_string());
        }
        url
    }

    async fn send_request(&self, request: &OutgoingRequest, operation: &'static str) -> Result<HttpResponse, Error> {
        let inner = &self.inner;
        let bearer;
        let sas;
        let authorizer: &dyn Authorizer = match &inner.auth {
            ServiceBusAuth::Bearer(tokens) => {
                bearer = AppScope { tokens, scope: inner.transport.cloud().service_bus_scope() };
                &bearer
            }
            ServiceBusAuth::SharedAccessKey { key_name, key } => {
                sas = SasSigner { key_name, key };
                &sas
            }
        };
        retry::send(&inner.transport, &inner.retry, AzureService::ServiceBus, operation, request, authorizer).await
    }
}

/// A receive waits up to `timeout` at the broker; give the HTTP exchange that long plus headroom.
fn long_poll(method: Method, url: Url, timeout: Duration) -> OutgoingRequest {
    let mut request = OutgoingRequest::new(method, url);
    request.timeout = Some(timeout + Duration::from_secs(10));
    request.max_response_bytes = Some(MAX_RECEIVE_BYTES);
    request
}

/// JSON text with every non-ASCII character escaped (`\uXXXX`, surrogate pairs beyond the BMP), so it is always a
/// valid HTTP header value: serde_json already escapes control characters, and JSON readers decode the escapes.
pub fn ascii_json(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Signs a SAS per request for the request's resource (scheme, host and path; no query).
struct SasSigner<'a> {
    key_name: &'a str,
    key: &'a SasKey,
}

#[async_trait::async_trait]
impl Authorizer for SasSigner<'_> {
    async fn authorization(&self, url: &Url) -> Result<Option<AuthorizationValue>, Error> {
        let expiry = OffsetDateTime::now_utc().unix_timestamp() + SAS_LIFETIME.as_secs() as i64;
        Ok(Some(AuthorizationValue(shared_access_signature(url, self.key_name, &self.key.0, expiry))))
    }
}

/// `SharedAccessSignature sr={enc(uri)}&sig={enc(base64(hmac_sha256(key, enc(uri) + "\n" + expiry)))}&se={expiry}&skn={name}`.
/// The key's UTF-8 text is the HMAC key (Service Bus does not base64-decode it).
pub fn shared_access_signature(url: &Url, key_name: &str, key: &str, expiry: i64) -> String {
    let resource = format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or_default(), url.path());
    // Unreserved characters stay as they are, as .NET's `WebUtility.UrlEncode` (the reference SAS signer) leaves them.
    let encode = super::encode_segment;
    let sr = encode(&resource);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn={}", encode(&signature), encode(key_name))
}

fn received(response: HttpResponse, operation: &'static str) -> Result<Option<ReceivedMessage>, Error> {
    if response.status == 204 {
        return Ok(None);
    }
    let broker_properties = match response.header("brokerproperties") {
        Some(raw) => {
            serde_json::from_str(raw).map_err(|e| bad_response(operation, format!("bad BrokerProperties: {e}")))?
        }
        None => BrokerProperties::default(),
    };
    let lock_location = response.header("location").and_then(|l| Url::parse(l).ok());
    Ok(Some(ReceivedMessage {
        content_type: response.header("content-type").map(str::to_owned),
        application_properties: application_properties(&response.headers),
        broker_properties,
        lock_location,
        body: response.body,
    }))
}

fn application_properties(headers: &HeaderMap) -> BTreeMap<String, serde_json::Value> {
    headers
        .iter()
        .filter(|(name, _)| !SYSTEM_HEADERS.contains(&name.as_str()) && !name.as_str().starts_with("x-ms-"))
        .filter_map(|(name, value)| {
            let text = value.to_str().ok()?;
            let value = serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()));
            Some((name.as_str().to_owned(), value))
        })
        .collect()
}

/// RFC 1123, as `BrokerProperties` expects dates: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn rfc1123(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

fn header_value(value: &str, operation: &'static str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value).map_err(|_| bad_response(operation, "a value is not a valid HTTP header value"))
}

fn bad_response(operation: &'static str, message: impl std::fmt::Display) -> Error {
    Error::bad_response(AzureService::ServiceBus, operation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_parses_without_leaking_the_key() {
        let (host, auth) = ServiceBusAuth::from_connection_string(
            "Endpoint=sb://myns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=c2VjcmV0=",
        )
        .unwrap();
        assert_eq!(host, "myns.servicebus.windows.net");
        assert!(!format!("{auth:?}").contains("c2VjcmV0"));
        let error = ServiceBusAuth::from_connection_string("Endpoint=sb://x/;SharedAccessKey=topsecret").unwrap_err();
        assert!(!error.contains("topsecret"), "{error}");
    }

    #[test]
    fn property_values_are_ascii_json() {
        let value = serde_json::json!("Zoë 🔑 \u{7}");
        let text = ascii_json(&value);
        assert!(text.is_ascii() && HeaderValue::from_str(&text).is_ok(), "{text}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), value);
        assert_eq!(ascii_json(&serde_json::json!(3)), "3");
    }

    #[test]
    fn dates_are_rfc1123() {
        let at = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(rfc1123(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
