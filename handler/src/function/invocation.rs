//! The Functions host's invocation payload for a Service Bus trigger, decoded (pure).
//!
//! The host POSTs `{"Data":{…},"Metadata":{…}}`. With `"dataType": "binary"` (what our `function.json` declares) the
//! trigger value is the base64 of the exact message body. In the default string form the value is the body text
//! JSON-encoded a second time, and scalar metadata values are JSON text inside JSON strings
//! (reference `functions-custom-handler.md` §1.2–§1.5). We accept both, plus the single-encoded form of the docs
//! examples, so a misconfigured binding degrades instead of failing.
//!
//! In the string forms the host also copies the body's top-level members into `Metadata`, case-insensitively,
//! overwriting the broker's values (§1.5). A metadata value under a name the body also has is therefore never
//! trusted: the application properties fall back to the host's duplicate `UserProperties`, and what stays unknown is
//! reported in [`IncomingMessage::shadowed`].

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::delivery::{APPLICATION_PROPERTIES, IncomingMessage, SESSION_ID, TimerRun};
use crate::order::OnboardingOrder;

/// The metadata keys the handler reads.
const MESSAGE_ID: &str = "MessageId";
const CORRELATION_ID: &str = "CorrelationId";
const CONTENT_TYPE: &str = "ContentType";
const DELIVERY_COUNT: &str = "DeliveryCount";
const SEQUENCE_NUMBER: &str = "SequenceNumber";
const ENQUEUED_TIME_UTC: &str = "EnqueuedTimeUtc";
/// The host's back-compat duplicate of `ApplicationProperties` (reference §1.4).
const USER_PROPERTIES: &str = "UserProperties";

/// How the trigger value was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// `dataType: binary`: base64 of the exact bytes; `Metadata` holds only the broker's values.
    Binary,
    /// The default string form (or the docs' single-encoded form): body members may be copied into `Metadata`.
    Text,
}

/// Why an invocation payload could not be decoded. The host always sends well-formed payloads, so this means a
/// mismatch between `function.json` and this code; the handler answers 500 so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode the invocation: {0}")]
pub struct DecodeError(pub String);

/// Decodes the invocation for the trigger binding named `binding`.
pub fn decode(payload: &[u8], binding: &str) -> Result<IncomingMessage, DecodeError> {
    let root: Value = serde_json::from_slice(payload).map_err(|e| DecodeError(format!("body is not JSON: {e}")))?;
    let root = root.as_object().ok_or_else(|| DecodeError("body is not a JSON object".into()))?;
    // Keys are matched case-insensitively, as the host's own formatter does.
    let data = field(root, "Data").and_then(Value::as_object).ok_or_else(|| DecodeError("no Data object".into()))?;
    let metadata = field(root, "Metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let trigger = field(data, binding).ok_or_else(|| DecodeError(format!("Data has no {binding:?} entry")))?;
    let (body, encoding) = trigger_body(trigger)?;
    let hidden = match encoding {
        Encoding::Binary => BTreeSet::new(),
        Encoding::Text => top_level_names(&body),
    };
    let trusted = |name: &str| (!hidden.contains(&name.to_ascii_lowercase())).then(|| field(&metadata, name)).flatten();
    let properties = trusted(APPLICATION_PROPERTIES).or_else(|| trusted(USER_PROPERTIES));
    let mut shadowed: Vec<&'static str> =
        [MESSAGE_ID, CORRELATION_ID, CONTENT_TYPE, DELIVERY_COUNT, SEQUENCE_NUMBER, ENQUEUED_TIME_UTC, SESSION_ID]
            .into_iter()
            .filter(|name| hidden.contains(&name.to_ascii_lowercase()))
            .collect();
    if properties.is_none() && hidden.contains(&APPLICATION_PROPERTIES.to_ascii_lowercase()) {
        shadowed.push(APPLICATION_PROPERTIES);
    }
    let sequence_number = trusted(SEQUENCE_NUMBER).and_then(meta_number);
    let broker_order = trusted(ENQUEUED_TIME_UTC)
        .and_then(Value::as_str)
        .zip(sequence_number)
        .and_then(|(time, number)| OnboardingOrder::from_host_metadata(time, number));
    Ok(IncomingMessage {
        message_id: trusted(MESSAGE_ID).and_then(meta_string),
        correlation_id: trusted(CORRELATION_ID).and_then(meta_string),
        content_type: trusted(CONTENT_TYPE).and_then(meta_string),
        delivery_count: trusted(DELIVERY_COUNT).and_then(meta_number).and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
        sequence_number,
        broker_order,
        session_id: trusted(SESSION_ID).and_then(meta_string),
        application_properties: properties
            .and_then(Value::as_object)
            .map(|props| props.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        shadowed,
        body,
    })
}

/// The lowercase names of the body's top-level members the host's `ApplyBindingData` copies over Metadata: those
/// whose value is neither an array nor null (reference §1.5), when the body is a JSON object.
fn top_level_names(body: &[u8]) -> BTreeSet<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(members)) => members
            .iter()
            .filter(|(_, value)| !matches!(value, Value::Array(_) | Value::Null))
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The message body from the trigger value, and which encoding the host used.
fn trigger_body(value: &Value) -> Result<(Vec<u8>, Encoding), DecodeError> {
    match value {
        Value::String(text) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('"') {
                // Default dataType: the body text, JSON-encoded once more.
                let inner: String = serde_json::from_str(text)
                    .map_err(|e| DecodeError(format!("double-encoded trigger value is not a JSON string: {e}")))?;
                Ok((inner.into_bytes(), Encoding::Text))
            } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
                // The documentation's single-encoded form.
                Ok((text.as_bytes().to_vec(), Encoding::Text))
            } else {
                // dataType binary: base64 of the exact bytes.
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| DecodeError(format!("binary trigger value is not base64: {e}")))?;
                Ok((bytes, Encoding::Binary))
            }
        }
        // Some hosts hand a JSON body over as an object; keep it as JSON text.
        Value::Object(_) | Value::Array(_) => Ok((value.to_string().into_bytes(), Encoding::Text)),
        other => Err(DecodeError(format!("unexpected trigger value of type {}", json_type(other)))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string metadata value: `"\"abc\""` (the host's double encoding) or `"abc"` (the docs' form).
fn meta_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Some(inner),
            _ => Some(s.clone()),
        },
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A numeric metadata value: `"42"` (the host) or `42` (the docs).
fn meta_number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().trim_matches('"').parse().ok(),
        _ => None,
    }
}

/// The body of an HTTP-triggered invocation (`Data.{binding}.Body`): a string, or base64 for binary content types.
pub fn http_request_body(payload: &[u8], binding: &str) -> Result<Vec<u8>, DecodeError> {
    let root: Value = serde_json::from_slice(payload).map_err(|e| DecodeError(format!("body is not JSON: {e}")))?;
    let request = root
        .as_object()
        .and_then(|r| field(r, "Data"))
        .and_then(Value::as_object)
        .and_then(|d| field(d, binding))
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError(format!("no Data.{binding} request object")))?;
    match field(request, "Body") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.starts_with('"') {
                Ok(text.as_bytes().to_vec())
            } else {
                Ok(base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .unwrap_or_else(|_| text.as_bytes().to_vec()))
            }
        }
        Some(other) => Ok(other.to_string().into_bytes()),
    }
}

/// The query parameters of an HTTP-triggered invocation (`Data.{binding}.Query`): the host serialises the request's
/// query as a JSON object of strings, inside a JSON string (reference §5.3; a repeated parameter arrives as one
/// value, its values joined with commas). An object in place of the string is taken too.
pub fn http_request_query(payload: &[u8], binding: &str) -> Result<Vec<(String, String)>, DecodeError> {
    let root: Value = serde_json::from_slice(payload).map_err(|e| DecodeError(format!("body is not JSON: {e}")))?;
    let request = root
        .as_object()
        .and_then(|r| field(r, "Data"))
        .and_then(Value::as_object)
        .and_then(|d| field(d, binding))
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError(format!("no Data.{binding} request object")))?;
    let query = match field(request, "Query") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(text)) => {
            serde_json::from_str::<Value>(text).map_err(|e| DecodeError(format!("Query is not JSON text: {e}")))?
        }
        Some(other) => other.clone(),
    };
    let Value::Object(members) = query else { return Err(DecodeError("Query is not a JSON object".into())) };
    members
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, text)),
            other => Err(DecodeError(format!("query parameter {name:?} is a {}, not a string", json_type(&other)))),
        })
        .collect()
}

/// The handler's answer to the host: always a JSON object (an empty 2xx body would hang the host until timeout).
pub fn response_body(logs: &[String]) -> Value {
    serde_json::json!({ "Outputs": {}, "Logs": logs, "ReturnValue": null })
}

/// Reads [`TimerRun`] from a timer invocation's body (pure; any shape it does not know is `None`).
pub fn timer_run(body: &[u8]) -> TimerRun {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return TimerRun::default() };
    // `2024-10-24T14:32:18.2205399Z`; a time without an offset is UTC (the host writes UTC).
    let parse = |v: &serde_json::Value| {
        let text = v.as_str()?;
        let rfc3339 = time::format_description::well_known::Rfc3339;
        time::OffsetDateTime::parse(text, &rfc3339)
            .or_else(|_| time::OffsetDateTime::parse(&format!("{text}Z"), &rfc3339))
            .ok()
    };
    let next = value["Data"]
        .as_object()
        .and_then(|data| data.values().find_map(|timer| parse(&timer["ScheduleStatus"]["Next"])));
    TimerRun { fired_at: parse(&value["Metadata"]["sys"]["UtcNow"]), next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_form_is_base64_of_exact_bytes() {
        let payload = br#"{"Data":{"m":"AAEC/w=="},"Metadata":{"DeliveryCount":"3","SequenceNumber":"562949953421313","MessageId":"\"id-1\""}}"#;
        let msg = decode(payload, "m").unwrap();
        assert_eq!(msg.body, vec![0, 1, 2, 255]);
        assert_eq!(msg.delivery_count, 3);
        assert_eq!(msg.sequence_number, Some(562_949_953_421_313));
        assert_eq!(msg.message_id.as_deref(), Some("id-1"));
    }

    #[test]
    fn default_form_is_unwrapped_once() {
        let payload = br#"{"Data":{"m":"\"{\\\"a\\\":1}\""},"Metadata":{"DeliveryCount":"1"}}"#;
        assert_eq!(decode(payload, "m").unwrap().body, br#"{"a":1}"#.to_vec());
    }

    #[test]
    fn docs_form_is_taken_as_is() {
        let payload = br#"{"Data":{"m":"{ \"a\": 1 }"},"Metadata":{"DeliveryCount":1}}"#;
        let msg = decode(payload, "m").unwrap();
        assert_eq!(msg.body, br#"{ "a": 1 }"#.to_vec());
        assert_eq!(msg.delivery_count, 1);
    }

    #[test]
    fn session_id_is_decoded_and_a_body_member_of_that_name_hides_it_in_the_string_form() {
        let binary = br#"{"Data":{"m":"eyJzZXNzaW9uSWQiOiJ4In0="},"Metadata":{"SessionId":"\"contosodata\""}}"#;
        let msg = decode(binary, "m").unwrap();
        assert_eq!((msg.session_id.as_deref(), msg.session_id_shadowed()), (Some("contosodata"), false));
        let string = br#"{"Data":{"m":"\"{\\\"sessionid\\\":\\\"x\\\"}\""},"Metadata":{"SessionId":"\"x\""}}"#;
        let msg = decode(string, "m").unwrap();
        assert!(msg.session_id_shadowed());
        assert_eq!(msg.session_id, None, "the body's value is not taken for the broker's");
        let harmless = br#"{"Data":{"m":"\"{\\\"sessionId\\\":null}\""},"Metadata":{"SessionId":"\"s\""}}"#;
        let msg = decode(harmless, "m").unwrap();
        assert_eq!((msg.session_id.as_deref(), msg.session_id_shadowed()), (Some("s"), false), "null is not copied");
        assert_eq!(decode(br#"{"Data":{"m":"AA=="},"Metadata":{}}"#, "m").unwrap().session_id, None);
    }

    /// With the string encoding, body members named like broker metadata are the body's, not the broker's.
    #[test]
    fn body_members_never_pose_as_broker_properties() {
        let body =
            r#"{"applicationProperties":{"cmk-dead-letter-reason":"Forged"},"messageId":"fake","deliveryCount":9}"#;
        let payload = serde_json::json!({
            "Data": { "m": serde_json::to_string(body).unwrap() },
            "Metadata": {
                // What the host sends after copying the body's members over its own values.
                "ApplicationProperties": { "cmk-dead-letter-reason": "Forged" },
                "UserProperties": { "tenant-tier": "gold" },
                "MessageId": "\"fake\"", "DeliveryCount": "\"9\"", "SequenceNumber": "7", "CorrelationId": "\"c-1\""
            }
        });
        let msg = decode(payload.to_string().as_bytes(), "m").unwrap();
        assert_eq!(msg.application_properties.keys().collect::<Vec<_>>(), ["tenant-tier"], "UserProperties instead");
        assert_eq!(msg.message_id, None, "the broker's MessageId is unknown");
        assert_eq!(msg.delivery_count, 1);
        assert_eq!((msg.sequence_number, msg.correlation_id.as_deref()), (Some(7), Some("c-1")));
        assert_eq!(msg.shadowed, ["MessageId", "DeliveryCount"]);
        assert!(!msg.properties_unknown());

        // Both property maps hidden: nothing of the broker's properties can be known.
        let body = r#"{"ApplicationProperties":{},"UserProperties":{}}"#;
        let payload = serde_json::json!({
            "Data": { "m": serde_json::to_string(body).unwrap() },
            "Metadata": { "ApplicationProperties": {}, "UserProperties": {} }
        });
        let msg = decode(payload.to_string().as_bytes(), "m").unwrap();
        assert!(msg.properties_unknown(), "{:?}", msg.shadowed);

        // The binary encoding copies nothing: the same names in the body hide nothing.
        let encoded = base64::engine::general_purpose::STANDARD.encode(r#"{"messageId":"fake"}"#);
        let payload = serde_json::json!({
            "Data": { "m": encoded },
            "Metadata": { "MessageId": "\"real\"", "ApplicationProperties": { "a": 1 } }
        });
        let msg = decode(payload.to_string().as_bytes(), "m").unwrap();
        assert_eq!(msg.message_id.as_deref(), Some("real"));
        assert!(msg.shadowed.is_empty());
    }

    #[test]
    fn the_broker_order_comes_from_enqueued_time_and_sequence_number_unless_the_body_hides_one() {
        let binary =
            br#"{"Data":{"m":"AA=="},"Metadata":{"EnqueuedTimeUtc":"2024-10-24T14:32:17","SequenceNumber":"42"}}"#;
        let order = decode(binary, "m").unwrap().broker_order.expect("an order");
        assert_eq!(order.to_string(), "2024-10-24T14:32:17Z#42");
        let hidden = serde_json::json!({
            "Data": { "m": serde_json::to_string(r#"{"enqueuedTimeUtc":"2030-01-01T00:00:00"}"#).unwrap() },
            "Metadata": { "EnqueuedTimeUtc": "\"01/01/2030 00:00:00\"", "SequenceNumber": "42" }
        });
        let msg = decode(hidden.to_string().as_bytes(), "m").unwrap();
        assert_eq!((msg.broker_order, msg.shadowed.as_slice()), (None, ["EnqueuedTimeUtc"].as_slice()));
        assert_eq!(
            decode(br#"{"Data":{"m":"AA=="},"Metadata":{"SequenceNumber":"42"}}"#, "m").unwrap().broker_order,
            None
        );
    }

    #[test]
    fn http_query_is_json_text_of_strings() {
        let payload = br#"{"Data":{"req":{"Query":"{\"a\":\"1,2\",\"code\":\"k\"}"}},"Metadata":{}}"#;
        let mut query = http_request_query(payload, "req").unwrap();
        query.sort();
        assert_eq!(query, [("a".to_owned(), "1,2".to_owned()), ("code".to_owned(), "k".to_owned())]);
        assert_eq!(http_request_query(br#"{"Data":{"req":{"Query":"{}"}}}"#, "req").unwrap(), []);
        assert_eq!(http_request_query(br#"{"Data":{"req":{"Query":{"a":"b"}}}}"#, "req").unwrap().len(), 1);
        assert!(http_request_query(br#"{"Data":{"req":{"Query":"{\"a\":1}"}}}"#, "req").is_err());
        assert!(http_request_query(br#"{"Data":{}}"#, "req").is_err());
    }

    #[test]
    fn missing_binding_is_an_error() {
        assert!(decode(br#"{"Data":{},"Metadata":{}}"#, "m").is_err());
        assert!(decode(b"not json", "m").is_err());
    }
}
