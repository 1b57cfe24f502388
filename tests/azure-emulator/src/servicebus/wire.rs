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

/// Request headers that are never custom properties: HTTP's own, tracing, Azure's `x-ms-*` and the test proxy's.
fn is_transport_header(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "authorization",
        "brokerproperties",
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "connection",
        "keep-alive",
        "expect",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "date",
        "cache-control",
        "pragma",
        "cookie",
        "origin",
        "referer",
        "via",
        "range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "proxy-authorization",
        "proxy-connection",
        "traceparent",
        "tracestate",
        "baggage",
        "request-id",
        "correlation-context",
    ];
    NAMES.contains(&name) || ["x-ms-", "x-forwarded-", "x-recording-"].iter().any(|prefix| name.starts_with(prefix))
}

/// Decodes one custom-property header value: a JSON string, number or boolean. Anything else is refused, as the
/// service refuses an unquoted string.
fn property_value(raw: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    match serde_json::from_str::<Value>(text).ok()? {
        value @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => Some(value),
        _ => None,
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
    for (name, value) in headers {
        if is_transport_header(name.as_str()) {
            continue;
        }
        let decoded = property_value(value.as_bytes())
            .ok_or_else(|| invalid_header(name.as_str(), &String::from_utf8_lossy(value.as_bytes())))?;
        message.application_properties.insert(name.as_str().to_owned(), decoded);
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
        if is_transport_header(&name.to_ascii_lowercase()) {
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
        headers.insert("x-ms-client-request-id", HeaderValue::from_static("abc"));
        headers
            .insert("brokerproperties", HeaderValue::from_static(r#"{"MessageId":"m1","TimeToLive":1.5,"Label":"L"}"#));
        let message = message_from_request(&headers, b"hi").unwrap();
        assert_eq!(message.message_id.as_deref(), Some("m1"));
        assert_eq!(message.time_to_live, Some(Duration::from_millis(1500)));
        assert_eq!(message.application_properties.len(), 3);
        assert_eq!(message.application_properties["priority"], Value::String("High".into()));
        assert_eq!(message.application_properties["attempt"], Value::from(3));
        headers.insert("customer", HeaderValue::from_static("12345,ABC"));
        assert!(message_from_request(&headers, b"").unwrap_err().contains("customer"));
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(ascii_json(&Value::String("é😀".into())), "\"\\u00e9\\ud83d\\ude00\"");
    }
}
