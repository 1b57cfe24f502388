//! What the `cmk-watch-state` tag holds (pure): the key watch's state (`key_watch::WatchState`), when a probe
//! recorded it, and the last event the watch published for the account, so the status function can answer "last
//! probe, last event" from Azure alone (ARCHITECTURE.md, decision 30).
//!
//! `<state>;at=<when>;ev=<event>;eid=<event id>;eat=<when>`: the state as `WatchState::encode` writes it, then named
//! fields; times are ISO 8601 basic UTC (`20261203T220000Z`), the event is its short name (`key_access_lost`). A
//! tag from before these fields (the state alone) still reads, without them; unknown named fields are ignored, so a
//! later version may add some. The tag is still written only when the state changes: the time is that of the probe
//! that first saw the current state, and the last event is carried over when a change publishes none. Storage tag
//! values hold 256 characters: the record stays under that, dropping the event fields if it ever would not.

use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;

use super::account_tags::MAX_TAG_VALUE_CHARS;
use super::key_watch::WatchState;
use crate::events::EventType;

/// The tag's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRecord {
    pub state: WatchState,
    /// When a probe recorded `state` (it has not changed since); `None` in a tag from before this field.
    pub recorded_at: Option<OffsetDateTime>,
    pub last_event: Option<LastEvent>,
}

/// The last event the key watch published for the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastEvent {
    pub event_type: EventType,
    pub id: Uuid,
    pub at: OffsetDateTime,
}

const AT: &str = "at";
const EVENT: &str = "ev";
const EVENT_ID: &str = "eid";
const EVENT_AT: &str = "eat";

/// ISO 8601 basic, to the second, UTC.
const TIME: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// The event types the key watch publishes (the only ones recorded), by short name.
const WATCH_EVENTS: [(EventType, &str); 5] = [
    (EventType::KeyRotated, "key_rotated"),
    (EventType::KeyExpiring, "key_expiring"),
    (EventType::KeyAccessLost, "key_access_lost"),
    (EventType::KeyAccessRestored, "key_access_restored"),
    (EventType::ConfigurationDrift, "configuration_drift"),
];

fn short_name(event_type: EventType) -> Option<&'static str> {
    WATCH_EVENTS.iter().find(|(t, _)| *t == event_type).map(|(_, name)| *name)
}

fn format_time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(TIME).unwrap_or_default()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text, TIME).ok().map(time::PrimitiveDateTime::assume_utc)
}

impl WatchRecord {
    pub fn encode(&self) -> String {
        let mut text = self.state.encode();
        if let Some(at) = self.recorded_at {
            text.push_str(&format!(";{AT}={}", format_time(at)));
        }
        let with_event = self.last_event.and_then(|event| {
            let name = short_name(event.event_type)?;
            Some(format!(";{EVENT}={name};{EVENT_ID}={};{EVENT_AT}={}", event.id, format_time(event.at)))
        });
        if let Some(fields) = with_event
            && text.chars().count() + fields.chars().count() <= MAX_TAG_VALUE_CHARS
        {
            text.push_str(&fields);
        }
        text
    }

    /// `None` when the state part does not read (the probe then starts a new baseline, as before). Named fields
    /// that do not read are left out, not fatal: they describe the past, the state decides what happens next.
    pub fn decode(text: &str) -> Option<Self> {
        let (state, fields) = match text.find(&format!(";{AT}=")) {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let state = WatchState::decode(state)?;
        let field =
            |name: &str| fields.split(';').filter_map(|f| f.split_once('=')).find(|(n, _)| *n == name).map(|(_, v)| v);
        let recorded_at = field(AT).and_then(parse_time);
        let last_event = (|| {
            let name = field(EVENT)?;
            let event_type = WATCH_EVENTS.iter().find(|(_, n)| *n == name)?.0;
            let id = Uuid::parse_str(field(EVENT_ID)?).ok()?;
            let at = parse_time(field(EVENT_AT)?)?;
            Some(LastEvent { event_type, id, at })
        })();
        Some(Self { state, recorded_at, last_event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn state(access: &str) -> WatchState {
        WatchState {
            key_version: "0123456789abcdef0123456789abcdef".into(),
            access: access.into(),
            expiry_warned: true,
            configuration: "0badf00d".into(),
        }
    }

    #[test]
    fn a_record_reads_back_and_an_old_tag_reads_without_its_fields() {
        let record = WatchRecord {
            state: state("KeyDisabled"),
            recorded_at: Some(datetime!(2026-12-03 22:00:05 UTC)),
            last_event: Some(LastEvent {
                event_type: EventType::KeyAccessLost,
                id: Uuid::parse_str("6f1c1f53-3c8f-5d0e-9a55-0b1e7c1f2a11").unwrap(),
                at: datetime!(2026-12-03 22:00:05 UTC),
            }),
        };
        let text = record.encode();
        assert!(text.starts_with(&record.state.encode()), "{text}");
        assert!(text.contains(";at=20261203T220005Z;ev=key_access_lost;eid=6f1c1f53-"), "{text}");
        assert_eq!(WatchRecord::decode(&text), Some(record.clone()));
        // A tag written before the record's fields existed: the state alone.
        let old = WatchRecord::decode(&record.state.encode()).unwrap();
        assert_eq!((old.state, old.recorded_at, old.last_event), (record.state.clone(), None, None));
        // Unknown fields are ignored; unreadable ones are dropped, the state still reads.
        let later = format!("{text};zz=1");
        assert_eq!(WatchRecord::decode(&later), Some(record.clone()));
        let edited = text.replace("ev=key_access_lost", "ev=nonsense");
        assert_eq!(WatchRecord::decode(&edited).unwrap().last_event, None);
        assert_eq!(WatchRecord::decode("v1;k=x;at=20261203T220005Z"), None, "no state, no record");
    }

    #[test]
    fn the_longest_record_fits_a_tag_value() {
        let long_reason = "A".repeat(64);
        let record = WatchRecord {
            state: state(&long_reason),
            recorded_at: Some(datetime!(2026-12-03 22:00:05 UTC)),
            last_event: Some(LastEvent {
                event_type: EventType::KeyAccessRestored,
                id: Uuid::nil(),
                at: datetime!(2026-12-03 22:00:05 UTC),
            }),
        };
        let text = record.encode();
        assert!(text.chars().count() <= MAX_TAG_VALUE_CHARS, "{} characters: {text}", text.len());
        assert_eq!(WatchRecord::decode(&text), Some(record));
    }

    #[test]
    fn only_the_watch_s_events_are_recorded() {
        let record = WatchRecord {
            state: state("ok"),
            recorded_at: None,
            last_event: Some(LastEvent {
                event_type: EventType::Completed,
                id: Uuid::nil(),
                at: datetime!(2026-12-03 22:00:05 UTC),
            }),
        };
        assert_eq!(record.encode(), record.state.encode());
    }
}
