//! A dead-lettered onboarding message as ops see it (what failed, for whom, why), and the filters that select them.

use std::collections::BTreeMap;

use cmk_handler::azure::servicebus::ReceivedMessage;
use cmk_handler::order::{ORDER_PROPERTY, OnboardingOrder};
use cmk_handler::workflow::settle::{ATTEMPT, DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, ORIGINAL_MESSAGE_ID};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::FilterArgs;

/// One dead letter, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub sequence_number: i64,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub onboarding_id: Option<String>,
    pub customer_tenant_id: Option<String>,
    pub storage_account_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub enqueued_time: Option<OffsetDateTime>,
    pub delivery_count: Option<i64>,
    /// Service Bus' reason (`MaxDeliveryCountExceeded` for the handler's marked copies).
    pub dead_letter_reason: Option<String>,
    pub dead_letter_description: Option<String>,
    /// The reason code the handler recorded (`cmk-dead-letter-reason`).
    pub handler_reason: Option<String>,
    pub handler_description: Option<String>,
    pub attempts: Option<u64>,
    /// The MessageId of the message the handler received before it dead-lettered a copy.
    pub original_message_id: Option<String>,
    /// The order of its onboarding (`cmk-onboarding-order`, else its own broker order): what supersession compares.
    pub onboarding_order: Option<String>,
}

impl DeadLetter {
    pub fn from_message(message: &ReceivedMessage) -> Self {
        let broker = &message.broker_properties;
        let property = |name: &str| string_property(&message.application_properties, name);
        let body: Option<Value> = serde_json::from_slice(&message.body).ok();
        let field = |path: &[&str]| {
            let mut value = body.as_ref()?;
            for key in path {
                value = value.get(key)?;
            }
            value.as_str().map(str::to_owned)
        };
        Self {
            sequence_number: broker.sequence_number.unwrap_or_default(),
            message_id: broker.message_id.clone(),
            correlation_id: broker.correlation_id.clone(),
            onboarding_id: field(&["onboardingId"]),
            customer_tenant_id: field(&["customer", "tenantId"]),
            storage_account_id: field(&["storageAccount", "resourceId"]),
            enqueued_time: broker.enqueued_time_utc.as_deref().and_then(parse_broker_date),
            delivery_count: broker.delivery_count,
            dead_letter_reason: property("DeadLetterReason"),
            dead_letter_description: property("DeadLetterErrorDescription"),
            handler_reason: property(DEAD_LETTER_REASON),
            handler_description: property(DEAD_LETTER_DESCRIPTION),
            attempts: find(&message.application_properties, ATTEMPT)
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())),
            original_message_id: property(ORIGINAL_MESSAGE_ID),
            onboarding_order: onboarding_order(message).map(|order| order.to_string()),
        }
    }

    /// The most specific reason known: the handler's, else Service Bus'.
    pub fn reason(&self) -> &str {
        self.handler_reason.as_deref().or(self.dead_letter_reason.as_deref()).unwrap_or("Unknown")
    }
}

/// The order of a dead letter's onboarding: the `cmk-onboarding-order` the handler's copies carry, else the dead
/// letter's own `(EnqueuedTimeUtc, SequenceNumber)` (a message dead-lettered as it was delivered, or one from before
/// the property existed; a dead letter keeps both from the queue). As in the handler, a carried order newer than the
/// message itself is not trusted.
pub fn onboarding_order(message: &ReceivedMessage) -> Option<OnboardingOrder> {
    let broker = &message.broker_properties;
    let own = broker
        .enqueued_time_utc
        .as_deref()
        .and_then(parse_broker_date)
        .zip(broker.sequence_number)
        .map(|(at, sequence_number)| OnboardingOrder::new(at, sequence_number));
    OnboardingOrder::of_delivery(find(&message.application_properties, ORDER_PROPERTY), own)
}

/// One reason's share of the dead letters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonGroup {
    pub reason: String,
    pub count: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub newest: Option<OffsetDateTime>,
    pub sequence_numbers: Vec<i64>,
    pub onboarding_ids: Vec<String>,
}

/// Dead letters grouped by reason, biggest group first.
pub fn by_reason(letters: &[DeadLetter]) -> Vec<ReasonGroup> {
    let mut groups: BTreeMap<String, ReasonGroup> = BTreeMap::new();
    for letter in letters {
        let group = groups.entry(letter.reason().to_owned()).or_insert_with(|| ReasonGroup {
            reason: letter.reason().to_owned(),
            count: 0,
            oldest: None,
            newest: None,
            sequence_numbers: Vec::new(),
            onboarding_ids: Vec::new(),
        });
        group.count += 1;
        group.oldest = group.oldest.into_iter().chain(letter.enqueued_time).min();
        group.newest = group.newest.into_iter().chain(letter.enqueued_time).max();
        group.sequence_numbers.push(letter.sequence_number);
        if let Some(id) = &letter.onboarding_id {
            group.onboarding_ids.push(id.clone());
        }
    }
    let mut groups: Vec<ReasonGroup> = groups.into_values().collect();
    // Biggest problem first.
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    groups
}

/// Which dead letters to act on.
#[derive(Debug, Clone, Default)]
pub struct Filter(FilterArgs);

impl Filter {
    pub fn new(args: FilterArgs) -> Self {
        Self(args)
    }

    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let f = &self.0;
        let any = |wanted: &[String], actual: Option<&str>| {
            wanted.is_empty() || actual.is_some_and(|a| wanted.iter().any(|w| w.eq_ignore_ascii_case(a)))
        };
        let reasons_match = f.reason.is_empty()
            || [letter.handler_reason.as_deref(), letter.dead_letter_reason.as_deref()]
                .into_iter()
                .any(|r| any(&f.reason, r));
        reasons_match
            && any(&f.onboarding_id, letter.onboarding_id.as_deref())
            && any(&f.tenant, letter.customer_tenant_id.as_deref())
            && (f.sequence.is_empty() || f.sequence.contains(&letter.sequence_number))
            && f.since.is_none_or(|since| letter.enqueued_time.is_some_and(|t| t >= since))
            && f.until.is_none_or(|until| letter.enqueued_time.is_some_and(|t| t < until))
    }
}

/// Application properties are case-insensitive on the wire.
pub fn find<'a>(properties: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a Value> {
    properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn string_property(properties: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    find(properties, name).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `BrokerProperties` dates are RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`); RFC 3339 is accepted too.
pub fn parse_broker_date(text: &str) -> Option<OffsetDateTime> {
    let rfc1123 = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text.trim(), rfc1123)
        .map(|at| at.assume_utc())
        .or_else(|_| OffsetDateTime::parse(text.trim(), &Rfc3339))
        .ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter {
            sequence_number: 7,
            message_id: Some("m".into()),
            correlation_id: None,
            onboarding_id: Some("obd-1".into()),
            customer_tenant_id: Some("44444444-4444-4444-4444-444444444444".into()),
            storage_account_id: None,
            enqueued_time: Some(datetime!(2026-11-29 10:00 UTC)),
            delivery_count: Some(10),
            dead_letter_reason: Some("MaxDeliveryCountExceeded".into()),
            dead_letter_description: None,
            handler_reason: Some("ServicePrincipalMissing".into()),
            handler_description: None,
            attempts: None,
            original_message_id: None,
            onboarding_order: None,
        }
    }

    #[test]
    fn criteria_combine_with_and_values_with_or() {
        let matches = |args: FilterArgs| Filter::new(args).matches(&letter());
        assert!(matches(FilterArgs::default()));
        assert!(matches(FilterArgs {
            reason: vec!["x".into(), "serviceprincipalmissing".into()],
            ..Default::default()
        }));
        assert!(matches(FilterArgs { reason: vec!["MaxDeliveryCountExceeded".into()], ..Default::default() }));
        assert!(!matches(FilterArgs { reason: vec!["KeyDisabled".into()], ..Default::default() }));
        assert!(!matches(FilterArgs { onboarding_id: vec!["obd-2".into()], ..Default::default() }));
        assert!(matches(FilterArgs { since: Some(datetime!(2026-11-29 10:00 UTC)), ..Default::default() }));
        assert!(!matches(FilterArgs { until: Some(datetime!(2026-11-29 10:00 UTC)), ..Default::default() }));
        assert!(!matches(FilterArgs {
            tenant: vec!["44444444-4444-4444-4444-444444444444".into()],
            sequence: vec![8],
            ..Default::default()
        }));
    }

    #[test]
    fn the_order_is_the_carried_one_or_the_dead_letters_own() {
        use cmk_handler::azure::servicebus::BrokerProperties;
        let mut message = ReceivedMessage {
            body: Vec::new(),
            content_type: None,
            broker_properties: BrokerProperties {
                sequence_number: Some(562_949_953_421_400),
                enqueued_time_utc: Some("Sun, 29 Nov 2026 11:00:00 GMT".into()),
                ..BrokerProperties::default()
            },
            application_properties: BTreeMap::new(),
            lock_location: None,
        };
        let own = onboarding_order(&message).unwrap();
        assert_eq!(own.to_string(), "2026-11-29T11:00:00Z#562949953421400");
        message.application_properties.insert("cmk-onboarding-order".into(), "2026-11-29T10:00:00Z#7".into());
        assert_eq!(onboarding_order(&message).unwrap().to_string(), "2026-11-29T10:00:00Z#7");
        // Newer than the message itself: not trusted.
        message.application_properties.insert("cmk-onboarding-order".into(), "2027-01-01T00:00:00Z#7".into());
        assert_eq!(onboarding_order(&message), Some(own));
    }

    #[test]
    fn broker_dates_parse_in_both_forms() {
        assert_eq!(parse_broker_date("Sun, 29 Nov 2026 10:00:00 GMT"), Some(datetime!(2026-11-29 10:00 UTC)));
        assert_eq!(parse_broker_date("2026-11-29T10:00:00Z"), Some(datetime!(2026-11-29 10:00 UTC)));
        assert_eq!(parse_broker_date("yesterday"), None);
    }
}
