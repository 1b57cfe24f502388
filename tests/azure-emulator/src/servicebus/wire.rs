//! How messages travel over the REST API: the `BrokerProperties` header, custom properties as headers (JSON-encoded
//! values, strings quoted), RFC 1123 dates, and the batch body.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::model::{Message, NewMessage};

/// `TimeSpan.MaxValue` in seconds: what the service reports as the TTL of a message that never expires.
const INFINITE_TTL_SECONDS: f64 = 922_337_203_685.477_5;

const RFC1123: &[time::format_description::FormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

pub fn format_date(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(RFC1123).unwrap_or_default()
}

/// RFC 1123 as the docs show (`Sun, 06 Nov 1994 08:49:37 GMT`); RFC 3339 is accepted too, as .NET parsing would.
pub fn parse_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    time::PrimitiveDateTime::parse(text, RFC1123)
        .map(|at| at.assume_utc())
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .ok()
}

/// Request headers Service Bus keeps for the protocol; every other header of a send becomes a custom property. A
/// Service Bus PM: "Any header you send becomes a custom property, apart from `Content-Type`, `BrokerProperties`,
/// and a small set of names the service reserves for protocol use" (Azure/azure-rest-api-specs#27127, 2026-07-30).
/// The set is not published; this is the standard HTTP/1.1 request headers as .NET's `HttpRequestHeader` names them
/// (the service is a .NET HTTP front end), `BrokerProperties`, and the documented `x-ms-retrypolicy`. So
/// `traceparent`, `x-ms-client-request-id` and the like *are* properties, as they are in Azure.
fn is_reserved_header(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "allow",
        "authorization",
        "brokerproperties",
        "cache-control",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "cookie",
        "date",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "keep-alive",
        "last-modified",
        "max-forwards",
        "pragma",
        "proxy-authorization",
        "range",
        "referer",
        "te",
        "trailer",
        "transfer-encoding",
        "translate",
        "upgrade",
        "user-agent",
        "via",
        "warning",
        "x-ms-retrypolicy",
    ];
    // `x-recording-*` is the test proxy's routing (the handler's test seam), which a real test proxy consumes.
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n)) || name.to_ascii_lowercase().starts_with("x-recording-")
}

/// Decodes one custom-property header value: JSON text that is a string, number or boolean is that value
/// (`"High"`, `3`, `true`); anything else is the header's text as a string. The Send Message documentation's own
/// example sends `Priority: High` and `Customer: 12345,ABC` unquoted (learn.microsoft.com/rest/api/servicebus/
/// send-message-to-queue, "Example"), and the receive examples return them as `"High"` and `"12345,ABC"`.
fn property_value(raw: &[u8]) -> Value {
    let text = String::from_utf8_lossy(raw);
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(value @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => value,
        _ => Value::String(text.into_owned()),
    }
}

fn invalid_header(name: &str, value: &str) -> String {
    format!("The value '{value}' of the HTTP header '{name}' is invalid.")
}

/// A single message from a send request: body, `Content-Type`, `BrokerProperties` and custom-property headers.
pub fn message_from_request(headers: &HeaderMap, body: &[u8]) -> Result<NewMessage, String> {
    let mut message = NewMessage::new(body.to_vec());
    message.content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(raw) = headers.get("brokerproperties") {
        let text = String::from_utf8_lossy(raw.as_bytes());
        let object: Map<String, Value> =
            serde_json::from_str(&text).map_err(|_| invalid_header("BrokerProperties", &text))?;
        apply_broker_properties(&mut message, &object).map_err(|_| invalid_header("BrokerProperties", &text))?;
    }
    // Names are stored as they reach us. hyper hands every header name over lower-cased (HTTP/1.1 names are
    // case-insensitive and `http::HeaderName` keeps one spelling), so over REST a property is stored with the
    // lower-case name its client put on the wire; reqwest and hyper clients send lower case anyway.
    for (name, value) in headers {
        if is_reserved_header(name.as_str()) {
            continue;
        }
        message.application_properties.insert(name.as_str().to_owned(), property_value(value.as_bytes()));
    }
    Ok(message)
}

/// The messages of a batch send (`application/vnd.microsoft.servicebus.json`):
/// `[{"Body": "...", "BrokerProperties": {...}, "UserProperties": {...}}, ...]`.
pub fn messages_from_batch(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let items: Vec<Map<String, Value>> =
        serde_json::from_slice(body).map_err(|e| format!("The batch body is not a JSON array of messages: {e}"))?;
    items
        .into_iter()
        .map(|item| {
            let body = match item.get("Body") {
                Some(Value::String(text)) => text.clone().into_bytes(),
                Some(other) => other.to_string().into_bytes(),
                None => Vec::new(),
            };
            let mut message = NewMessage::new(body);
            if let Some(Value::Object(properties)) = item.get("BrokerProperties") {
                apply_broker_properties(&mut message, properties)
                    .map_err(|field| format!("Invalid BrokerProperties in batch: {field}"))?;
            }
            if let Some(Value::Object(properties)) = item.get("UserProperties") {
                for (name, value) in properties {
                    if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                        return Err(format!("Invalid value of the user property '{name}'."));
                    }
                    message.application_properties.insert(name.clone(), value.clone());
                }
            }
            Ok(message)
        })
        .collect()
}

/// Copies the settable broker properties; unknown ones are ignored, as the service does. `Err` names a bad field.
fn apply_broker_properties(message: &mut NewMessage, properties: &Map<String, Value>) -> Result<(), String> {
    for (name, value) in properties {
        let text = || match value {
            Value::String(text) => Ok(Some(text.clone())),
            Value::Null => Ok(None),
            Value::Number(number) => Ok(Some(number.to_string())),
            _ => Err(name.clone()),
        };
        match name.as_str() {
            "MessageId" => message.message_id = text()?,
            "CorrelationId" => message.correlation_id = text()?,
            "SessionId" => message.session_id = text()?,
            "Label" => message.label = text()?,
            "ReplyTo" => message.reply_to = text()?,
            "To" => message.to = text()?,
            "ReplyToSessionId" => message.reply_to_session_id = text()?,
            "PartitionKey" => message.partition_key = text()?,
            "TimeToLive" => {
                let seconds = match value {
                    Value::Number(number) => number.as_f64(),
                    Value::String(text) => text.trim().parse().ok(),
                    _ => None,
                };
                let seconds = seconds.filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| name.clone())?;
                message.time_to_live = Some(Duration::from_secs_f64(seconds.min(INFINITE_TTL_SECONDS)));
            }
            "ScheduledEnqueueTimeUtc" => {
                let text = text()?;
                message.scheduled_enqueue_time = match text {
                    Some(text) => Some(parse_date(&text).ok_or_else(|| name.clone())?),
                    None => None,
                };
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `BrokerProperties` of a received message; `lock` is `(token, locked until)` for peek-lock.
pub fn broker_properties(message: &Message, lock: Option<(uuid::Uuid, OffsetDateTime)>) -> Value {
    let mut properties = Map::new();
    let mut text = |name: &str, value: &Option<String>| {
        if let Some(value) = value {
            properties.insert(name.to_owned(), Value::String(value.clone()));
        }
    };
    text("MessageId", &message.message_id);
    text("CorrelationId", &message.correlation_id);
    text("SessionId", &message.session_id);
    text("Label", &message.label);
    text("To", &message.to);
    text("ReplyTo", &message.reply_to);
    text("ReplyToSessionId", &message.reply_to_session_id);
    text("PartitionKey", &message.partition_key);
    text("DeadLetterSource", &message.dead_letter_source);
    properties.insert("DeliveryCount".into(), message.delivery_count.into());
    properties.insert("SequenceNumber".into(), message.sequence_number.into());
    properties.insert("EnqueuedSequenceNumber".into(), message.enqueued_sequence_number.into());
    properties.insert("EnqueuedTimeUtc".into(), format_date(message.enqueued_time).into());
    properties.insert("State".into(), message.state.as_str().into());
    let ttl = message.time_to_live.map_or(INFINITE_TTL_SECONDS, |ttl| ttl.as_secs_f64());
    properties.insert("TimeToLive".into(), serde_json::Number::from_f64(ttl).map_or(Value::Null, Value::Number));
    if let Some(at) = message.scheduled_enqueue_time {
        properties.insert("ScheduledEnqueueTimeUtc".into(), format_date(at).into());
    }
    if let Some((token, until)) = lock {
        properties.insert("LockToken".into(), token.to_string().into());
        properties.insert("LockedUntilUtc".into(), format_date(until).into());
    }
    Value::Object(properties)
}

/// JSON text with every non-ASCII character escaped, so that it is a valid header value.
pub fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Response headers of a received message: `BrokerProperties`, `Content-Type` and one header per custom property
/// (properties whose names cannot be header names are left out).
pub fn response_headers(message: &Message, lock: Option<(uuid::Uuid, OffsetDateTime)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &str, value: String| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    };
    put("brokerproperties", ascii_json(&broker_properties(message, lock)));
    if let Some(content_type) = &message.content_type {
        put("content-type", content_type.clone());
    }
    let properties: &BTreeMap<String, Value> = &message.application_properties;
    for (name, value) in properties {
        if is_reserved_header(name) {
            continue;
        }
        put(name, ascii_json(value));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_in_rfc1123() {
        let at = parse_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(format_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_date("1994-11-06T08:49:37Z"), Some(at));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn custom_property_headers_are_json_scalars() {
        let mut headers = HeaderMap::new();
        headers.insert("priority", HeaderValue::from_static("\"High\""));
        headers.insert("attempt", HeaderValue::from_static("3"));
        headers.insert("urgent", HeaderValue::from_static("true"));
        headers.insert("authorization", HeaderValue::from_static("SharedAccessSignature sr=x"));
        headers
            .insert("brokerproperties", HeaderValue::from_static(r#"{"MessageId":"m1","TimeToLive":1.5,"Label":"L"}"#));
        let message = message_from_request(&headers, b"hi").unwrap();
        assert_eq!(message.message_id.as_deref(), Some("m1"));
        assert_eq!(message.time_to_live, Some(Duration::from_millis(1500)));
        assert_eq!(message.application_properties.len(), 3);
        assert_eq!(message.application_properties["priority"], Value::String("High".into()));
        assert_eq!(message.application_properties["attempt"], Value::from(3));
    }

    /// The Send Message documentation's example: `Priority: High`, `Customer: 12345,ABC`, sent unquoted.
    #[test]
    fn unquoted_values_are_strings_as_in_the_documentation_example() {
        let mut headers = HeaderMap::new();
        headers.insert("priority", HeaderValue::from_static("High"));
        headers.insert("customer", HeaderValue::from_static("12345,ABC"));
        headers
            .insert("brokerproperties", HeaderValue::from_static(r#"{"Label":"M1","State":"Active","TimeToLive":10}"#));
        headers.insert("content-type", HeaderValue::from_static("application/atom+xml;type=entry;charset=utf-8"));
        let message = message_from_request(&headers, b"This is a message.").unwrap();
        assert_eq!(message.application_properties["priority"], Value::String("High".into()));
        assert_eq!(message.application_properties["customer"], Value::String("12345,ABC".into()));
        assert_eq!(message.application_properties.len(), 2);
    }

    /// Only the protocol's own headers are not properties: tracing and `x-ms-*` headers are, as in Azure.
    #[test]
    fn non_protocol_headers_become_properties() {
        let mut headers = HeaderMap::new();
        headers
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        headers.insert("x-ms-client-request-id", HeaderValue::from_static("abc"));
        headers.insert("host", HeaderValue::from_static("ns.servicebus.windows.net"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        headers.insert("x-ms-retrypolicy", HeaderValue::from_static("NoRetry"));
        headers.insert("x-recording-upstream-base-uri", HeaderValue::from_static("https://ns.servicebus.windows.net"));
        let message = message_from_request(&headers, b"").unwrap();
        let names: Vec<&str> = message.application_properties.keys().map(String::as_str).collect();
        assert_eq!(names, ["traceparent", "x-ms-client-request-id"]);
        assert_eq!(
            message.application_properties["traceparent"],
            Value::String("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into())
        );
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(ascii_json(&Value::String("é😀".into())), "\"\\u00e9\\ud83d\\ude00\"");
    }
}
