//! The order of onboardings of one storage account (pure): which of two onboardings is the newer one.
//!
//! "Older" is the broker's order of an onboarding's *first* delivery, never a producer's clock: the
//! `(EnqueuedTimeUtc, SequenceNumber)` Service Bus stamped on the first delivered message, written
//! `YYYY-MM-DDTHH:MM:SSZ#<seq>` (seconds, as the Functions host passes the time; compared by time, then by sequence
//! number). The first delivery derives it from its own metadata; every copy the handler or `cmkctl` makes of the
//! message carries it in the application property [`ORDER_PROPERTY`], so a retry hours later, or a replayed dead
//! letter, stays as old as its onboarding. A carried value is trusted only when it is not newer than the delivery's
//! own broker order (a copy is always enqueued after its onboarding's first delivery), so a producer that sets the
//! property itself can make its message older, never newer (ARCHITECTURE.md, decision 22).

use std::fmt;

use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Application property that carries an onboarding's order on every copy (lowercase, like every name we write).
pub const ORDER_PROPERTY: &str = "cmk-onboarding-order";

/// When the broker first enqueued an onboarding's message, and its sequence number then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OnboardingOrder {
    /// Seconds precision, UTC (compared first).
    pub enqueued: OffsetDateTime,
    /// The broker's sequence number (compared second, numerically).
    pub sequence_number: i64,
}

impl OnboardingOrder {
    /// From the time and sequence number, dropping sub-second digits (the host passes seconds only).
    pub fn new(enqueued: OffsetDateTime, sequence_number: i64) -> Self {
        let enqueued = enqueued.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(enqueued);
        Self { enqueued, sequence_number }
    }

    /// From the Functions host's trigger metadata: `EnqueuedTimeUtc` (`2024-10-24T14:32:17`, no offset: the key says
    /// UTC; a `Z`, `+00:00` or a fraction are accepted too) and `SequenceNumber`.
    pub fn from_host_metadata(enqueued_time_utc: &str, sequence_number: i64) -> Option<Self> {
        let text = enqueued_time_utc.trim().trim_matches('"');
        let (date_time, rest) = text.split_at_checked(19)?;
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        if !matches!(rest, "" | "Z" | "+00:00") {
            return None;
        }
        let at =
            PrimitiveDateTime::parse(date_time, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
                .ok()?
                .assume_utc();
        Some(Self::new(at, sequence_number))
    }

    /// Parses the written form `YYYY-MM-DDTHH:MM:SSZ#<seq>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (time, sequence) = text.trim().split_once('#')?;
        let time = time.strip_suffix('Z')?;
        if time.len() != 19 || sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let at = PrimitiveDateTime::parse(time, format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
            .ok()?
            .assume_utc();
        Some(Self::new(at, sequence.parse().ok()?))
    }

    /// The order of the delivered message's onboarding: the carried property when there is one that is not newer
    /// than the delivery itself, else the delivery's own broker order. `None` when neither is known.
    pub fn of_delivery(carried: Option<&Value>, delivered: Option<Self>) -> Option<Self> {
        let carried = carried.and_then(|v| v.as_str()).and_then(Self::parse);
        match (carried, delivered) {
            (Some(carried), Some(own)) => Some(carried.min(own)),
            (carried, own) => own.or(carried),
        }
    }
}

impl fmt::Display for OnboardingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.enqueued;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z#{}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            self.sequence_number
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn written_form_round_trips_and_orders_by_time_then_number() {
        let a = OnboardingOrder::parse("2026-12-03T18:00:05Z#900").unwrap();
        assert_eq!(a.to_string(), "2026-12-03T18:00:05Z#900");
        let b = OnboardingOrder::parse("2026-12-03T18:00:05Z#1000").unwrap();
        let c = OnboardingOrder::parse("2026-12-03T18:00:06Z#1").unwrap();
        // Numerically, not as text: 900 < 1000; and the time comes first.
        assert!(a < b && b < c);
        for bad in ["2026-12-03T18:00:05#1", "2026-12-03T18:00:05Z#", "2026-12-03T18:00:05Z#-1", "x#1", "", "#1"] {
            assert_eq!(OnboardingOrder::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_metadata_gives_the_order() {
        let host = OnboardingOrder::from_host_metadata("2024-10-24T14:32:17", 42).unwrap();
        assert_eq!(host, OnboardingOrder::new(datetime!(2024-10-24 14:32:17 UTC), 42));
        assert_eq!(OnboardingOrder::from_host_metadata("2024-10-24T14:32:17.123Z", 42), Some(host));
        assert_eq!(OnboardingOrder::from_host_metadata("2024-10-24T14:32:17+02:00", 42), None);
    }

    #[test]
    fn a_carried_order_newer_than_the_delivery_is_not_trusted() {
        let own = OnboardingOrder::parse("2026-12-03T18:00:05Z#900").unwrap();
        let older = Value::from("2026-12-03T17:00:00Z#10");
        let newer = Value::from("2027-01-01T00:00:00Z#1");
        assert_eq!(
            OnboardingOrder::of_delivery(Some(&older), Some(own)).unwrap().to_string(),
            "2026-12-03T17:00:00Z#10"
        );
        assert_eq!(OnboardingOrder::of_delivery(Some(&newer), Some(own)), Some(own));
        assert_eq!(OnboardingOrder::of_delivery(Some(&Value::from("junk")), Some(own)), Some(own));
        assert_eq!(OnboardingOrder::of_delivery(None, None), None);
    }
}
