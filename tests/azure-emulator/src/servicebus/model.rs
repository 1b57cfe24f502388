//! The broker's vocabulary: messages as sent and as stored, deliveries, and the errors every operation can return.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A message as a sender hands it to the broker. Only `body` and `application_properties` are always present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMessage {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
    /// `Label` in the REST API, `Subject` in the AMQP SDKs.
    pub label: Option<String>,
    pub to: Option<String>,
    pub reply_to: Option<String>,
    pub reply_to_session_id: Option<String>,
    pub partition_key: Option<String>,
    pub time_to_live: Option<Duration>,
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
}

impl NewMessage {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self { body: body.into(), ..Self::default() }
    }

    /// What counts against `maxMessageSizeInKilobytes`: the body plus every property name and value.
    pub fn size(&self) -> usize {
        let system: usize = [
            &self.content_type,
            &self.message_id,
            &self.correlation_id,
            &self.session_id,
            &self.label,
            &self.to,
            &self.reply_to,
            &self.reply_to_session_id,
            &self.partition_key,
        ]
        .iter()
        .map(|value| value.as_ref().map_or(0, String::len))
        .sum();
        let application: usize =
            self.application_properties.iter().map(|(name, value)| name.len() + value.to_string().len()).sum();
        self.body.len() + system + application
    }
}

/// Where a stored message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MessageState {
    Active,
    Scheduled,
    Deferred,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Scheduled => "Scheduled",
            Self::Deferred => "Deferred",
        }
    }
}

/// A message as the broker stores and delivers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    #[serde(skip)]
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub session_id: Option<String>,
    pub label: Option<String>,
    pub to: Option<String>,
    pub reply_to: Option<String>,
    pub reply_to_session_id: Option<String>,
    pub partition_key: Option<String>,
    /// The TTL in force (the message's own, capped by the entity default); `None` is infinite.
    #[serde(with = "seconds")]
    pub time_to_live: Option<Duration>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
    pub sequence_number: i64,
    pub enqueued_sequence_number: i64,
    /// When the message became active (for a scheduled message: when it became due).
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_time: OffsetDateTime,
    /// `enqueued_time + time_to_live`; `None` never expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// How many times the message has been delivered under a lock; a delivered message counts itself.
    pub delivery_count: u32,
    pub state: MessageState,
    /// The entity the message was dead-lettered from (`queue` or `topic/subscriptions/sub`).
    pub dead_letter_source: Option<String>,
    pub dead_letter_reason: Option<String>,
    pub dead_letter_error_description: Option<String>,
}

/// TTLs as fractional seconds in dumps, the unit the REST API uses.
mod seconds {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_f64(duration.as_secs_f64()),
            None => serializer.serialize_none(),
        }
    }
}

/// A message received under a peek-lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub message: Message,
    pub lock_token: Uuid,
    pub locked_until: OffsetDateTime,
}

/// Why a broker operation failed. `status` gives the REST status the service answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("the messaging entity '{0}' could not be found")]
    EntityNotFound(String),
    #[error(
        "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue, \
         or was received by a different receiver instance."
    )]
    LockLost,
    /// A lock URL whose message id or sequence number is not the locked message's.
    #[error("No message was found with the specified MessageId or LockToken.")]
    MessageNotFound,
    #[error("The message of {size} bytes exceeds the limit of {limit} bytes currently allowed on the entity.")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("The maximum entity size has been reached or exceeded for '{0}'.")]
    QuotaExceeded(String),
    #[error("{0}")]
    BadRequest(String),
}

impl BusError {
    /// The HTTP status Service Bus answers with for this error. The REST reference's tables: a queue, topic or
    /// subscription that does not exist is 410 for Send, Peek-Lock, Receive-and-Delete, Unlock, Renew-Lock and
    /// Delete; "No message was found with the specified MessageId or LockToken" is 404 for the last three.
    pub fn status(&self) -> u16 {
        match self {
            Self::EntityNotFound(_) => 410,
            Self::LockLost => 404,
            Self::MessageNotFound => 404,
            Self::MessageTooLarge { .. } => 413,
            Self::QuotaExceeded(_) => 403,
            Self::BadRequest(_) => 400,
        }
    }
}
