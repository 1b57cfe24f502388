//! The Functions host's invocation payload for a Service Bus trigger, decoded (pure).
//!
//! The host POSTs `{"Data":{…},"Metadata":{…}}`. With `"dataType": "binary"` (what our `function.json` declares) the
//! trigger value is the base64 of the exact message body. In the default string form the value is the body text
//! JSON-encoded a second time, and scalar metadata values are JSON text inside JSON strings
//! (reference `functions-custom-handler.md` §1.2–§1.5). We accept both, plus the single-encoded form of the docs
//! examples, so a misconfigured binding degrades instead of failing.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

/// What the handler needs from one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// The exact message body bytes.
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub delivery_count: u32,
    pub sequence_number: Option<i64>,
    /// `SessionId` (session-enabled trigger), double-encoded in Metadata like every string.
    pub session_id: Option<String>,
    /// The string trigger encoding copied a top-level body member named `SessionId` (any case) over the broker's
    /// value (reference §1.5), so `session_id` is the body's, not the broker's.
    pub session_id_shadowed_by_body: bool,
    /// Service Bus application properties, as the host passes them (a real JSON object).
    pub application_properties: BTreeMap<String, Value>,
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
    let (body, string_form) = trigger_body(trigger)?;
    Ok(IncomingMessage {
        session_id_shadowed_by_body: string_form && body_member_shadows(&body, "SessionId"),
        session_id: meta_string(&metadata, "SessionId"),
        body,
        message_id: meta_string(&metadata, "MessageId"),
        correlation_id: meta_string(&metadata, "CorrelationId"),
        content_type: meta_string(&metadata, "ContentType"),
        delivery_count: meta_number(&metadata, "DeliveryCount").and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
        sequence_number: meta_number(&metadata, "SequenceNumber"),
        application_properties: field(&metadata, "ApplicationProperties")
            .and_then(Value::as_object)
            .map(|props| props.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The message body from the trigger value, whichever encoding the host used, and whether it was a string form
/// (whose body members the host also copies into `Metadata`).
fn trigger_body(value: &Value) -> Result<(Vec<u8>, bool), DecodeError> {
    match value {
        Value::String(text) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('"') {
                // Default dataType: the body text, JSON-encoded once more.
                let inner: String = serde_json::from_str(text)
                    .map_err(|e| DecodeError(format!("double-encoded trigger value is not a JSON string: {e}")))?;
                Ok((inner.into_bytes(), true))
            } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
                // The documentation's single-encoded form.
                Ok((text.as_bytes().to_vec(), true))
            } else {
                // dataType binary: base64 of the exact bytes.
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|e| DecodeError(format!("binary trigger value is not base64: {e}")))?;
                Ok((bytes, false))
            }
        }
        // Some hosts hand a JSON body over as an object; keep it as JSON text.
        Value::Object(_) | Value::Array(_) => Ok((value.to_string().into_bytes(), true)),
        other => Err(DecodeError(format!("unexpected trigger value of type {}", json_type(other)))),
    }
}

/// Whether the host's `ApplyBindingData` would overwrite Metadata `name` with a top-level body member: one of that
/// name in any case whose value is neither an array nor null (reference §1.5).
fn body_member_shadows(body: &[u8], name: &str) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body).is_ok_and(|members| {
        members
            .iter()
            .any(|(key, value)| key.eq_ignore_ascii_case(name) && !matches!(value, Value::Array(_) | Value::Null))
    })
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
fn meta_string(metadata: &Map<String, Value>, name: &str) -> Option<String> {
    match field(metadata, name)? {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Some(inner),
            _ => Some(s.clone()),
        },
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A numeric metadata value: `"42"` (the host) or `42` (the docs).
fn meta_number(metadata: &Map<String, Value>, name: &str) -> Option<i64> {
    match field(metadata, name)? {
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

/// The handler's answer to the host: always a JSON object (an empty 2xx body would hang the host until timeout).
pub fn response_body(logs: &[String]) -> Value {
    serde_json::json!({ "Outputs": {}, "Logs": logs, "ReturnValue": null })
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
    fn session_id_is_decoded_and_a_body_member_of_that_name_is_noticed_in_the_string_form() {
        let binary = br#"{"Data":{"m":"eyJzZXNzaW9uSWQiOiJ4In0="},"Metadata":{"SessionId":"\"contosodata\""}}"#;
        let msg = decode(binary, "m").unwrap();
        assert_eq!((msg.session_id.as_deref(), msg.session_id_shadowed_by_body), (Some("contosodata"), false));
        let string = br#"{"Data":{"m":"\"{\\\"sessionid\\\":\\\"x\\\"}\""},"Metadata":{"SessionId":"\"x\""}}"#;
        assert!(decode(string, "m").unwrap().session_id_shadowed_by_body);
        let harmless = br#"{"Data":{"m":"\"{\\\"sessionId\\\":null}\""},"Metadata":{"SessionId":"\"s\""}}"#;
        assert!(!decode(harmless, "m").unwrap().session_id_shadowed_by_body);
        assert_eq!(decode(br#"{"Data":{"m":"AA=="},"Metadata":{}}"#, "m").unwrap().session_id, None);
    }

    #[test]
    fn missing_binding_is_an_error() {
        assert!(decode(br#"{"Data":{},"Metadata":{}}"#, "m").is_err());
        assert!(decode(b"not json", "m").is_err());
    }
}
