//! The key watch (I/O). A timer run lists the storage accounts of the allowed scopes and sends one probe message per
//! onboarded account (tag `cmk-onboarding-id`) to the onboarding queue, in the account's session, scheduled over the
//! interval (`fan_out`) and in batches, so probes scale out like onboardings, one slow customer delays no other, a
//! run stays under the Storage RP's read limit, and a probe never overlaps an onboarding of its account. A probe
//! reads the account, uses its key as the app in the customer's tenant (get + wrap/unwrap, with a freshly exchanged
//! token), compares with the state recorded in the account's `cmk-watch-state` tag (`key_watch`, pure), publishes
//! what changed and writes the tag only when the state changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::account_tags::{CUSTOMER_TENANT_TAG, ONBOARDING_ID_TAG, WATCH_STATE_TAG, tag};
use super::key_watch::{self, Configuration, Observation, WatchEvent, WatchState};
use super::watch_record::{LastEvent, WatchRecord};
use super::{App, ensure_identity_chain, fan_out, use_customer_key};
use crate::azure::credentials::CustomerIdentity;
use crate::azure::servicebus::OutgoingMessage;
use crate::config::AllowedScope;
use crate::contract::{AccountRequest, KIND_PROBE, parse_storage_account_id};
use crate::delivery::TimerRun;
use crate::error::{Disposition, Error};
use crate::events::{EventType, KeyWatchData};
use crate::remediation::{RemediationContext, lost_access_remediation};

/// Probe messages per batch send: a probe is well under 1 KB with its properties, a batch at most 256 KB (one
/// message's limit on the Standard tier). 1,000 probes are 10 requests.
const SEND_BATCH: usize = 100;

/// What one timer run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    pub listed: usize,
    pub probes_sent: usize,
    /// Onboarded accounts without a usable customer tenant tag.
    pub skipped: usize,
    /// The latest probe's offset from the run's time (`fan_out`).
    pub spread: std::time::Duration,
    /// Subscriptions whose probes did not fit the read budget within the spread.
    pub over_budget: usize,
}

fn scope_path(scope: &AllowedScope) -> String {
    match scope {
        AllowedScope::Subscription { subscription_id } => format!("/subscriptions/{subscription_id}"),
        AllowedScope::ResourceGroup { subscription_id, resource_group } => {
            format!("/subscriptions/{subscription_id}/resourceGroups/{resource_group}")
        }
    }
}

/// The probe message of one account: contract v1, `kind: probe`, in the account's session; its MessageId is derived
/// from the account and the run (the host's invocation id), so a run's send repeated is one probe per account.
/// `cmkctl probe` sends the same message for one account, with a run id of its own.
pub fn probe_message(
    account_id: &str,
    onboarding_id: &str,
    tenant: &str,
    run_at: &str,
    run_id: &str,
) -> Option<OutgoingMessage> {
    let account = parse_storage_account_id(account_id).ok()?;
    let body = json!({
        "schemaVersion": "1.1",
        "kind": KIND_PROBE,
        "onboardingId": onboarding_id,
        "requestedAt": run_at,
        "customer": { "tenantId": tenant },
        "storageAccount": { "resourceId": account.arm_id() },
    });
    let id = uuid::Uuid::new_v5(
        &crate::events::EVENT_ID_NAMESPACE,
        format!("probe\n{}\n{run_id}", account.arm_id().to_ascii_lowercase()).as_bytes(),
    );
    Some(OutgoingMessage {
        body: body.to_string().into_bytes(),
        content_type: Some("application/json".to_owned()),
        message_id: Some(id.to_string()),
        correlation_id: Some(onboarding_id.to_owned()),
        session_id: Some(account.session_id()),
        ..OutgoingMessage::default()
    })
}

/// One timer run: list, keep the onboarded accounts, schedule their probes over part of the interval (`fan_out`)
/// and send them in batches, one after the other, earliest first, within the invocation's deadline. A run cut by its
/// deadline has sent a prefix of the schedule (a batch in flight then may or may not have reached the queue):
/// those probes run at their times, the others wait for the next run, and a probe sent twice runs twice, harmlessly
/// (a probe publishes only changes).
pub async fn run(app: &Arc<App>, run_id: &str, timer: TimerRun) -> Result<RunSummary, Error> {
    // The schedule counts from the host's time (the broker's clock); `requestedAt` is the handler's own (the contract
    // refuses a time in its future).
    let run_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let now = timer.fired_at.unwrap_or_else(OffsetDateTime::now_utc);
    let interval = timer.next.and_then(|next| std::time::Duration::try_from(next - now).ok());
    let mut summary = RunSummary::default();
    let mut probes = Vec::new();
    for scope in &app.settings.allowed_scopes {
        for account in app.clients.arm.list_storage_accounts(&scope_path(scope)).await? {
            summary.listed += 1;
            let Some(onboarding_id) = tag(&account.raw, ONBOARDING_ID_TAG) else { continue };
            let tenant = tag(&account.raw, CUSTOMER_TENANT_TAG).and_then(crate::contract::normalize_guid);
            match tenant.and_then(|t| probe_message(account.id(), onboarding_id, &t, &run_at, run_id)) {
                Some(message) => probes.push((account.id().to_owned(), message)),
                None => {
                    tracing::warn!(account = account.id(), "onboarded account without a usable customer tenant tag");
                    summary.skipped += 1;
                }
            }
        }
    }
    let ids: Vec<&str> = probes.iter().map(|(id, _)| id.as_str()).collect();
    let plan = fan_out::plan(&ids, interval);
    if !plan.over_budget.is_empty() {
        tracing::warn!(subscriptions = ?plan.over_budget, "more onboarded accounts than the read budget allows per run");
    }
    summary.over_budget = plan.over_budget.len();
    summary.spread = plan.offsets.iter().copied().max().unwrap_or_default();
    let mut scheduled: Vec<(std::time::Duration, OutgoingMessage)> = plan
        .offsets
        .into_iter()
        .zip(probes)
        .map(|(offset, (_, mut message))| {
            message.scheduled_enqueue_time = (!offset.is_zero()).then(|| now + offset);
            (offset, message)
        })
        .collect();
    scheduled.sort_by_key(|(offset, _)| *offset);
    let messages: Vec<OutgoingMessage> = scheduled.into_iter().map(|(_, message)| message).collect();
    // One batch after the other, earliest first: a run cut by its deadline has sent a prefix of its schedule.
    for batch in messages.chunks(SEND_BATCH) {
        app.clients.service_bus.send_batch(&app.settings.onboarding_queue, batch).await?;
        summary.probes_sent += batch.len();
    }
    Ok(summary)
}

/// What a probe found, for settling.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub recorded: Option<WatchState>,
    pub observed: WatchState,
    pub events: Vec<(EventType, KeyWatchData)>,
    /// The account's tags as read (a probe runs in the account's session: nothing else writes them meanwhile).
    pub tags: serde_json::Map<String, Value>,
    /// The last event recorded with the state, carried over when this probe publishes none.
    pub last_event: Option<LastEvent>,
}

/// Probes one account. `Ok(None)`: the account is no longer this onboarding's (offboarded or onboarded again), so
/// there is nothing to watch for it.
pub async fn probe(app: &App, request: &AccountRequest) -> Result<Option<ProbeResult>, Error> {
    let account_id = request.storage_account.arm_id();
    let account = app.clients.arm.get_storage_account(&account_id).await?;
    // A probe acts for the onboarding and tenant the account's tags record, never for others a message names (an
    // operator's `cmkctl probe`, a stale probe after a newer onboarding).
    let tenant_tag = tag(&account.raw, CUSTOMER_TENANT_TAG);
    if tag(&account.raw, ONBOARDING_ID_TAG) != Some(request.onboarding_id.as_str())
        || tenant_tag.is_some_and(|t| !t.eq_ignore_ascii_case(&request.customer_tenant_id))
    {
        tracing::info!("the account is no longer this onboarding's; nothing to watch");
        return Ok(None);
    }
    let chain = ensure_identity_chain(app, &request.identity).await?;
    let encryption = account.encryption().unwrap_or_default();
    let ours = encryption.key_source.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"))
        && encryption.identity.as_ref().is_some_and(|i| {
            i.user_assigned_identity.as_deref().is_some_and(|u| crate::azure::arm::same_resource_id(u, &chain.uami_id))
                && i.federated_identity_client_id
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&chain.app_client_id))
        });
    let kv = encryption.key_vault_properties.clone().unwrap_or_default();
    let configuration = match (ours, kv.key_vault_uri.clone(), kv.key_name.clone()) {
        (true, Some(vault_uri), Some(key_name)) => Some(Configuration { vault_uri, key_name }),
        _ => None,
    };
    let mut observation = Observation {
        configuration: configuration.clone(),
        current_key_id: kv.current_versioned_key_identifier.clone(),
        expires: None,
        access_lost: None,
    };
    let mut lost_error = None;
    if let Some(c) = &configuration {
        let version = kv.key_version.as_deref().filter(|v| !v.is_empty());
        let tenant = &request.customer_tenant_id;
        // Every token this probe uses is exchanged after it started: a revoked service principal shows now, not
        // when a cached token runs out (decision 31).
        app.clients.tokens.renew_customer_token(&CustomerIdentity {
            tenant,
            app_client_id: &chain.app_client_id,
            uami_client_id: Some(&chain.uami_client_id),
        });
        match use_customer_key(app, tenant, &c.vault_uri, &c.key_name, version, &chain, &account_id).await {
            Ok(key) => {
                observation.expires = key.attributes.exp.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
            }
            Err(error) if error.disposition() == Disposition::WaitingOnCustomer => {
                observation.access_lost = Some(error.reason_code().to_owned());
                lost_error = Some(error);
            }
            Err(other) => return Err(other),
        }
    }
    let record = tag(&account.raw, WATCH_STATE_TAG).and_then(WatchRecord::decode);
    let last_event = record.as_ref().and_then(|r| r.last_event);
    let recorded = record.map(|r| r.state);
    let now = OffsetDateTime::now_utc();
    let (observed, changes) = key_watch::decide(recorded.as_ref(), &observation, now, app.settings.key_expiry_warning);
    let base = KeyWatchData {
        onboarding_id: request.onboarding_id.clone(),
        customer_tenant_id: request.customer_tenant_id.clone(),
        storage_account_id: account_id.clone(),
        key_vault_uri: configuration.as_ref().map(|c| c.vault_uri.clone()),
        key_name: configuration.as_ref().map(|c| c.key_name.clone()),
        current_versioned_key_identifier: kv.current_versioned_key_identifier.clone(),
        previous_key_version: None,
        key_expires_at: None,
        reason_code: None,
        missing: None,
        actions: Vec::new(),
        admin_consent_url: None,
        recorded_state: recorded.as_ref().map(WatchState::encode),
        observed_state: observed.encode(),
        probed_at: now,
    };
    let events = changes
        .into_iter()
        .map(|change| match change {
            WatchEvent::KeyRotated { from_version, .. } => {
                (EventType::KeyRotated, KeyWatchData { previous_key_version: Some(from_version), ..base.clone() })
            }
            WatchEvent::KeyExpiring { expires, .. } => {
                (EventType::KeyExpiring, KeyWatchData { key_expires_at: Some(expires), ..base.clone() })
            }
            WatchEvent::KeyAccessLost { reason_code } => {
                let fix = lost_error.as_ref().and_then(Error::customer_action).zip(configuration.as_ref()).map(
                    |(action, c)| {
                        let host = url::Url::parse(&c.vault_uri).ok().and_then(|u| u.host_str().map(str::to_owned));
                        let host = host.unwrap_or_default();
                        let context = RemediationContext {
                            cloud: app.settings.cloud,
                            customer_tenant_id: &request.customer_tenant_id,
                            app_client_id: &chain.app_client_id,
                            vault_name: host.split('.').next().unwrap_or_default(),
                            managed_hsm: host.contains(".managedhsm."),
                            key_name: &c.key_name,
                            key_version: kv.key_version.as_deref().filter(|v| !v.is_empty()),
                            vault_resource_id: None,
                        };
                        lost_access_remediation(&action, &context)
                    },
                );
                let data = KeyWatchData {
                    reason_code: Some(reason_code),
                    missing: fix.as_ref().map(|f| f.missing.clone()),
                    actions: fix.as_ref().map(|f| f.actions.clone()).unwrap_or_default(),
                    admin_consent_url: fix.map(|f| f.admin_consent_url),
                    ..base.clone()
                };
                (EventType::KeyAccessLost, data)
            }
            WatchEvent::KeyAccessRestored { after } => {
                (EventType::KeyAccessRestored, KeyWatchData { reason_code: Some(after), ..base.clone() })
            }
            WatchEvent::ConfigurationDrift { .. } => (EventType::ConfigurationDrift, base.clone()),
        })
        .collect();
    let tags = account.raw["tags"].as_object().cloned().unwrap_or_default();
    Ok(Some(ProbeResult { recorded, observed, events, tags, last_event }))
}

/// Writes the observed state into the account's tag, keeping its other tags (Storage PATCH replaces the whole
/// object); only when it differs from the recorded one. `published`: the last event this probe published, recorded
/// with the state (`watch_record`); `now`: when the probe saw the state.
pub async fn record(
    app: &App,
    request: &AccountRequest,
    result: &ProbeResult,
    published: Option<LastEvent>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    if result.recorded.as_ref() == Some(&result.observed) {
        return Ok(());
    }
    let account_id = request.storage_account.arm_id();
    let mut tags: BTreeMap<String, Value> = result
        .tags
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(WATCH_STATE_TAG))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record = WatchRecord {
        state: result.observed.clone(),
        recorded_at: Some(now),
        last_event: published.or(result.last_event),
    };
    tags.insert(WATCH_STATE_TAG.to_owned(), Value::from(record.encode()));
    app.clients.arm.update_storage_account(&account_id, &json!({ "tags": tags })).await?;
    Ok(())
}
