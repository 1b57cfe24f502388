//! The invocation body for a Service Bus trigger, `{"Data":…,"Metadata":…}`, built the way the host serialises it
//! (reference `functions-custom-handler.md` §1.2–§1.5): scalars become JSON text inside JSON strings, dates lose their
//! fraction and offset, action objects are `{}`, and a JSON body's top-level members are copied into `Metadata`.

use std::collections::BTreeMap;

use base64::Engine as _;
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::json::{Json, quote};

/// What the trigger needs to know about one delivered message.
#[derive(Debug, Clone)]
pub struct TriggerMessage {
    pub body: Vec<u8>,
    pub delivery_count: u32,
    pub lock_token: Uuid,
    /// `None`: no TTL (the host writes `DateTime.MaxValue`).
    pub expires_at: Option<OffsetDateTime>,
    pub enqueued_time: OffsetDateTime,
    pub sequence_number: i64,
    pub message_id: Option<String>,
    pub content_type: Option<String>,
    pub reply_to: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
    pub reply_to_session_id: Option<String>,
    pub partition_key: Option<String>,
    pub dead_letter_source: Option<String>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
}

/// Per-invocation values the host makes up.
#[derive(Debug, Clone)]
pub struct InvocationContext {
    pub function_name: String,
    pub trigger_name: String,
    pub binary: bool,
    /// `{ns}.servicebus.windows.net` (or the cloud's suffix), for `Metadata.Client`.
    pub fully_qualified_namespace: String,
    /// The `ServiceBusClient.Identifier` suffix; one per listener in the real host.
    pub client_id: Uuid,
    pub utc_now: OffsetDateTime,
    pub rand_guid: Uuid,
}

/// The compact request body, byte for byte as the host would send it.
pub fn service_bus_request(message: &TriggerMessage, ctx: &InvocationContext) -> String {
    let (data_value, body_text) = if ctx.binary {
        (base64::engine::general_purpose::STANDARD.encode(&message.body), None)
    } else {
        let text = body_as_string(&message.body);
        (quote(&text), Some(text))
    };
    let data = Json::Object(vec![(ctx.trigger_name.clone(), Json::String(data_value))]);
    let mut metadata = Metadata::default();
    for action in ["MessageReceiver", "MessageSession", "MessageActions", "SessionActions", "ReceiveActions"] {
        metadata.insert(action, Json::Object(Vec::new()));
    }
    metadata.insert(
        "Client",
        Json::Object(vec![
            ("FullyQualifiedNamespace".into(), Json::str(&ctx.fully_qualified_namespace)),
            ("IsClosed".into(), Json::Bool(false)),
            ("TransportType".into(), Json::Number(0.into())),
            ("Identifier".into(), Json::str(format!("{}-{}", ctx.fully_qualified_namespace, ctx.client_id))),
        ]),
    );
    metadata.insert("DeliveryCount", Json::str(message.delivery_count.to_string()));
    metadata.insert_text("DeadLetterSource", message.dead_letter_source.as_deref());
    metadata.insert_text("LockToken", Some(&message.lock_token.to_string()));
    let expires = message.expires_at.map(to_utc);
    metadata.insert("ExpiresAtUtc", Json::str(expires.map(date_time).unwrap_or_else(|| MAX_DATE.to_owned())));
    metadata
        .insert("ExpiresAt", Json::str(expires.map(date_time_offset).unwrap_or_else(|| format!("{MAX_DATE}+00:00"))));
    let enqueued = to_utc(message.enqueued_time);
    metadata.insert("EnqueuedTimeUtc", Json::str(date_time(enqueued)));
    metadata.insert("EnqueuedTime", Json::str(date_time_offset(enqueued)));
    metadata.insert_text("MessageId", message.message_id.as_deref());
    metadata.insert_text("ContentType", message.content_type.as_deref());
    metadata.insert_text("ReplyTo", message.reply_to.as_deref());
    metadata.insert("SequenceNumber", Json::str(message.sequence_number.to_string()));
    metadata.insert_text("To", message.to.as_deref());
    metadata.insert_text("Subject", message.subject.as_deref());
    metadata.insert_text("Label", message.subject.as_deref());
    metadata.insert_text("CorrelationId", message.correlation_id.as_deref());
    metadata.insert_text("SessionId", message.session_id.as_deref());
    metadata.insert_text("ReplyToSessionId", message.reply_to_session_id.as_deref());
    metadata.insert_text("PartitionKey", message.partition_key.as_deref());
    let properties =
        Json::Object(message.application_properties.iter().map(|(k, v)| (k.clone(), Json::from(v))).collect());
    metadata.insert("ApplicationProperties", properties.clone());
    metadata.insert("UserProperties", properties);
    metadata.insert(
        "sys",
        Json::Object(vec![
            ("MethodName".into(), Json::str(&ctx.function_name)),
            ("UtcNow".into(), Json::str(utc_now_text(to_utc(ctx.utc_now)))),
            ("RandGuid".into(), Json::str(ctx.rand_guid.to_string())),
        ]),
    );
    if let Some(text) = body_text {
        apply_body_binding_data(&mut metadata, &text);
    }
    Json::Object(vec![("Data".into(), data), ("Metadata".into(), Json::Object(metadata.members))]).compact()
}

const MAX_DATE: &str = "9999-12-31T23:59:59";

/// `MessageToStringConverter`: strict UTF-8, else a lossy decode (the DataContract attempt never applies to bytes
/// that an emulated sender produced).
fn body_as_string(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// `WorkerFunctionInvoker.TransformInput` → `Utility.ApplyBindingData`: a JSON-object body's top-level members land
/// in the (case-insensitive) binding data, overwriting collisions but keeping the original key spelling.
fn apply_body_binding_data(metadata: &mut Metadata, text: &str) {
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return;
    }
    let Ok(Json::Object(members)) = Json::parse(trimmed) else { return };
    for (key, value) in members {
        let converted = match value {
            Json::Array(_) | Json::Null => continue,
            Json::Object(_) => value,
            Json::String(s) => Json::str(quote(&newtonsoft_string_token(&s))),
            Json::Bool(b) => Json::str(quote(if b { "True" } else { "False" })),
            Json::Number(n) => Json::str(quote(&n.to_string())),
        };
        metadata.insert(&key, converted);
    }
}

/// `(string)JToken` of a string token: Newtonsoft parsed ISO dates into `DateTime`, whose invariant text is
/// `MM/dd/yyyy HH:mm:ss` (inferred in the reference, not observed).
fn newtonsoft_string_token(text: &str) -> String {
    let looks_like_date =
        text.len() >= 19 && text.as_bytes().get(10) == Some(&b'T') && text.as_bytes().get(4) == Some(&b'-');
    if looks_like_date
        && let Ok(parsed) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        && let Ok(formatted) =
            to_utc(parsed).format(format_description!("[month]/[day]/[year] [hour]:[minute]:[second]"))
    {
        return formatted;
    }
    text.to_owned()
}

fn to_utc(value: OffsetDateTime) -> OffsetDateTime {
    value.to_offset(time::UtcOffset::UTC)
}

fn date_time(value: OffsetDateTime) -> String {
    value.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")).unwrap_or_default()
}

fn date_time_offset(value: OffsetDateTime) -> String {
    format!("{}+00:00", date_time(value))
}

/// `DateTime.UtcNow` as Newtonsoft writes it: seven fraction digits and `Z`.
pub fn utc_now_text(value: OffsetDateTime) -> String {
    format!("{}.{:07}Z", date_time(value), value.nanosecond() / 100)
}

/// The binding-data dictionary: insertion-ordered, case-insensitive keys.
#[derive(Debug, Default)]
struct Metadata {
    members: Vec<(String, Json)>,
}

impl Metadata {
    fn insert(&mut self, key: &str, value: Json) {
        match self.members.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(slot) => slot.1 = value,
            None => self.members.push((key.to_owned(), value)),
        }
    }

    /// A .NET string: serialised twice, and absent when null.
    fn insert_text(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.insert(key, Json::str(quote(value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    pub(crate) fn derived_example_message(body: &str) -> (TriggerMessage, InvocationContext) {
        let message = TriggerMessage {
            body: body.as_bytes().to_vec(),
            delivery_count: 1,
            lock_token: Uuid::parse_str("4b5c9c5e-2a8e-4d7f-9f55-7d0f0d1e2a3b").unwrap(),
            expires_at: Some(datetime!(2024-11-07 14:32:17.123 UTC)),
            enqueued_time: datetime!(2024-10-24 14:32:17.456 UTC),
            sequence_number: 42,
            message_id: Some("c2f1e0a4d6b94a3f8e2b1c0d9e8f7a6b".into()),
            content_type: Some("application/json".into()),
            reply_to: None,
            to: None,
            subject: None,
            correlation_id: Some("req-1234".into()),
            session_id: None,
            reply_to_session_id: None,
            partition_key: None,
            dead_letter_source: None,
            application_properties: [("source".to_owned(), serde_json::json!("portal"))].into(),
        };
        let ctx = InvocationContext {
            function_name: "ProcessOnboarding".into(),
            trigger_name: "onboardingMessage".into(),
            binary: false,
            fully_qualified_namespace: "contoso-sb.servicebus.windows.net".into(),
            client_id: Uuid::parse_str("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f").unwrap(),
            utc_now: datetime!(2024-10-24 14:32:18.2205399 UTC),
            rand_guid: Uuid::parse_str("9b2f6f0e-3c1d-4e5f-a6b7-c8d9e0f1a2b3").unwrap(),
        };
        (message, ctx)
    }

    const BODY: &str =
        r#"{"onboardingId":"obd-7f3c","tenantId":"contoso","subscriptionId":"00000000-0000-0000-0000-000000000000"}"#;

    fn derived(name: &str) -> String {
        let text = std::fs::read_to_string(format!(
            "{}/../../specs/functions/derived/servicebus-trigger.{name}.request.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        Json::parse(&text).unwrap().compact()
    }

    #[test]
    fn default_datatype_matches_the_derived_example_byte_for_byte() {
        let (message, ctx) = derived_example_message(BODY);
        assert_eq!(service_bus_request(&message, &ctx), derived("default-datatype"));
    }

    #[test]
    fn binary_datatype_matches_the_derived_example_byte_for_byte() {
        let (message, mut ctx) = derived_example_message(BODY);
        ctx.binary = true;
        assert_eq!(service_bus_request(&message, &ctx), derived("binary-datatype"));
    }

    #[test]
    fn body_members_overwrite_collisions_and_stringify() {
        let (message, ctx) = derived_example_message(
            r#"{"correlationId":"X","n":5,"ok":true,"o":{"b":1,"a":2},"arr":[1],"at":"2024-10-24T14:32:17Z"}"#,
        );
        let body = Json::parse(&service_bus_request(&message, &ctx)).unwrap();
        let metadata = body.get("Metadata").unwrap();
        assert_eq!(metadata.get("CorrelationId"), Some(&Json::str("\"X\"")));
        assert_eq!(metadata.get("correlationId"), None);
        assert_eq!(metadata.get("n"), Some(&Json::str("\"5\"")));
        assert_eq!(metadata.get("ok"), Some(&Json::str("\"True\"")));
        assert_eq!(metadata.get("o").unwrap().compact(), r#"{"b":1,"a":2}"#);
        assert_eq!(metadata.get("arr"), None);
        assert_eq!(metadata.get("at"), Some(&Json::str("\"10/24/2024 14:32:17\"")));
    }

    #[test]
    fn no_ttl_is_datetime_max() {
        let (mut message, ctx) = derived_example_message("plain text");
        message.expires_at = None;
        let body = Json::parse(&service_bus_request(&message, &ctx)).unwrap();
        let metadata = body.get("Metadata").unwrap();
        assert_eq!(metadata.get("ExpiresAtUtc"), Some(&Json::str("9999-12-31T23:59:59")));
        assert_eq!(body.get("Data").unwrap().get("onboardingMessage"), Some(&Json::str("\"plain text\"")));
    }
}
