//! The status of an onboarded storage account, for upstream systems (`OnboardingStatus`, ARCHITECTURE.md decision
//! 30): read from Azure itself (one GET of the account), never from a store of our own.
//!
//! The account says everything: its encryption (key source, vault, key, version in use, last rotation, the identity
//! and app it goes through), its tags (the onboarding that configured it, its order and tenant, `account_tags`) and
//! the key watch's record (`cmk-watch-state`: the state the last changing probe saw, when, and the last event,
//! `watch_record`). Nothing is written, no customer key is used: a status call costs one storage read. [`report`] and
//! [`failure`] are pure; [`account_status`] does the read within the invocation's deadline.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::App;
use super::account_tags::{self, WATCH_STATE_TAG, tag};
use super::watch_record::WatchRecord;
use crate::azure::arm::{StorageAccount, same_resource_id};
use crate::config::IsvIdentity;
use crate::contract::{StatusQuery, codes};
use crate::error::{Disposition, Error};
use crate::events::EventType;

/// The answer's schema version (`schemas/status-response.v1.schema.json`).
pub const SCHEMA_VERSION: &str = "1.0";

/// What the status function answers (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    pub schema_version: &'static str,
    /// The account asked about, canonical.
    pub storage_account_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    pub status: AccountState,
    /// The onboarding the account's tags record (the last one that configured it).
    pub onboarding: Option<RecordedOnboarding>,
    /// Present when the caller named an onboarding: where it stands against the recorded one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_onboarding: Option<RequestedOnboarding>,
    pub encryption: EncryptionStatus,
    /// The key watch's record; `null` before the first probe recorded one (or when the tag does not read).
    pub watch: Option<WatchStatus>,
}

/// The account as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Our tags name an onboarding and the account's key goes through one of our identities and apps.
    Onboarded,
    /// Our tags name an onboarding, but the encryption no longer goes through our identity and app (someone changed
    /// it, or it went back to Microsoft-managed keys without an offboarding).
    Drifted,
    /// No onboarding is recorded: never onboarded, or offboarded.
    NotOnboarded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedOnboarding {
    pub onboarding_id: String,
    /// `YYYY-MM-DDTHH:MM:SSZ#<sequence number>` (decision 22); `null` when the tag does not read.
    pub onboarding_order: Option<String>,
    pub customer_tenant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedOnboarding {
    pub onboarding_id: String,
    pub standing: Standing,
}

/// Where the onboarding the caller named stands. Azure records only the current onboarding of an account, so an
/// onboarding that is not it may be older and superseded, newer and still running (or waiting on the customer), or
/// failed: the events say which; the status never claims more than the account shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The account records this onboarding: the rest of the answer is its state.
    Current,
    /// The account records another onboarding (`onboarding`).
    OtherOnboardingRecorded,
    /// The account records no onboarding.
    NoOnboardingRecorded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// `Microsoft.Storage` (Microsoft-managed keys) or `Microsoft.Keyvault` (customer-managed).
    pub key_source: Option<String>,
    pub key_vault_uri: Option<String>,
    pub key_name: Option<String>,
    /// `null`: automatic key version updates.
    pub key_version: Option<String>,
    /// Storage's view of the versioned key in use.
    pub current_versioned_key_identifier: Option<String>,
    pub last_key_rotation_timestamp: Option<String>,
    pub current_versioned_key_expiration_timestamp: Option<String>,
    pub user_assigned_identity: Option<String>,
    pub federated_identity_client_id: Option<String>,
    /// The key goes through one of this handler's identity sets (its CMK identity and multi-tenant app).
    pub through_our_identity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchStatus {
    /// The key version the last recorded probe saw Storage use (`-`: none).
    pub key_version: String,
    /// `ok`, or the reason code the app could not use the key (`KeyDisabled`, `KeyVaultAccessDenied`, …).
    pub key_access: String,
    pub expiry_warned: bool,
    /// When a probe first saw this state; later probes that saw the same wrote nothing (decision 27). `null` in a
    /// record from before this field.
    #[serde(with = "time::serde::rfc3339::option")]
    pub state_since: Option<OffsetDateTime>,
    pub last_event: Option<LastEventStatus>,
    /// The tag as recorded.
    pub recorded: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastEventStatus {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The CloudEvent's id (and the Service Bus MessageId it was published with).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// The status of `account` (as just read) for `query`; `identities`: the handler's identity sets.
pub fn report(
    account: &Value,
    query: &StatusQuery,
    identities: &[&IsvIdentity],
    checked_at: OffsetDateTime,
) -> AccountStatus {
    let encryption = StorageAccount { raw: account.clone() }.encryption().unwrap_or_default();
    let kv = encryption.key_vault_properties.clone().unwrap_or_default();
    let identity = encryption.identity.clone().unwrap_or_default();
    let customer_managed =
        encryption.key_source.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"));
    let through_our_identity = customer_managed
        && identities.iter().any(|ours| {
            identity.user_assigned_identity.as_deref().is_some_and(|u| same_resource_id(u, &ours.uami_resource_id))
                && identity
                    .federated_identity_client_id
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&ours.app_client_id))
        });
    let onboarding = account_tags::recorded(account).map(|record| RecordedOnboarding {
        onboarding_id: record.onboarding_id,
        onboarding_order: record.order.map(|o| o.to_string()),
        customer_tenant_id: record.customer_tenant_id,
    });
    let status = match (&onboarding, through_our_identity) {
        (None, _) => AccountState::NotOnboarded,
        (Some(_), true) => AccountState::Onboarded,
        (Some(_), false) => AccountState::Drifted,
    };
    let requested_onboarding = query.onboarding_id.as_ref().map(|asked| RequestedOnboarding {
        onboarding_id: asked.clone(),
        standing: match &onboarding {
            None => Standing::NoOnboardingRecorded,
            Some(recorded) if recorded.onboarding_id == *asked => Standing::Current,
            Some(_) => Standing::OtherOnboardingRecorded,
        },
    });
    let watch = tag(account, WATCH_STATE_TAG).and_then(|text| {
        let record = WatchRecord::decode(text)?;
        Some(WatchStatus {
            key_version: record.state.key_version,
            key_access: record.state.access,
            expiry_warned: record.state.expiry_warned,
            state_since: record.recorded_at,
            last_event: record.last_event.map(|e| LastEventStatus {
                event_type: e.event_type,
                id: e.id.to_string(),
                time: e.at,
            }),
            recorded: text.to_owned(),
        })
    });
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    AccountStatus {
        schema_version: SCHEMA_VERSION,
        storage_account_id: query.storage_account.arm_id(),
        checked_at,
        status,
        onboarding,
        requested_onboarding,
        encryption: EncryptionStatus {
            key_source: encryption.key_source,
            key_vault_uri: non_empty(kv.key_vault_uri),
            key_name: non_empty(kv.key_name),
            key_version: non_empty(kv.key_version),
            current_versioned_key_identifier: non_empty(kv.current_versioned_key_identifier),
            last_key_rotation_timestamp: non_empty(kv.last_key_rotation_timestamp),
            current_versioned_key_expiration_timestamp: non_empty(kv.current_versioned_key_expiration_timestamp),
            user_assigned_identity: non_empty(identity.user_assigned_identity),
            federated_identity_client_id: non_empty(identity.federated_identity_client_id),
            through_our_identity,
        },
        watch,
    }
}

/// A failed status request as an HTTP answer: status code, body (`{"error":{code, message, disposition}}`) and the
/// seconds to wait before asking again (`Retry-After`, transient failures only).
pub fn failure(error: &Error) -> (u16, Value, Option<u64>) {
    let code = error.reason_code();
    let status = match error {
        Error::Invalid(invalid) if invalid.code == codes::STORAGE_ACCOUNT_NOT_ALLOWED => 403,
        Error::Invalid(_) => 400,
        Error::Azure(azure) if azure.status == 404 => 404,
        other if other.disposition() == Disposition::Transient => 503,
        // Anything else Azure answered is a failure upstream of us that retrying will not fix (no right to read
        // the account, a misconfiguration): a bad gateway, with Azure's reason code.
        _ => 502,
    };
    let retry_after = (status == 503).then(|| error.retry_after().map_or(1, |wait| wait.as_secs().max(1)));
    let body = json!({
        "error": {
            "code": code,
            "message": crate::text::truncate(&error.to_string(), 1_024),
            "disposition": error.disposition(),
        }
    });
    (status, body, retry_after)
}

/// Reads the account and reports, within the invocation's work time.
pub async fn account_status(app: &App, query: &StatusQuery) -> Result<AccountStatus, Error> {
    let until = tokio::time::Instant::now() + app.times.work;
    let read = async {
        let account = app.clients.arm.get_storage_account(&query.storage_account.arm_id()).await?;
        let identities: Vec<&IsvIdentity> =
            std::iter::once(&app.policy.default_identity).chain(app.policy.identity_sets.values()).collect();
        Ok(report(&account.raw, query, &identities, OffsetDateTime::now_utc()))
    };
    super::bounded(until, "the status read", Box::pin(read)).await
}
