//! What a trigger delivered, as the workflow reads it: one queue message with the broker's values, or a timer's run
//! (pure data; `function::invocation` decodes the host's payloads into it).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::order::OnboardingOrder;

/// The metadata names whose values a body member can hide (string trigger encodings), as [`IncomingMessage::shadowed`]
/// records them.
pub const SESSION_ID: &str = "SessionId";
pub const APPLICATION_PROPERTIES: &str = "ApplicationProperties";

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
    /// The broker's order of this delivery (`EnqueuedTimeUtc`, `SequenceNumber`); `None` when a body member hid
    /// either (string trigger encodings) or the host passed none.
    pub broker_order: Option<OnboardingOrder>,
    /// `SessionId` (session-enabled trigger), double-encoded in Metadata like every string.
    pub session_id: Option<String>,
    /// Service Bus application properties, as the host passes them (a real JSON object).
    pub application_properties: BTreeMap<String, Value>,
    /// Metadata the body's own top-level members hid (string trigger encodings only), so it is unknown here, e.g.
    /// `ApplicationProperties` when the body has both `ApplicationProperties` and `UserProperties` members.
    pub shadowed: Vec<&'static str>,
}

impl IncomingMessage {
    /// True when the broker's application properties could not be read: the handler's own marks and counters on a
    /// copy of this message would be invisible too.
    pub fn properties_unknown(&self) -> bool {
        self.shadowed.contains(&APPLICATION_PROPERTIES)
    }

    /// True when a body member named `SessionId` took the broker's value's place (string trigger encodings), so the
    /// delivered session is unknown.
    pub fn session_id_shadowed(&self) -> bool {
        self.shadowed.contains(&SESSION_ID)
    }
}

/// What a timer invocation says about its run: the host's time when it fired (`Metadata.sys.UtcNow`) and the
/// schedule's next occurrence (`Data.{binding}.ScheduleStatus.Next`, kept when `useMonitor` is on). Either may be
/// missing or unreadable; the run then falls back to its own clock and a default interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerRun {
    pub fired_at: Option<time::OffsetDateTime>,
    pub next: Option<time::OffsetDateTime>,
}
