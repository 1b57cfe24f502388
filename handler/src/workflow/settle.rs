//! Settling a delivery: publish the event, schedule a retry copy or send the dead-letter copy (or, when no copy
//! can carry the mark, a reason record while the original is dead-lettered as it is).
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
use super::account_tags::AccountRecord;
use super::identity_chain::IdentityChain;
use super::storage::AppliedEncryption;
use super::watch_record::LastEvent;
use crate::azure::servicebus::OutgoingMessage;
use crate::contract::{AccountRequest, ValidatedMessage, ValidatedOnboarding};
use crate::decide::{AttemptState, Decision, decide};
use crate::delivery::IncomingMessage;
use crate::error::Error;
use crate::events::{
    ActionRequiredData, CLOUDEVENTS_CONTENT_TYPE, CompletedData, FailedData, OffboardedData, OnboardingEvent,
    SupersededData, SupersedingOnboarding,
};
use crate::order::{ORDER_PROPERTY, OnboardingOrder};
use crate::remediation::{RemediationContext, remediation};

use super::Settlement;

/// Application properties the handler reads and writes on its own copies.
pub const ATTEMPT: &str = "cmk-attempt";
pub const FIRST_ATTEMPT_AT: &str = "cmk-first-attempt-at";
pub const LAST_ACTION_STATE: &str = "cmk-last-action-state";
/// When an attempt of this onboarding re-registered `Microsoft.Storage` for the preview feature (RFC 3339).
pub const PROVIDER_REGISTERED_AT: &str = "cmk-provider-registered-at";
/// When a retry copy was sent (RFC 3339): the pacer tells what the copy knew of a 429 hold from what it did not.
pub const COPIED_AT: &str = "cmk-copied-at";
/// Marks a copy the handler dead-letters by failing it fast (the function layer checks it before any work).
pub const DEAD_LETTER_REASON: &str = "cmk-dead-letter-reason";
pub const DEAD_LETTER_DESCRIPTION: &str = "cmk-dead-letter-description";
/// The producer's MessageId of the message a copy descends from, for ops.
pub const ORIGINAL_MESSAGE_ID: &str = "cmk-original-message-id";
/// On a reason record: the sequence number of the message it explains, dead-lettered as it was (ARCHITECTURE.md,
/// decision 1).
pub const REASON_FOR_SEQUENCE_NUMBER: &str = "cmk-reason-for-sequence-number";

/// Where the Azure SDKs put W3C trace context on Service Bus messages. Over the REST API an application property is
/// an HTTP header, and a `traceparent` header is the HTTP request's own trace context, so messages carry theirs here.
/// Lowercase, like every property name we write: that is how Service Bus stores a header-borne name.
const DIAGNOSTIC_ID: &str = "diagnostic-id";

/// Which attempt this delivery is, from the properties of a retry copy (or the first attempt, now).
pub fn attempt_state(properties: &BTreeMap<String, Value>, now: OffsetDateTime) -> AttemptState {
    let get = |name: &str| properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    let previous = get(ATTEMPT).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0);
    // A time in the future (a forged or skewed property) is not trusted.
    let time = |name: &str| {
        get(name).and_then(Value::as_str).and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()).filter(|t| *t <= now)
    };
    AttemptState {
        attempt: u32::try_from(previous).unwrap_or(u32::MAX - 1).saturating_add(1),
        first_attempt_at: time(FIRST_ATTEMPT_AT).unwrap_or(now),
        last_action_state: get(LAST_ACTION_STATE).and_then(Value::as_str).map(str::to_owned),
        provider_registered_at: time(PROVIDER_REGISTERED_AT),
        copied_at: time(COPIED_AT),
    }
}

fn source(app: &App) -> String {
    crate::events::event_source(app.settings.function_app_name.as_deref())
}

/// What a successful attempt leaves to settle.
pub(super) struct Done<'a> {
    pub chain: &'a IdentityChain,
    pub applied: &'a AppliedEncryption,
    /// The older onboarding whose configuration this one replaced.
    pub replaced: Option<&'a AccountRecord>,
    pub order: OnboardingOrder,
}

/// Publishes `superseded` for the onboarding this one replaced (first: once the account's tags name this onboarding,
/// a redelivery no longer knows which one it replaced), then `completed`.
pub(super) async fn after_success(
    app: &App,
    message: &IncomingMessage,
    onboarding: &ValidatedOnboarding,
    done: &Done<'_>,
    attempt: &AttemptState,
) -> Result<Settlement, Error> {
    let (chain, applied) = (done.chain, done.applied);
    if let Some(older) = done.replaced {
        let data = SupersededData {
            onboarding_id: older.onboarding_id.clone(),
            customer_tenant_id: older.customer_tenant_id.clone(),
            storage_account_id: onboarding.storage_account.arm_id(),
            onboarding_order: older.order.map(|o| o.to_string()),
            superseded_by: SupersedingOnboarding {
                onboarding_id: onboarding.onboarding_id.clone(),
                onboarding_order: Some(done.order.to_string()),
            },
            superseded_at: OffsetDateTime::now_utc(),
        };
        let now = data.superseded_at;
        publish(app, message, OnboardingEvent::superseded(&source(app), data, now)).await?;
        tracing::info!(older = %older.onboarding_id, "replaced an older onboarding's configuration");
    }
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

/// The account is offboarded: publish `offboarded` (one per onboarding and account).
pub(super) async fn after_offboarding(
    app: &App,
    message: &IncomingMessage,
    offboarding: &AccountRequest,
    plan: &super::offboarding::Plan,
) -> Result<Settlement, Error> {
    let now = OffsetDateTime::now_utc();
    let data = OffboardedData {
        onboarding_id: offboarding.onboarding_id.clone(),
        customer_tenant_id: offboarding.customer_tenant_id.clone(),
        storage_account_id: offboarding.storage_account.arm_id(),
        previous_key_vault_uri: plan.previous.vault_uri.clone(),
        previous_key_name: plan.previous.key_name.clone(),
        removed_tags: plan.removed_tags.clone(),
        changed: plan.patch.is_some(),
        offboarded_at: now,
    };
    publish(app, message, OnboardingEvent::offboarded(&source(app), data, now)).await?;
    tracing::info!(changed = plan.patch.is_some(), "offboarding completed");
    Ok(Settlement::Completed { onboarding_id: offboarding.onboarding_id.clone() })
}

/// A probe ran: publish what changed (ids over the states compared and the run), then record the new state in the
/// account's tag, so a crash in between repeats the same events and duplicate detection drops them. A tag write
/// that fails (paced past the deadline, throttled, an outage) is settled like any failed attempt (a retry copy,
/// which probes again and publishes the same ids), never left to the host's redelivery, which would spend the
/// message's delivery count.
pub(super) async fn after_probe(
    app: &App,
    message: &IncomingMessage,
    validated: &ValidatedMessage,
    request: &AccountRequest,
    result: Option<&super::watch::ProbeResult>,
    attempt: &AttemptState,
) -> Result<Settlement, Error> {
    if let Some(result) = result {
        let now = OffsetDateTime::now_utc();
        let run_at = request.requested_at.format(&Rfc3339).unwrap_or_default();
        let mut published = None;
        for (event_type, data) in &result.events {
            let event = OnboardingEvent::key_watch(&source(app), *event_type, data.clone(), &run_at, now);
            let id = uuid::Uuid::parse_str(&event.id).ok();
            publish(app, message, event).await?;
            published = id.map(|id| LastEvent { event_type: *event_type, id, at: now });
        }
        if let Err(error) = super::watch::record(app, request, result, published, now).await {
            return after_failure(app, message, Some(validated), error, attempt, None).await;
        }
    }
    Ok(Settlement::Completed { onboarding_id: request.onboarding_id.clone() })
}

/// A newer onboarding configured the account: publish `superseded` naming it; the delivery completes, no copy.
pub(super) async fn superseded(
    app: &App,
    message: &IncomingMessage,
    onboarding: &ValidatedOnboarding,
    order: OnboardingOrder,
    by: &AccountRecord,
) -> Result<Settlement, Error> {
    let now = OffsetDateTime::now_utc();
    let data = SupersededData {
        onboarding_id: onboarding.onboarding_id.clone(),
        customer_tenant_id: Some(onboarding.customer_tenant_id.clone()),
        storage_account_id: onboarding.storage_account.arm_id(),
        onboarding_order: Some(order.to_string()),
        superseded_by: SupersedingOnboarding {
            onboarding_id: by.onboarding_id.clone(),
            onboarding_order: by.order.map(|o| o.to_string()),
        },
        superseded_at: now,
    };
    publish(app, message, OnboardingEvent::superseded(&source(app), data, now)).await?;
    Ok(Settlement::Superseded { onboarding_id: onboarding.onboarding_id.clone(), by: by.onboarding_id.clone() })
}

pub(super) async fn after_failure(
    app: &App,
    message: &IncomingMessage,
    validated: Option<&ValidatedMessage>,
    error: Error,
    attempt: &AttemptState,
    order: Option<OnboardingOrder>,
) -> Result<Settlement, Error> {
    let now = OffsetDateTime::now_utc();
    let onboarding_id = validated.map(|v| v.onboarding_id().to_owned()).unwrap_or_else(|| best_effort_id(message));
    let onboarding = validated.and_then(ValidatedMessage::as_onboarding);
    let (at, publish_action_required, state_fingerprint) = match decide(&error, attempt, now, &app.retry_policy) {
        Decision::ScheduleRetry { at, publish_action_required, state_fingerprint } => {
            (at, publish_action_required, state_fingerprint)
        }
        Decision::DeadLetter { reason_code, description } => {
            let why = Why { reason_code, description };
            return dead_letter(app, message, validated, onboarding_id, why, attempt, order).await;
        }
    };
    if message.properties_unknown() {
        // A retry copy's counters would be as invisible as this delivery's: it could never reach its deadline.
        let description = crate::decide::describe(&format!(
            "the message body's top-level members hide its application properties from the handler under the host's \
             string trigger encoding (use \"dataType\": \"binary\" or rename them), so it cannot be retried; this \
             attempt failed with {}: {error}",
            error.reason_code()
        ));
        let why = Why { reason_code: SHADOWED.to_owned(), description };
        return dead_letter(app, message, validated, onboarding_id, why, attempt, order).await;
    }
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
    if let Some(order) = order {
        properties.insert(ORDER_PROPERTY.to_owned(), Value::from(order.to_string()));
    }
    if let Some(state) = last_state {
        properties.insert(LAST_ACTION_STATE.to_owned(), Value::from(state));
    }
    let registered = validated.and_then(|v| app.provider_registered_at(&v.storage_account().subscription_id));
    if let Some(at) = registered.or(attempt.provider_registered_at) {
        properties.insert(PROVIDER_REGISTERED_AT.to_owned(), Value::from(rfc3339(at)));
    }
    properties.insert(COPIED_AT.to_owned(), Value::from(rfc3339(OffsetDateTime::now_utc())));
    match send_copy_fitting(app, message, "retry", properties, Some(at)).await {
        Ok(()) => Ok(Settlement::RetryScheduled { onboarding_id, at, reason: error.reason_code().to_owned() }),
        Err(refused) if is_too_large(&refused) => {
            let description = crate::decide::describe(&format!(
                "the delayed-retry copy does not fit the queue ({refused}); this attempt failed with {}: {error}",
                error.reason_code()
            ));
            let why = Why { reason_code: COPY_TOO_LARGE.to_owned(), description };
            dead_letter(app, message, validated, onboarding_id, why, attempt, order).await
        }
        Err(other) => Err(other),
    }
}

/// Why a message is dead-lettered: its reason code and a description.
struct Why {
    reason_code: String,
    description: String,
}

/// Reason code when a message's application properties are hidden by its own body (string trigger encoding).
const SHADOWED: &str = "MetadataShadowedByBody";
/// Reason code when not even a delayed-retry copy without the message's own properties fits the queue.
const COPY_TOO_LARGE: &str = "CopyTooLarge";

/// Publishes `failed`, then dead-letters the message with its reason: by a marked copy (decision 1), or, when no copy
/// can carry the mark (it does not fit the queue, or its properties could not be read back), natively: a small
/// marked reason record goes to the queue (it dead-letters itself the same way) and the delivery fails, so after
/// `MaxDeliveryCount` instant redeliveries Service Bus moves the original, untouched, to the dead-letter queue.
async fn dead_letter(
    app: &App,
    message: &IncomingMessage,
    validated: Option<&ValidatedMessage>,
    onboarding_id: String,
    why: Why,
    attempt: &AttemptState,
    order: Option<OnboardingOrder>,
) -> Result<Settlement, Error> {
    let Why { reason_code, description } = why;
    tracing::error!(reason = %reason_code, "onboarding failed permanently; dead-lettering: {description}");
    let now = OffsetDateTime::now_utc();
    let data = FailedData {
        onboarding_id: onboarding_id.clone(),
        customer_tenant_id: validated.map(|v| v.customer_tenant_id().to_owned()),
        storage_account_id: validated.map(|v| v.storage_account().arm_id()),
        reason_code: reason_code.clone(),
        message: description.clone(),
        attempts: attempt.attempt,
        first_attempt_at: Some(attempt.first_attempt_at),
        dead_lettered: true,
    };
    publish(app, message, OnboardingEvent::failed(&source(app), data, &delivered_id(message), now)).await?;
    if !message.properties_unknown() {
        let mut properties = carried_properties(message);
        properties.insert(DEAD_LETTER_REASON.to_owned(), Value::from(reason_code.as_str()));
        properties.insert(DEAD_LETTER_DESCRIPTION.to_owned(), Value::from(description.as_str()));
        properties.insert(ATTEMPT.to_owned(), Value::from(attempt.attempt));
        properties.insert(FIRST_ATTEMPT_AT.to_owned(), Value::from(rfc3339(attempt.first_attempt_at)));
        if let Some(order) = order {
            properties.insert(ORDER_PROPERTY.to_owned(), Value::from(order.to_string()));
        }
        match send_copy_fitting(app, message, "dead-letter", properties, None).await {
            Ok(()) => return Ok(Settlement::DeadLettered { onboarding_id, reason: reason_code }),
            Err(refused) if is_too_large(&refused) => {
                tracing::warn!("no dead-letter copy fits the queue ({refused}); dead-lettering the original itself");
            }
            Err(other) => return Err(other),
        }
    }
    send_reason_record(app, message, &reason_code, &description).await?;
    Ok(Settlement::DeadLetteredNatively { onboarding_id, reason: reason_code })
}

/// Sends the reason record of a message dead-lettered natively: a small JSON body saying which message it is about,
/// and the dead-letter mark, so it fails fast into the dead-letter queue next to the original. Its MessageId is
/// derived from the original's, so the record sent again on every redelivery is one message.
async fn send_reason_record(
    app: &App,
    message: &IncomingMessage,
    reason_code: &str,
    description: &str,
) -> Result<(), Error> {
    let mut properties = BTreeMap::new();
    properties.insert(DEAD_LETTER_REASON.to_owned(), Value::from(reason_code));
    properties.insert(DEAD_LETTER_DESCRIPTION.to_owned(), Value::from(description));
    if let Some(id) = &message.message_id {
        properties.insert(ORIGINAL_MESSAGE_ID.to_owned(), Value::from(id.as_str()));
    }
    if let Some(sequence_number) = message.sequence_number {
        properties.insert(REASON_FOR_SEQUENCE_NUMBER.to_owned(), Value::from(sequence_number));
    }
    if let Some(traceparent) = crate::telemetry::current_traceparent() {
        properties.insert(DIAGNOSTIC_ID.to_owned(), Value::from(traceparent));
    }
    let body = serde_json::json!({
        "reasonRecordFor": { "messageId": message.message_id, "sequenceNumber": message.sequence_number },
        "reasonCode": reason_code,
        "description": description,
    });
    let outgoing = OutgoingMessage {
        body: body.to_string().into_bytes(),
        content_type: Some("application/json".to_owned()),
        message_id: Some(copy_id(message, "reason-record")),
        correlation_id: message.correlation_id.clone(),
        session_id: copy_session_id(message),
        application_properties: properties,
        ..OutgoingMessage::default()
    };
    app.clients.service_bus.send(&app.settings.onboarding_queue, &outgoing).await
}

/// Service Bus refused a message for its size (413: message or header too large; 431: header fields too large).
fn is_too_large(error: &Error) -> bool {
    matches!(error, Error::Azure(e) if e.service == crate::error::AzureService::ServiceBus && matches!(e.status, 413 | 431))
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

/// The delivered message's application properties that can travel on a copy: each one becomes an HTTP header of the
/// send, so names that are not header tokens, the protocol's and the broker's own headers, our `cmk-` bookkeeping
/// (set afresh by the caller), the host's `$…` properties and the trace context (set from this invocation) stay
/// behind. Names go lowercase, as Service Bus stores header-borne names; the first of two spellings wins.
fn carried_properties(message: &IncomingMessage) -> BTreeMap<String, Value> {
    let mut properties: BTreeMap<String, Value> = BTreeMap::new();
    for (name, value) in &message.application_properties {
        let name = name.to_ascii_lowercase();
        if is_carried(&name) && !properties.contains_key(&name) {
            properties.insert(name, value.clone());
        }
    }
    // The producer's MessageId, kept through retry copies and replays (cmkctl sets it on a replay); the delivered
    // message's id only when none was recorded yet.
    let recorded = message.application_properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(ORIGINAL_MESSAGE_ID));
    if let Some(id) = recorded.and_then(|(_, v)| v.as_str()).or(message.message_id.as_deref()) {
        properties.insert(ORIGINAL_MESSAGE_ID.to_owned(), Value::from(id));
    }
    properties
}

/// Whether a (lowercase) property name may go on a copy as a custom header.
fn is_carried(name: &str) -> bool {
    /// Headers that mean something to HTTP, to the Service Bus REST protocol, to authentication or to tracing.
    const RESERVED: &[&str] = &[
        "brokerproperties",
        "authorization",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept",
        "accept-encoding",
        "user-agent",
        "date",
        "proxy-authorization",
        "proxy-connection",
        "cookie",
        "traceparent",
        "tracestate",
        "baggage",
        "request-id",
        "correlation-context",
        DIAGNOSTIC_ID,
    ];
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    token
        && !RESERVED.contains(&name)
        && !name.starts_with("cmk-")
        && !name.starts_with('$')
        && !["x-ms-", "x-forwarded-", "x-recording-"].iter().any(|prefix| name.starts_with(prefix))
}

/// The session of a copy (retry, dead-letter, reason record): the delivered message's, so a retry stays serialised
/// with its account. When a body member hid it (string trigger encoding) the message is only ever dead-lettered, and
/// a session-enabled queue refuses a message without one: the session of the account the body names, else a
/// placeholder (the dead-letter queue has no sessions).
fn copy_session_id(message: &IncomingMessage) -> Option<String> {
    if !message.session_id_shadowed() {
        return message.session_id.clone();
    }
    let account = serde_json::from_slice::<Value>(&message.body).ok().and_then(|body| {
        let id = body.pointer("/storageAccount/resourceId")?.as_str()?;
        crate::contract::parse_storage_account_id(id).ok()
    });
    Some(account.map_or_else(|| "unknown-session".to_owned(), |account| account.session_id()))
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
    let outgoing = OutgoingMessage {
        body: message.body.clone(),
        content_type: message.content_type.clone(),
        message_id: Some(copy_id(message, kind)),
        correlation_id: message.correlation_id.clone(),
        session_id: copy_session_id(message),
        scheduled_enqueue_time: at,
        application_properties: properties,
        ..OutgoingMessage::default()
    };
    app.clients.service_bus.send(&app.settings.onboarding_queue, &outgoing).await
}

/// [`send_copy`]; when the queue refuses the copy for its size, once more without the delivered message's own
/// properties (ours stay: they are what makes the copy work).
async fn send_copy_fitting(
    app: &App,
    message: &IncomingMessage,
    kind: &str,
    properties: BTreeMap<String, Value>,
    at: Option<OffsetDateTime>,
) -> Result<(), Error> {
    match send_copy(app, message, kind, properties.clone(), at).await {
        Err(refused) if is_too_large(&refused) => {
            tracing::warn!(
                "the {kind} copy does not fit the queue ({refused}); sending it without the message's own properties"
            );
            let ours = properties.into_iter().filter(|(name, _)| name.starts_with("cmk-")).collect();
            send_copy(app, message, kind, ours, at).await
        }
        other => other,
    }
}

/// The delivered message's identity: its MessageId, else its sequence number, else a digest of its body (when the
/// body itself hid both from the handler).
fn delivered_id(message: &IncomingMessage) -> String {
    if let Some(id) = &message.message_id {
        return id.clone();
    }
    match message.sequence_number {
        Some(sequence_number) => format!("seq-{sequence_number}"),
        None => format!("body-{}", uuid::Uuid::new_v5(&COPY_ID_NAMESPACE, &message.body).simple()),
    }
}

/// MessageId of a `kind` copy of the delivered message: UUIDv5 of its identity and the kind, so a copy sent again
/// after a crash is dropped by the queue's duplicate detection.
fn copy_id(message: &IncomingMessage, kind: &str) -> String {
    uuid::Uuid::new_v5(&COPY_ID_NAMESPACE, format!("{}\n{kind}", delivered_id(message)).as_bytes()).to_string()
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

    #[test]
    fn only_valid_foreign_names_are_carried() {
        let mut message = IncomingMessage {
            body: Vec::new(),
            message_id: Some("m-1".into()),
            correlation_id: None,
            content_type: None,
            delivery_count: 1,
            sequence_number: None,
            broker_order: None,
            session_id: None,
            application_properties: BTreeMap::new(),
            shadowed: Vec::new(),
        };
        for (name, value) in [
            ("Tenant-Tier", "gold"),
            ("tenant-tier", "silver"),
            ("BrokerProperties", "{}"),
            ("Authorization", "Bearer x"),
            ("Content-Type", "text/plain"),
            ("has space", "x"),
            ("colon:name", "x"),
            ("ünïcode", "x"),
            ("", "x"),
            ("cmk-dead-letter-reason", "Forged"),
            ("$AzureWebJobsParentId", "x"),
            ("traceparent", "00-x"),
            ("Diagnostic-Id", "00-y"),
            ("x-ms-client-request-id", "x"),
            ("priority", "high"),
        ] {
            message.application_properties.insert(name.into(), Value::from(value));
        }
        let carried = carried_properties(&message);
        let names: Vec<&str> = carried.keys().map(String::as_str).collect();
        assert_eq!(names, ["cmk-original-message-id", "priority", "tenant-tier"]);
        // BTreeMap order puts "Tenant-Tier" first: the first spelling wins.
        assert_eq!(carried["tenant-tier"], Value::from("gold"));
    }
}
