//! Settling a delivery: publish the event, schedule a retry copy or send the dead-letter copy.
//!
//! Order matters for at-least-once safety: the event goes out first (its id is deterministic, so topic duplicate
//! detection drops a repeat), then the copy (its MessageId is derived from the delivered message's, so queue
//! duplicate detection drops a repeat), and only then does the host complete the delivery. A crash anywhere in
//! between leads to a redelivery that produces the same ids.

use std::collections::BTreeMap;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::App;
use super::identity_chain::IdentityChain;
use super::storage::AppliedEncryption;
use crate::azure::servicebus::OutgoingMessage;
use crate::contract::ValidatedOnboarding;
use crate::decide::{AttemptState, Decision, decide};
use crate::error::Error;
use crate::events::{ActionRequiredData, CompletedData, FailedData, OnboardingEvent};
use crate::function::invocation::IncomingMessage;
use crate::remediation::{RemediationContext, remediation};

use super::Settlement;

/// Application properties the handler reads and writes on its own copies.
pub const ATTEMPT: &str = "cmk-attempt";
pub const FIRST_ATTEMPT_AT: &str = "cmk-first-attempt-at";
pub const LAST_ACTION_STATE: &str = "cmk-last-action-state";
pub const DEAD_LETTER_REASON: &str = crate::function::server::DEAD_LETTER_REASON_PROPERTY;
pub const DEAD_LETTER_DESCRIPTION: &str = "cmk-dead-letter-description";
/// The producer's MessageId of the message a copy descends from, for ops.
pub const ORIGINAL_MESSAGE_ID: &str = "cmk-original-message-id";

const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// Where the Azure SDKs put W3C trace context on Service Bus messages. Over the REST API an application property is
/// an HTTP header, and a `traceparent` header is the HTTP request's own trace context, so messages carry theirs here.
const DIAGNOSTIC_ID: &str = "Diagnostic-Id";

/// Which attempt this delivery is, from the properties of a retry copy (or the first attempt, now).
pub fn attempt_state(properties: &BTreeMap<String, Value>, now: OffsetDateTime) -> AttemptState {
    let get = |name: &str| properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let previous = get(ATTEMPT).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0);
    let first_attempt_at = get(FIRST_ATTEMPT_AT)
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .filter(|t| *t <= now)
        .unwrap_or(now);
    AttemptState {
        attempt: u32::try_from(previous).unwrap_or(u32::MAX - 1).saturating_add(1),
        first_attempt_at,
        last_action_state: get(LAST_ACTION_STATE).and_then(Value::as_str).map(str::to_owned),
    }
}

fn source(app: &App) -> String {
    crate::events::event_source(app.settings.function_app_name.as_deref())
}

pub(super) async fn after_success(
    app: &App,
    message: &IncomingMessage,
    onboarding: &ValidatedOnboarding,
    chain: &IdentityChain,
    applied: &AppliedEncryption,
    attempt: &AttemptState,
) -> Result<Settlement, Error> {
    let now = OffsetDateTime::now_utc();
    let data = CompletedData {
        onboarding_id: onboarding.onboarding_id.clone(),
        customer_tenant_id: onboarding.customer_tenant_id.clone(),
        storage_account_id: onboarding.storage_account.arm_id(),
        key_vault_uri: onboarding.key.vault_uri.clone(),
        key_name: onboarding.key.name.clone(),
        key_version: onboarding.key.version.clone(),
        current_versioned_key_identifier: applied.current_versioned_key_identifier.clone(),
        last_key_rotation_timestamp: applied
            .last_key_rotation_timestamp
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        user_assigned_identity_id: chain.uami_id.clone(),
        federated_identity_client_id: chain.app_client_id.clone(),
        attempts: attempt.attempt,
        first_attempt_at: attempt.first_attempt_at,
        completed_at: now,
    };
    publish(app, message, OnboardingEvent::completed(&source(app), data, now)).await?;
    tracing::info!(key = %applied.current_versioned_key_identifier, "onboarding completed");
    Ok(Settlement::Completed { onboarding_id: onboarding.onboarding_id.clone() })
}

pub(super) async fn after_failure(
    app: &App,
    message: &IncomingMessage,
    onboarding: Option<&ValidatedOnboarding>,
    error: Error,
    attempt: &AttemptState,
) -> Result<Settlement, Error> {
    let now = OffsetDateTime::now_utc();
    let onboarding_id = onboarding.map(|o| o.onboarding_id.clone()).unwrap_or_else(|| best_effort_id(message));
    match decide(&error, attempt, now, &app.retry_policy) {
        Decision::ScheduleRetry { at, publish_action_required, state_fingerprint } => {
            tracing::warn!(reason = error.reason_code(), disposition = ?error.disposition(), %at, "attempt failed; retry scheduled: {error}");
            if publish_action_required
                && let (Some(onboarding), Some(action), Some(fingerprint)) =
                    (onboarding, error.customer_action(), state_fingerprint.as_deref())
            {
                let fix = remediation(&action, &remediation_context(app, onboarding));
                let data = ActionRequiredData {
                    onboarding_id: onboarding.onboarding_id.clone(),
                    customer_tenant_id: onboarding.customer_tenant_id.clone(),
                    storage_account_id: onboarding.storage_account.arm_id(),
                    reason_code: error.reason_code().to_owned(),
                    missing: fix.missing,
                    actions: fix.actions,
                    admin_consent_url: fix.admin_consent_url,
                    next_attempt_at: at,
                    deadline: attempt.first_attempt_at + app.retry_policy.deadline,
                };
                publish(app, message, OnboardingEvent::action_required(&source(app), data, fingerprint, now)).await?;
            }
            let last_state = state_fingerprint.or_else(|| attempt.last_action_state.clone());
            let mut properties = carried_properties(message);
            properties.insert(ATTEMPT.to_owned(), Value::from(attempt.attempt));
            properties.insert(FIRST_ATTEMPT_AT.to_owned(), Value::from(rfc3339(attempt.first_attempt_at)));
            if let Some(state) = last_state {
                properties.insert(LAST_ACTION_STATE.to_owned(), Value::from(state));
            }
            send_copy(app, message, "retry", properties, Some(at)).await?;
            Ok(Settlement::RetryScheduled { onboarding_id, at, reason: error.reason_code().to_owned() })
        }
        Decision::DeadLetter { reason_code, description } => {
            tracing::error!(reason = %reason_code, "onboarding failed permanently; dead-lettering: {description}");
            let data = FailedData {
                onboarding_id: onboarding_id.clone(),
                customer_tenant_id: onboarding.map(|o| o.customer_tenant_id.clone()),
                storage_account_id: onboarding.map(|o| o.storage_account.arm_id()),
                reason_code: reason_code.clone(),
                message: description.clone(),
                attempts: attempt.attempt,
                first_attempt_at: Some(attempt.first_attempt_at),
                dead_lettered: true,
            };
            let delivered_id = message.message_id.clone().unwrap_or_default();
            publish(app, message, OnboardingEvent::failed(&source(app), data, &delivered_id, now)).await?;
            let mut properties = carried_properties(message);
            properties.insert(DEAD_LETTER_REASON.to_owned(), Value::from(reason_code.as_str()));
            properties.insert(DEAD_LETTER_DESCRIPTION.to_owned(), Value::from(description));
            properties.insert(ATTEMPT.to_owned(), Value::from(attempt.attempt));
            properties.insert(FIRST_ATTEMPT_AT.to_owned(), Value::from(rfc3339(attempt.first_attempt_at)));
            send_copy(app, message, "dead-letter", properties, None).await?;
            Ok(Settlement::DeadLettered { onboarding_id, reason: reason_code })
        }
    }
}

fn remediation_context<'a>(app: &'a App, onboarding: &'a ValidatedOnboarding) -> RemediationContext<'a> {
    RemediationContext {
        cloud: app.settings.cloud,
        customer_tenant_id: &onboarding.customer_tenant_id,
        app_client_id: &onboarding.identity.app_client_id,
        vault_name: onboarding.key.vault_name(),
        managed_hsm: onboarding.key.managed_hsm,
        key_name: &onboarding.key.name,
        key_version: onboarding.key.version.as_deref(),
        vault_resource_id: None,
    }
}

/// For a message that failed validation: its `onboardingId` if one can be read, else its MessageId.
fn best_effort_id(message: &IncomingMessage) -> String {
    serde_json::from_slice::<Value>(&message.body)
        .ok()
        .and_then(|v| v.get("onboardingId")?.as_str().map(str::to_owned))
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| format!("message:{}", message.message_id.as_deref().unwrap_or("unknown")))
}

async fn publish(app: &App, message: &IncomingMessage, event: OnboardingEvent) -> Result<(), Error> {
    let event = event.with_traceparent(crate::telemetry::current_traceparent());
    let (body, message_id, mut properties) = event.to_service_bus();
    if let Some(traceparent) = &event.traceparent {
        properties.insert(DIAGNOSTIC_ID.to_owned(), Value::from(traceparent.as_str()));
    }
    let outgoing = OutgoingMessage {
        body,
        content_type: Some(CLOUDEVENTS_CONTENT_TYPE.to_owned()),
        message_id: Some(message_id),
        correlation_id: message.correlation_id.clone().or_else(|| Some(event.onboardingid.clone())),
        label: Some(event.event_type.as_str().to_owned()),
        application_properties: properties,
        ..OutgoingMessage::default()
    };
    app.clients.service_bus.send(&app.settings.events_topic, &outgoing).await?;
    tracing::info!(event_id = %event.id, event_type = event.event_type.as_str(), "event published");
    Ok(())
}

/// The delivered message's application properties minus our own bookkeeping, which the caller sets afresh.
fn carried_properties(message: &IncomingMessage) -> BTreeMap<String, Value> {
    let ours = [
        ATTEMPT,
        FIRST_ATTEMPT_AT,
        LAST_ACTION_STATE,
        DEAD_LETTER_REASON,
        DEAD_LETTER_DESCRIPTION,
        ORIGINAL_MESSAGE_ID,
    ];
    let mut properties: BTreeMap<String, Value> = message
        .application_properties
        .iter()
        .filter(|(k, _)| !ours.iter().any(|o| k.eq_ignore_ascii_case(o)) && !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The producer's MessageId, kept through retry copies and replays (cmkctl sets it on a replay); the delivered
    // message's id only when none was recorded yet.
    let recorded = message.application_properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(ORIGINAL_MESSAGE_ID));
    if let Some(id) = recorded.and_then(|(_, v)| v.as_str()).or(message.message_id.as_deref()) {
        properties.insert(ORIGINAL_MESSAGE_ID.to_owned(), Value::from(id));
    }
    properties
}

/// Sends a copy of the delivered message back to the queue. Its MessageId is derived from the delivered one, so a
/// redelivery that sends it again is dropped by duplicate detection.
async fn send_copy(
    app: &App,
    message: &IncomingMessage,
    kind: &str,
    mut properties: BTreeMap<String, Value>,
    at: Option<OffsetDateTime>,
) -> Result<(), Error> {
    if let Some(traceparent) = crate::telemetry::current_traceparent() {
        properties.insert(DIAGNOSTIC_ID.to_owned(), Value::from(traceparent));
    }
    let delivered =
        message.message_id.clone().unwrap_or_else(|| format!("seq-{}", message.sequence_number.unwrap_or(0)));
    let outgoing = OutgoingMessage {
        body: message.body.clone(),
        content_type: message.content_type.clone(),
        message_id: Some(uuid::Uuid::new_v5(&COPY_ID_NAMESPACE, format!("{delivered}\n{kind}").as_bytes()).to_string()),
        correlation_id: message.correlation_id.clone(),
        scheduled_enqueue_time: at,
        application_properties: properties,
        ..OutgoingMessage::default()
    };
    app.clients.service_bus.send(&app.settings.onboarding_queue, &outgoing).await
}

/// Namespace of copy MessageIds (UUIDv5), fixed forever so ids stay stable across versions.
const COPY_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("4f8d2c3e-6a1b-5c7d-9e0f-1a2b3c4d5e6f");

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn first_delivery_is_attempt_one() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let state = attempt_state(&BTreeMap::new(), now);
        assert_eq!((state.attempt, state.first_attempt_at, state.last_action_state), (1, now, None));
    }

    #[test]
    fn retry_copies_carry_the_count_and_first_attempt() {
        let now = datetime!(2026-11-29 12:00 UTC);
        let mut props = BTreeMap::new();
        props.insert(ATTEMPT.to_owned(), Value::from(3));
        props.insert(FIRST_ATTEMPT_AT.to_owned(), Value::from("2026-11-28T12:00:00Z"));
        props.insert(LAST_ACTION_STATE.to_owned(), Value::from("fp"));
        let state = attempt_state(&props, now);
        assert_eq!(state.attempt, 4);
        assert_eq!(state.first_attempt_at, datetime!(2026-11-28 12:00 UTC));
        assert_eq!(state.last_action_state.as_deref(), Some("fp"));
        // A first-attempt time in the future (a forged or skewed property) is not trusted.
        props.insert(FIRST_ATTEMPT_AT.to_owned(), Value::from("2027-01-01T00:00:00Z"));
        assert_eq!(attempt_state(&props, now).first_attempt_at, now);
    }
}
