//! CloudEvents 1.0 (structured JSON) envelopes and `data` payloads of the onboarding events; deterministic ids (pure).
//!
//! The event id doubles as the Service Bus `MessageId`, so duplicate detection on the topic drops a re-publication
//! of the same fact: `completed` for one key configuration, `action_required` for one customer-side state, `failed`
//! for one delivered message, `superseded` for one (older, newer) pair of onboardings of an account. Schemas: `schemas/events/*.v1.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::remediation::RemediationStep;

/// Namespace of our UUIDv5 event ids (a fixed random UUID; changing it changes every id).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8a4f_3d2c_6b1e_4f7a_9c05_e2d1_b7a6_4c83);

/// `Content-Type` of a structured-mode CloudEvent.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// Application property names of every event, lowercase: over the Service Bus REST API a property is an HTTP
/// header, and HTTP/1 clients write header names lowercase, so that is the spelling Service Bus stores and
/// subscription filters must use (ARCHITECTURE.md, "Property names on the wire").
pub const EVENT_TYPE_PROPERTY: &str = "eventtype";
pub const ONBOARDING_ID_PROPERTY: &str = "onboardingid";
pub const CUSTOMER_TENANT_ID_PROPERTY: &str = "customertenantid";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "com.cmkonboard.onboarding.completed.v1")]
    Completed,
    #[serde(rename = "com.cmkonboard.onboarding.action_required.v1")]
    ActionRequired,
    #[serde(rename = "com.cmkonboard.onboarding.failed.v1")]
    Failed,
    #[serde(rename = "com.cmkonboard.onboarding.offboarded.v1")]
    Offboarded,
    #[serde(rename = "com.cmkonboard.onboarding.key_rotated.v1")]
    KeyRotated,
    #[serde(rename = "com.cmkonboard.onboarding.key_expiring.v1")]
    KeyExpiring,
    #[serde(rename = "com.cmkonboard.onboarding.key_access_lost.v1")]
    KeyAccessLost,
    #[serde(rename = "com.cmkonboard.onboarding.key_access_restored.v1")]
    KeyAccessRestored,
    #[serde(rename = "com.cmkonboard.onboarding.configuration_drift.v1")]
    ConfigurationDrift,
    #[serde(rename = "com.cmkonboard.onboarding.superseded.v1")]
    Superseded,
}

impl EventType {
    /// Every event type, for contracts that must list them all.
    pub const ALL: [Self; 10] = [
        Self::Completed,
        Self::ActionRequired,
        Self::Failed,
        Self::Superseded,
        Self::Offboarded,
        Self::KeyRotated,
        Self::KeyExpiring,
        Self::KeyAccessLost,
        Self::KeyAccessRestored,
        Self::ConfigurationDrift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "com.cmkonboard.onboarding.completed.v1",
            Self::ActionRequired => "com.cmkonboard.onboarding.action_required.v1",
            Self::Failed => "com.cmkonboard.onboarding.failed.v1",
            Self::Offboarded => "com.cmkonboard.onboarding.offboarded.v1",
            Self::KeyRotated => "com.cmkonboard.onboarding.key_rotated.v1",
            Self::KeyExpiring => "com.cmkonboard.onboarding.key_expiring.v1",
            Self::KeyAccessLost => "com.cmkonboard.onboarding.key_access_lost.v1",
            Self::KeyAccessRestored => "com.cmkonboard.onboarding.key_access_restored.v1",
            Self::ConfigurationDrift => "com.cmkonboard.onboarding.configuration_drift.v1",
            Self::Superseded => "com.cmkonboard.onboarding.superseded.v1",
        }
    }
}

/// `source` of our events: `/cmk-onboarding/{function app name}`, or `/cmk-onboarding/handler` outside Azure.
pub fn event_source(function_app_name: Option<&str>) -> String {
    format!("/cmk-onboarding/{}", function_app_name.filter(|n| !n.is_empty()).unwrap_or("handler"))
}

/// `data` of `completed`: the storage account now uses the customer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedData {
    pub onboarding_id: String,
    pub customer_tenant_id: String,
    pub storage_account_id: String,
    pub key_vault_uri: String,
    pub key_name: String,
    /// `null`: automatic key version updates.
    pub key_version: Option<String>,
    pub current_versioned_key_identifier: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_key_rotation_timestamp: Option<OffsetDateTime>,
    pub user_assigned_identity_id: String,
    pub federated_identity_client_id: String,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub first_attempt_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
}

/// `data` of `action_required`: what the customer must do, with commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequiredData {
    pub onboarding_id: String,
    pub customer_tenant_id: String,
    pub storage_account_id: String,
    pub reason_code: String,
    /// One sentence.
    pub missing: String,
    pub actions: Vec<RemediationStep>,
    pub admin_consent_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

/// `data` of `failed`: the message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedData {
    pub onboarding_id: String,
    /// Absent when the message was too broken to tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_id: Option<String>,
    pub reason_code: String,
    pub message: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub first_attempt_at: Option<OffsetDateTime>,
    /// Always true: a `failed` event is only published together with the dead-letter copy.
    pub dead_lettered: bool,
}

/// `data` of `offboarded`: the account uses Microsoft-managed keys and carries none of our tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffboardedData {
    /// The onboarding that was ended.
    pub onboarding_id: String,
    pub customer_tenant_id: String,
    pub storage_account_id: String,
    /// The vault and key the account used; `null` when it already used Microsoft-managed keys.
    pub previous_key_vault_uri: Option<String>,
    pub previous_key_name: Option<String>,
    /// The tags of ours that were removed.
    pub removed_tags: Vec<String>,
    /// False when the account was already offboarded (a redelivery, or nothing to do).
    pub changed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub offboarded_at: OffsetDateTime,
}

/// `data` of the key watch's events (`key_rotated`, `key_expiring`, `key_access_lost`, `key_access_restored`,
/// `configuration_drift`): what a probe of an onboarded account saw, and the recorded state it compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyWatchData {
    pub onboarding_id: String,
    pub customer_tenant_id: String,
    pub storage_account_id: String,
    /// The account's vault and key; `null` when it no longer uses our customer-managed key (drift).
    pub key_vault_uri: Option<String>,
    pub key_name: Option<String>,
    /// Storage's view of the key version in use.
    pub current_versioned_key_identifier: Option<String>,
    /// `key_rotated`: the version recorded before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_version: Option<String>,
    /// `key_expiring`: when the version expires.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub key_expires_at: Option<OffsetDateTime>,
    /// `key_access_lost`: why the app cannot use the key; `key_access_restored`: why it could not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// `key_access_lost`: what is missing and the customer's fix, as in `action_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<RemediationStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_consent_url: Option<String>,
    /// The states compared (`cmk-watch-state` tag values); `null` on an account's first probe.
    pub recorded_state: Option<String>,
    pub observed_state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub probed_at: OffsetDateTime,
}

/// `data` of `superseded`: a newer onboarding of the same storage account configured it, so this onboarding changed
/// nothing (its message completed) or, if it had completed before, its `completed` event is no longer true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersededData {
    pub onboarding_id: String,
    /// Absent when the account's tags did not name it (a tag edited by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_tenant_id: Option<String>,
    pub storage_account_id: String,
    /// This onboarding's order (`YYYY-MM-DDTHH:MM:SSZ#<sequence number>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboarding_order: Option<String>,
    pub superseded_by: SupersedingOnboarding,
    #[serde(with = "time::serde::rfc3339")]
    pub superseded_at: OffsetDateTime,
}

/// The newer onboarding that now configures the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupersedingOnboarding {
    pub onboarding_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onboarding_order: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventData {
    Completed(CompletedData),
    ActionRequired(ActionRequiredData),
    Failed(FailedData),
    Offboarded(OffboardedData),
    KeyWatch(KeyWatchData),
    Superseded(SupersededData),
}

/// One CloudEvent, structured mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The onboarding id.
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub datacontenttype: String,
    /// Extension attribute: the onboarding id (filterable without reading `data`).
    pub onboardingid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customertenantid: Option<String>,
    /// W3C distributed-tracing extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: EventData,
}

impl OnboardingEvent {
    /// Id over the desired key configuration: one `completed` per (vault, key, version or "auto", account).
    pub fn completed(source: &str, data: CompletedData, time: OffsetDateTime) -> Self {
        let discriminator = format!(
            "{}|{}|{}|{}",
            data.key_vault_uri.to_ascii_lowercase(),
            data.key_name,
            data.key_version.as_deref().unwrap_or("auto"),
            data.storage_account_id.to_ascii_lowercase()
        );
        let tenant = Some(data.customer_tenant_id.clone());
        Self::build(
            source,
            EventType::Completed,
            data.onboarding_id.clone(),
            tenant,
            &discriminator,
            time,
            EventData::Completed(data),
        )
    }

    /// Id over the customer-side state fingerprint: one `action_required` per distinct state.
    pub fn action_required(
        source: &str,
        data: ActionRequiredData,
        state_fingerprint: &str,
        time: OffsetDateTime,
    ) -> Self {
        let tenant = Some(data.customer_tenant_id.clone());
        let id = data.onboarding_id.clone();
        Self::build(
            source,
            EventType::ActionRequired,
            id,
            tenant,
            state_fingerprint,
            time,
            EventData::ActionRequired(data),
        )
    }

    /// Id over the reason and the delivered message's id, so an ops replay that fails again is a new event.
    pub fn failed(source: &str, data: FailedData, delivered_message_id: &str, time: OffsetDateTime) -> Self {
        let discriminator = format!("{}|{delivered_message_id}", data.reason_code);
        let tenant = data.customer_tenant_id.clone();
        let id = data.onboarding_id.clone();
        Self::build(source, EventType::Failed, id, tenant, &discriminator, time, EventData::Failed(data))
    }

    /// Id over the account: one `offboarded` per (onboarding, account), whatever the delivery.
    pub fn offboarded(source: &str, data: OffboardedData, time: OffsetDateTime) -> Self {
        let discriminator = data.storage_account_id.to_ascii_lowercase();
        let tenant = Some(data.customer_tenant_id.clone());
        let id = data.onboarding_id.clone();
        Self::build(source, EventType::Offboarded, id, tenant, &discriminator, time, EventData::Offboarded(data))
    }

    /// A key-watch event: one per change of the account's recorded state seen by one watch run (`run_at`: the
    /// probe's `requestedAt`), so a redelivered probe repeats the id and a later change of the same kind does not.
    pub fn key_watch(
        source: &str,
        event_type: EventType,
        data: KeyWatchData,
        run_at: &str,
        time: OffsetDateTime,
    ) -> Self {
        let discriminator = format!(
            "{}|{}|{}|{run_at}",
            data.storage_account_id.to_ascii_lowercase(),
            data.recorded_state.as_deref().unwrap_or("none"),
            data.observed_state
        );
        let tenant = Some(data.customer_tenant_id.clone());
        let id = data.onboarding_id.clone();
        Self::build(source, event_type, id, tenant, &discriminator, time, EventData::KeyWatch(data))
    }

    /// Id over the newer onboarding and the account: one `superseded` per (older, newer) pair, whether the older
    /// onboarding's own retry or the newer onboarding's completion publishes it.
    pub fn superseded(source: &str, data: SupersededData, time: OffsetDateTime) -> Self {
        let discriminator =
            format!("{}|{}", data.superseded_by.onboarding_id, data.storage_account_id.to_ascii_lowercase());
        let tenant = data.customer_tenant_id.clone();
        let id = data.onboarding_id.clone();
        Self::build(source, EventType::Superseded, id, tenant, &discriminator, time, EventData::Superseded(data))
    }

    /// Adds the W3C `traceparent` of the invocation, when there is one.
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    fn build(
        source: &str,
        event_type: EventType,
        onboarding_id: String,
        customer_tenant_id: Option<String>,
        discriminator: &str,
        time: OffsetDateTime,
        data: EventData,
    ) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: event_id(&onboarding_id, event_type, discriminator).to_string(),
            source: source.to_owned(),
            event_type,
            subject: onboarding_id.clone(),
            time,
            datacontenttype: "application/json".to_owned(),
            onboardingid: onboarding_id,
            customertenantid: customer_tenant_id,
            traceparent: None,
            data,
        }
    }

    /// The Service Bus message: body, `MessageId` (= event id) and application properties for subscription
    /// filters. Send it with content type [`CLOUDEVENTS_CONTENT_TYPE`].
    pub fn to_service_bus(&self) -> (Vec<u8>, String, BTreeMap<String, Value>) {
        let body = serde_json::to_vec(self).unwrap_or_else(|e| unreachable_serialization(&e));
        let mut properties = BTreeMap::new();
        // Structured mode: the envelope is the body. The binary-mode `cloudEvents:*` properties are left out: the
        // Service Bus REST API carries application properties as HTTP headers, where `:` is not allowed.
        properties.insert(EVENT_TYPE_PROPERTY.to_owned(), Value::from(self.event_type.as_str()));
        properties.insert(ONBOARDING_ID_PROPERTY.to_owned(), Value::from(self.onboardingid.as_str()));
        if let Some(tenant) = &self.customertenantid {
            properties.insert(CUSTOMER_TENANT_ID_PROPERTY.to_owned(), Value::from(tenant.as_str()));
        }
        (body, self.id.clone(), properties)
    }
}

/// Serialising plain structs of strings, numbers and RFC 3339 times cannot fail; if it ever did, an empty JSON
/// object is still a well-formed (and schema-invalid, hence noticed) body.
fn unreachable_serialization(e: &serde_json::Error) -> Vec<u8> {
    tracing::error!(error = %e, "serialising an event failed");
    b"{}".to_vec()
}

/// UUIDv5 over `onboardingId \n type \n discriminator`.
pub fn event_id(onboarding_id: &str, event_type: EventType, discriminator: &str) -> Uuid {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, format!("{onboarding_id}\n{}\n{discriminator}", event_type.as_str()).as_bytes())
}
