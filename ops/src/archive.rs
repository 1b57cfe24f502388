//! What `dlq purge` deletes is first copied here: one JSON line per message (body, system and application
//! properties), synced to disk before the first message is deleted. `--no-archive` opts out.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use cmk_handler::azure::servicebus::ReceivedMessage;
use serde_json::{Value, json};

/// One archived message: enough to inspect it, or to send it again by hand.
pub fn archived(message: &ReceivedMessage) -> Value {
    let broker = &message.broker_properties;
    let body = match std::str::from_utf8(&message.body) {
        Ok(text) => json!({ "body": text }),
        Err(_) => json!({ "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&message.body) }),
    };
    let mut record = json!({
        "sequenceNumber": broker.sequence_number,
        "messageId": broker.message_id,
        "correlationId": broker.correlation_id,
        "sessionId": broker.session_id,
        "label": broker.label,
        "contentType": message.content_type,
        "enqueuedTimeUtc": broker.enqueued_time_utc,
        "deliveryCount": broker.delivery_count,
        "deadLetterSource": broker.dead_letter_source,
        "applicationProperties": message.application_properties,
    });
    if let (Some(record), Some(body)) = (record.as_object_mut(), body.as_object()) {
        record.extend(body.clone());
    }
    record
}

/// Writes every message to `path` (created, never overwritten) and syncs it.
pub fn write<'a>(path: &Path, messages: impl IntoIterator<Item = &'a ReceivedMessage>) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let fail = |e: std::io::Error| format!("cannot write the purge archive {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new().create_new(true).write(true).open(path).map_err(fail)?;
    let mut text = String::new();
    for message in messages {
        text.push_str(&archived(message).to_string());
        text.push('\n');
    }
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(fail)
}
