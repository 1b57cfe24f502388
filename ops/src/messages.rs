//! Every message `cmkctl` sends is built here, in one place: an onboarding message (`enqueue`, and the console) and
//! the resubmission of a dead letter (`dlq replay`). Identity rules live next to them:
//!
//! - an onboarding message's MessageId is derived from its onboarding id **and its content**
//!   ([`onboarding_message_id`]), so the queue's duplicate detection drops a send repeated after a timeout (same
//!   content) but never a correction (same onboarding id, different content);
//! - a replay's MessageId is new (never the dead letter's own) but stable across re-runs ([`replay_message_id`]), and
//!   the producer's MessageId travels on in `cmk-original-message-id`, and its onboarding's order in
//!   `cmk-onboarding-order` (so a replayed old intent stays old: the handler supersedes it if a newer onboarding
//!   configured the account since).

use std::collections::BTreeMap;

use cmk_handler::azure::servicebus::{OutgoingMessage, ReceivedMessage};
use cmk_handler::order::ORDER_PROPERTY;
use cmk_handler::workflow::settle::ORIGINAL_MESSAGE_ID;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dead_letter::find;

/// Application properties a replay adds, so the handler's logs and the next dead letter show the message's history.
pub const REPLAYED_FROM: &str = "replayed-from";
pub const REPLAYED_SEQUENCE_NUMBER: &str = "replayed-sequence-number";
pub const REPLAYED_MESSAGE_ID: &str = "replayed-message-id";
pub const REPLAYED_AT: &str = "replayed-at";
pub const REPLAYED_BY: &str = "replayed-by";

/// Service Bus' longest MessageId.
const MAX_MESSAGE_ID: usize = 128;
/// Hex digits of the content hash in an onboarding MessageId (64 bits: collisions between two versions of one
/// onboarding are out of reach).
const CONTENT_HASH_HEX: usize = 16;

/// Properties Service Bus adds when it dead-letters; they describe the old life of the message, not the new one.
const BROKER_DEAD_LETTER_PROPERTIES: &[&str] = &["DeadLetterReason", "DeadLetterErrorDescription"];

/// Namespace of replay MessageIds (UUIDv5). Fixed forever: a re-run of an interrupted replay must produce the same id,
/// so the queue's duplicate detection drops the second send.
const REPLAY_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("0c6b0f5e-3d0e-5b59-8d8e-6a0f1d7c2b41");

/// `{onboardingId}.{first 16 hex digits of SHA-256(canonical JSON of the body)}` (the onboarding id cut to fit 128
/// characters). Two sends of the same content get the same id (duplicate detection drops the second); a corrected
/// message gets a new one. A body that is not JSON is hashed as it is.
pub fn onboarding_message_id(onboarding_id: &str, body: &[u8]) -> String {
    let hash = content_hash(body);
    let keep = MAX_MESSAGE_ID - 1 - CONTENT_HASH_HEX;
    let prefix: String = onboarding_id.chars().take(keep).collect();
    format!("{prefix}.{}", &hash[..CONTENT_HASH_HEX])
}

/// SHA-256 (hex) of the canonical form of a JSON body (object keys sorted, no insignificant whitespace), or of the raw
/// bytes when the body is not JSON. Reformatting or reordering the fields of a message does not change it.
pub fn content_hash(body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let mut text = String::new();
            write_canonical(&value, &mut text);
            text.into_bytes()
        }
        Err(_) => body.to_vec(),
    };
    Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compact JSON with object keys in byte order, whatever order the parser kept them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What a producer sends: the validated body, with its identity.
#[derive(Debug, Clone, Default)]
pub struct Onboarding {
    pub body: Vec<u8>,
    pub onboarding_id: String,
    /// Overrides the derived MessageId (not recommended: a reused id swallows a correction).
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
}

/// The onboarding message as it goes on the queue.
pub fn onboarding_message(onboarding: &Onboarding) -> OutgoingMessage {
    let id = &onboarding.onboarding_id;
    OutgoingMessage {
        body: onboarding.body.clone(),
        content_type: Some("application/json".to_owned()),
        message_id: Some(onboarding.message_id.clone().unwrap_or_else(|| onboarding_message_id(id, &onboarding.body))),
        correlation_id: Some(onboarding.correlation_id.clone().unwrap_or_else(|| id.clone())),
        session_id: onboarding.session_id.clone(),
        ..OutgoingMessage::default()
    }
}

/// The MessageId of the replay of one dead letter: new (never the dead letter's own), but stable across re-runs.
pub fn replay_message_id(dead_letter_queue: &str, message: &ReceivedMessage) -> String {
    let broker = &message.broker_properties;
    let key = format!(
        "{dead_letter_queue}\n{}\n{}",
        broker.sequence_number.unwrap_or_default(),
        broker.message_id.as_deref().unwrap_or_default()
    );
    uuid::Uuid::new_v5(&REPLAY_ID_NAMESPACE, key.as_bytes()).to_string()
}

/// The producer's MessageId of a dead letter: what the handler recorded in `cmk-original-message-id` on its copies,
/// else the dead letter's own MessageId (a message the broker dead-lettered directly).
pub fn producer_message_id(message: &ReceivedMessage) -> Option<String> {
    find(&message.application_properties, ORIGINAL_MESSAGE_ID)
        .and_then(|v| v.as_str().map(str::to_owned))
        .or_else(|| message.broker_properties.message_id.clone())
}

/// Builds the resubmission of `message`, taken from `dead_letter_queue`, by `operator`, at `now`.
pub fn replay_message(
    dead_letter_queue: &str,
    message: &ReceivedMessage,
    operator: &str,
    now: OffsetDateTime,
) -> OutgoingMessage {
    let broker = &message.broker_properties;
    let mut properties: BTreeMap<String, Value> = message
        .application_properties
        .iter()
        .filter(|(name, _)| !is_bookkeeping(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if let Some(original) = producer_message_id(message) {
        properties.insert(ORIGINAL_MESSAGE_ID.to_owned(), Value::from(original));
    }
    // The onboarding stays as old as it is: a replay of an old intent must not pass for a new one (supersession).
    if let Some(order) = crate::dead_letter::onboarding_order(message) {
        properties.insert(ORDER_PROPERTY.to_owned(), Value::from(order.to_string()));
    }
    properties.insert(REPLAYED_FROM.to_owned(), Value::from(dead_letter_queue));
    properties.insert(REPLAYED_SEQUENCE_NUMBER.to_owned(), Value::from(broker.sequence_number.unwrap_or_default()));
    if let Some(id) = &broker.message_id {
        properties.insert(REPLAYED_MESSAGE_ID.to_owned(), Value::from(id.as_str()));
    }
    properties.insert(REPLAYED_AT.to_owned(), Value::from(now.format(&Rfc3339).unwrap_or_default()));
    properties.insert(REPLAYED_BY.to_owned(), Value::from(operator));
    OutgoingMessage {
        body: message.body.clone(),
        content_type: message.content_type.clone(),
        message_id: Some(replay_message_id(dead_letter_queue, message)),
        correlation_id: broker.correlation_id.clone(),
        label: broker.label.clone(),
        // The session queue refuses a message without one; a dead letter from before sessions gets its account's.
        session_id: broker.session_id.clone().or_else(|| session_of_body(&message.body)),
        application_properties: properties,
        // Counters reset: a new message starts at DeliveryCount 0, and without `cmk-attempt`/`cmk-first-attempt-at`
        // the handler counts attempts and its deadline afresh.
        ..OutgoingMessage::default()
    }
}

/// The SessionId of the account the body names (`None` when it names none validly).
fn session_of_body(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let id = body.pointer("/storageAccount/resourceId")?.as_str()?;
    cmk_handler::contract::parse_storage_account_id(id).ok().map(|account| account.session_id())
}

/// The handler's `cmk-*` marks, an earlier replay's marks, the broker's dead-letter marks, and `$`-reserved names.
fn is_bookkeeping(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("cmk-")
        || lower.starts_with("replayed-")
        || lower.starts_with('$')
        || BROKER_DEAD_LETTER_PROPERTIES.iter().any(|p| p.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use cmk_handler::azure::servicebus::BrokerProperties;
    use time::macros::datetime;

    use super::*;

    fn dead_letter() -> ReceivedMessage {
        let properties: BTreeMap<String, Value> = [
            ("cmk-dead-letter-reason", Value::from("KeyDisabled")),
            ("CMK-ATTEMPT", Value::from(7)),
            ("cmk-first-attempt-at", Value::from("2026-11-20T00:00:00Z")),
            ("cmk-onboarding-order", Value::from("2026-11-19T23:59:59Z#41")),
            ("CMK-Original-Message-Id", Value::from("producer-1")),
            ("DeadLetterReason", Value::from("MaxDeliveryCountExceeded")),
            ("replayed-at", Value::from("2026-11-21T00:00:00Z")),
            ("upstream-system", Value::from("signup")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        ReceivedMessage {
            body: b"{}".to_vec(),
            content_type: Some("application/json".into()),
            broker_properties: BrokerProperties {
                message_id: Some("m-1".into()),
                correlation_id: Some("c-1".into()),
                sequence_number: Some(42),
                enqueued_time_utc: Some("Fri, 20 Nov 2026 00:00:00 GMT".into()),
                delivery_count: Some(11),
                ..BrokerProperties::default()
            },
            application_properties: properties,
            lock_location: None,
        }
    }

    #[test]
    fn replay_keeps_the_session_or_derives_it_from_the_account() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let mut letter = dead_letter();
        letter.broker_properties.session_id = Some("contosodata".into());
        assert_eq!(
            replay_message("q/$DeadLetterQueue", &letter, "alice", now).session_id.as_deref(),
            Some("contosodata")
        );
        letter.broker_properties.session_id = None;
        letter.body = br#"{"storageAccount":{"resourceId":"/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/fabrikamdata"}}"#.to_vec();
        assert_eq!(
            replay_message("q/$DeadLetterQueue", &letter, "alice", now).session_id.as_deref(),
            Some("fabrikamdata")
        );
        letter.body = b"{ broken".to_vec();
        assert_eq!(replay_message("q/$DeadLetterQueue", &letter, "alice", now).session_id, None);
    }

    #[test]
    fn replay_strips_bookkeeping_keeps_identity_and_records_origin() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let replay = replay_message("onboarding/$DeadLetterQueue", &dead_letter(), "alice", now);
        let names: Vec<&str> = replay.application_properties.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ORDER_PROPERTY,
                ORIGINAL_MESSAGE_ID,
                REPLAYED_AT,
                REPLAYED_BY,
                REPLAYED_FROM,
                REPLAYED_MESSAGE_ID,
                REPLAYED_SEQUENCE_NUMBER,
                "upstream-system"
            ]
        );
        assert_eq!(replay.application_properties[REPLAYED_AT], "2026-11-29T12:00:00Z");
        assert_eq!(replay.application_properties[REPLAYED_SEQUENCE_NUMBER], 42);
        assert_eq!(
            replay.application_properties[ORDER_PROPERTY], "2026-11-19T23:59:59Z#41",
            "the onboarding stays old"
        );
        // A dead letter without the property: its own broker order.
        let mut unmarked = dead_letter();
        unmarked.application_properties.retain(|k, _| !k.eq_ignore_ascii_case(ORDER_PROPERTY));
        let replay = replay_message("onboarding/$DeadLetterQueue", &unmarked, "alice", now);
        assert_eq!(replay.application_properties[ORDER_PROPERTY], "2026-11-20T00:00:00Z#42");
        assert_eq!(replay.correlation_id.as_deref(), Some("c-1"));
        assert_ne!(replay.message_id.as_deref(), Some("m-1"));
        assert_eq!(replay.scheduled_enqueue_time, None);
    }

    #[test]
    fn the_producers_message_id_survives_a_replay() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let replay = replay_message("q/$DeadLetterQueue", &dead_letter(), "alice", now);
        assert_eq!(replay.application_properties[ORIGINAL_MESSAGE_ID], "producer-1", "read case-insensitively");
        // A message the broker dead-lettered itself carries no mark: its own MessageId is the producer's.
        let mut unmarked = dead_letter();
        unmarked.application_properties.retain(|k, _| !k.eq_ignore_ascii_case(ORIGINAL_MESSAGE_ID));
        let replay = replay_message("q/$DeadLetterQueue", &unmarked, "alice", now);
        assert_eq!(replay.application_properties[ORIGINAL_MESSAGE_ID], "m-1");
    }

    #[test]
    fn replay_ids_are_stable_per_dead_letter_and_distinct_between_them() {
        let first = replay_message_id("q/$DeadLetterQueue", &dead_letter());
        assert_eq!(first, replay_message_id("q/$DeadLetterQueue", &dead_letter()));
        let mut other = dead_letter();
        other.broker_properties.sequence_number = Some(43);
        assert_ne!(first, replay_message_id("q/$DeadLetterQueue", &other));
    }

    #[test]
    fn a_correction_gets_a_new_message_id_and_a_repeat_the_same() {
        let original = br#"{"onboardingId":"obd-1","key":{"name":"cmk","vaultUri":"https://a.vault.azure.net/"}}"#;
        let reformatted = b"{ \"key\": {\"vaultUri\": \"https://a.vault.azure.net/\", \"name\": \"cmk\"},\n \"onboardingId\": \"obd-1\" }";
        let corrected = br#"{"onboardingId":"obd-1","key":{"name":"cmk","vaultUri":"https://b.vault.azure.net/"}}"#;
        let id = onboarding_message_id("obd-1", original);
        assert!(id.starts_with("obd-1.") && id.len() == "obd-1.".len() + 16, "{id}");
        assert_eq!(id, onboarding_message_id("obd-1", reformatted), "same content, other formatting");
        assert_ne!(id, onboarding_message_id("obd-1", corrected), "a correction is a new message");
        let longest = "a".repeat(128);
        assert_eq!(onboarding_message_id(&longest, original).len(), 128, "within Service Bus' limit");
    }

    #[test]
    fn the_documented_test_vector_holds() {
        // docs/integrating.md gives this example (computed with `sha256sum` over the canonical form); the docs test
        // checks the docs quote the same id.
        let body = br#"{"schemaVersion":"1.0","onboardingId":"obd-2026-0001"}"#;
        assert_eq!(onboarding_message_id("obd-2026-0001", body), DOCUMENTED_EXAMPLE_ID);
        let reformatted = b"{\n  \"onboardingId\": \"obd-2026-0001\",\n  \"schemaVersion\": \"1.0\"\n}";
        assert_eq!(onboarding_message_id("obd-2026-0001", reformatted), DOCUMENTED_EXAMPLE_ID);
    }

    /// The example MessageId of docs/integrating.md.
    pub const DOCUMENTED_EXAMPLE_ID: &str = "obd-2026-0001.989b45bc7ab92368";

    #[test]
    fn the_docs_quote_the_example_id() {
        let docs = include_str!("../../docs/integrating.md");
        assert!(docs.contains(DOCUMENTED_EXAMPLE_ID), "docs/integrating.md must show {DOCUMENTED_EXAMPLE_ID}");
    }
}
