//! The message a replay sends: the dead letter's body and identity, stripped of the handler's bookkeeping (which would
//! make the handler fail it fast again, or resume its attempt count and deadline) and marked with where it came from.

use std::collections::BTreeMap;

use cmk_handler::azure::servicebus::{OutgoingMessage, ReceivedMessage};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Application properties a replay adds, so the handler's logs and the next dead letter show the message's history.
pub const REPLAYED_FROM: &str = "replayed-from";
pub const REPLAYED_SEQUENCE_NUMBER: &str = "replayed-sequence-number";
pub const REPLAYED_MESSAGE_ID: &str = "replayed-message-id";
pub const REPLAYED_AT: &str = "replayed-at";
pub const REPLAYED_BY: &str = "replayed-by";

/// Properties Service Bus adds when it dead-letters; they describe the old life of the message, not the new one.
const BROKER_DEAD_LETTER_PROPERTIES: &[&str] = &["DeadLetterReason", "DeadLetterErrorDescription"];

/// Namespace of replay MessageIds (UUIDv5). Fixed forever: a re-run of an interrupted replay must produce the same id,
/// so the queue's duplicate detection drops the second send.
const REPLAY_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("0c6b0f5e-3d0e-5b59-8d8e-6a0f1d7c2b41");

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
                delivery_count: Some(11),
                ..BrokerProperties::default()
            },
            application_properties: properties,
            lock_location: None,
        }
    }

    #[test]
    fn replay_strips_bookkeeping_keeps_identity_and_records_origin() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let replay = replay_message("onboarding/$DeadLetterQueue", &dead_letter(), "alice", now);
        let names: Vec<&str> = replay.application_properties.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [REPLAYED_AT, REPLAYED_BY, REPLAYED_FROM, REPLAYED_MESSAGE_ID, REPLAYED_SEQUENCE_NUMBER, "upstream-system"]
        );
        assert_eq!(replay.application_properties[REPLAYED_AT], "2026-11-29T12:00:00Z");
        assert_eq!(replay.application_properties[REPLAYED_SEQUENCE_NUMBER], 42);
        assert_eq!(replay.correlation_id.as_deref(), Some("c-1"));
        assert_ne!(replay.message_id.as_deref(), Some("m-1"));
        assert_eq!(replay.scheduled_enqueue_time, None);
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
    fn replay_ids_are_stable_per_dead_letter_and_distinct_between_them() {
        let first = replay_message_id("q/$DeadLetterQueue", &dead_letter());
        assert_eq!(first, replay_message_id("q/$DeadLetterQueue", &dead_letter()));
        let mut other = dead_letter();
        other.broker_properties.sequence_number = Some(43);
        assert_ne!(first, replay_message_id("q/$DeadLetterQueue", &other));
    }
}
