//! What ARM knows: subscriptions with their feature and provider registrations, resource groups, user-assigned
//! identities and storage accounts. (Who may do what is `crate::rbac`.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::ids::{self, ResourceId};
use crate::cloud::Cloud;
use crate::scenario::Scenario;

/// Subscriptions, features, providers, identities and storage accounts.
#[derive(Debug, Default)]
pub struct ArmState {
    pub(crate) cloud: Cloud,
    /// By lower-cased subscription id.
    pub(crate) subscriptions: BTreeMap<String, SubscriptionState>,
    /// Lower-cased `/subscriptions/{s}/resourcegroups/{rg}` of every group a scenario resource lives in.
    pub(crate) groups: BTreeSet<String>,
    /// By [`ResourceId::key`].
    pub(crate) identities: BTreeMap<String, IdentityResource>,
    /// By [`ResourceId::key`].
    pub(crate) storage: BTreeMap<String, StorageAccountState>,
    /// When the Storage RP last checked the vault for a new key version, by the account's [`ResourceId::key`]: set
    /// when a PATCH points the account at a key; the daily check runs on from there (`cmk::daily_key_check`).
    pub(crate) key_checked_at: BTreeMap<String, time::OffsetDateTime>,
    /// Account creations in progress or done, by operation id (the last segment of the `Location` URL).
    pub(crate) creations: BTreeMap<String, Creation>,
    /// How long a creation takes (emulator clock).
    pub(crate) creation_time: time::Duration,
    /// Lower-cased storage account names taken outside this world.
    pub(crate) taken_names: BTreeSet<String>,
}

/// One `StorageAccounts_Create` operation: which account, and when it is done.
#[derive(Debug, Clone)]
pub struct Creation {
    pub subscription: String,
    /// [`ResourceId::key`] of the account.
    pub account: String,
    pub done_at: time::OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct SubscriptionState {
    pub id: String,
    pub tenant_id: String,
    /// How many GETs a registration stays `Registering`.
    pub polls: u32,
    /// Features by lower-cased `Namespace/Name`.
    pub features: BTreeMap<String, Registration>,
    /// Providers by lower-cased namespace.
    pub providers: BTreeMap<String, Registration>,
}

/// A feature or provider registration and how many polls remain before it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Display name: `Namespace/Feature` or the provider namespace.
    pub name: String,
    pub state: String,
    pub polls_left: u32,
}

#[derive(Debug, Clone)]
pub struct IdentityResource {
    pub id: ResourceId,
    pub location: String,
    pub tags: Value,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
}

/// A storage account. `encryption` and `extra` hold ARM JSON as the account shows it.
#[derive(Debug, Clone)]
pub struct StorageAccountState {
    pub id: ResourceId,
    pub location: String,
    pub kind: String,
    pub sku: String,
    pub tags: Value,
    /// System-assigned identity: (principal id, tenant id).
    pub system_identity: Option<(String, String)>,
    /// User-assigned identity ids as last sent, by lower-cased id.
    pub user_identities: BTreeMap<String, String>,
    /// Whether the account has an `identity` block at all (`{"type":"None"}` after an explicit None).
    pub identity_declared: bool,
    pub encryption: Value,
    /// Other `properties` members a PATCH set (access tier, TLS version, …), shown back as sent.
    pub extra: Map<String, Value>,
    pub creation_time: String,
    /// Until this instant the account is being created (`provisioningState: Creating`); `None` once it is done.
    pub creating_until: Option<time::OffsetDateTime>,
}

/// Namespaces every subscription knows, registered unless the scenario says otherwise.
const KNOWN_PROVIDERS: &[&str] = &[
    "Microsoft.Storage",
    "Microsoft.ManagedIdentity",
    "Microsoft.KeyVault",
    "Microsoft.Features",
    "Microsoft.Resources",
    "Microsoft.ServiceBus",
    "Microsoft.Web",
    "Microsoft.Authorization",
];

/// The feature the cross-tenant CMK preview used; known in every subscription.
pub const FEDERATED_CLIENT_IDENTITY: &str = "Microsoft.Storage/FederatedClientIdentity";

impl ArmState {
    pub fn from_scenario(scenario: &Scenario) -> Result<Self, String> {
        let cloud = Cloud::from_name(scenario.cloud.as_deref().unwrap_or("AzureCloud"))?;
        let creation_seconds = scenario
            .storage_account_creation_seconds
            .unwrap_or(crate::scenario::DEFAULT_STORAGE_ACCOUNT_CREATION_SECONDS);
        let mut state = Self {
            cloud,
            creation_time: time::Duration::seconds(i64::try_from(creation_seconds).unwrap_or(i64::MAX / 4)),
            taken_names: scenario.taken_storage_account_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            ..Self::default()
        };
        for sub in &scenario.subscriptions {
            let mut features = BTreeMap::new();
            features.insert(
                FEDERATED_CLIENT_IDENTITY.to_ascii_lowercase(),
                registration(FEDERATED_CLIENT_IDENTITY, "NotRegistered"),
            );
            for (name, value) in &sub.features {
                if !name.contains('/') {
                    return Err(format!("feature {name:?} must be written Namespace/Name"));
                }
                features.insert(name.to_ascii_lowercase(), registration(name, value));
            }
            let mut providers: BTreeMap<String, Registration> =
                KNOWN_PROVIDERS.iter().map(|ns| (ns.to_ascii_lowercase(), registration(ns, "Registered"))).collect();
            for (name, value) in &sub.providers {
                providers.insert(name.to_ascii_lowercase(), registration(name, value));
            }
            let sub_state = SubscriptionState {
                id: sub.id.clone(),
                tenant_id: sub.tenant_id.clone(),
                polls: sub.feature_registration_polls,
                features,
                providers,
            };
            state.subscriptions.insert(sub.id.to_ascii_lowercase(), sub_state);
        }
        for identity in &scenario.managed_identities {
            let id = ResourceId::parse(&identity.resource_id).filter(|id| id.is_type(ids::IDENTITY_TYPE)).ok_or_else(
                || format!("managed identity id {:?} is not a user-assigned identity id", identity.resource_id),
            )?;
            state.groups.insert(group_key(&id));
            state.identities.insert(
                id.key(),
                IdentityResource {
                    id,
                    location: identity.location.clone(),
                    tags: json!({}),
                    client_id: identity.client_id.clone(),
                    principal_id: identity.principal_id.clone(),
                    tenant_id: identity.tenant_id.clone(),
                },
            );
        }
        for account in &scenario.storage_accounts {
            let parsed = StorageAccountState::from_scenario(account, &state)?;
            state.groups.insert(group_key(&parsed.id));
            state.storage.insert(parsed.id.key(), parsed);
        }
        Ok(state)
    }

    /// State dump for `/_emulator/state`: subscriptions, identities and storage accounts as ARM would show them.
    pub fn dump(&self) -> Value {
        let subscriptions: Vec<Value> = self
            .subscriptions
            .values()
            .map(|s| {
                let states = |m: &BTreeMap<String, Registration>| -> Map<String, Value> {
                    m.values().map(|r| (r.name.clone(), json!(r.state))).collect()
                };
                json!({ "id": s.id, "tenantId": s.tenant_id, "features": states(&s.features), "providers": states(&s.providers) })
            })
            .collect();
        let identities: Vec<Value> = self.identities.values().map(IdentityResource::to_arm).collect();
        let storage: Vec<Value> = self.storage.values().map(|a| a.to_arm(self)).collect();
        json!({
            "subscriptions": subscriptions,
            "userAssignedIdentities": identities,
            "storageAccounts": storage,
        })
    }

    pub fn subscription(&self, id: &str) -> Option<&SubscriptionState> {
        self.subscriptions.get(&id.to_ascii_lowercase())
    }

    pub fn subscription_mut(&mut self, id: &str) -> Option<&mut SubscriptionState> {
        self.subscriptions.get_mut(&id.to_ascii_lowercase())
    }

    pub fn group_exists(&self, id: &ResourceId) -> bool {
        self.groups.contains(&group_key(id))
    }

    pub fn identity(&self, id: &str) -> Option<&IdentityResource> {
        let id = ResourceId::parse(id)?;
        self.identities.get(&id.key())
    }

    /// Ends the creations due by `now`: their accounts show `Succeeded` from then on.
    pub fn finish_creations(&mut self, now: time::OffsetDateTime) {
        for account in self.storage.values_mut() {
            if account.creating_until.is_some_and(|until| until <= now) {
                account.creating_until = None;
            }
        }
    }

    /// Replaces the tags of the storage account `id` (a control-surface change).
    pub fn set_storage_account_tags(&mut self, id: &str, tags: &BTreeMap<String, String>) -> Result<(), String> {
        let key = ResourceId::parse(id).map(|id| id.key()).ok_or_else(|| format!("{id:?} is not a resource id"))?;
        let account = self.storage.get_mut(&key).ok_or_else(|| format!("no storage account {id:?}"))?;
        account.tags = serde_json::to_value(tags).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Makes the account's next daily key check due at `now` (a control-surface change).
    pub fn bring_key_check_due(&mut self, id: &str, now: time::OffsetDateTime) -> Result<(), String> {
        let key = ResourceId::parse(id).map(|id| id.key()).ok_or_else(|| format!("{id:?} is not a resource id"))?;
        let checked = self
            .key_checked_at
            .get_mut(&key)
            .ok_or_else(|| format!("storage account {id:?} was not pointed at a Key Vault key by a PATCH"))?;
        *checked = now - super::KEY_CHECK_INTERVAL;
        Ok(())
    }
}

fn registration(name: &str, state: &str) -> Registration {
    Registration { name: name.to_owned(), state: state.to_owned(), polls_left: 0 }
}

pub(crate) fn group_key(id: &ResourceId) -> String {
    format!("/subscriptions/{}/resourcegroups/{}", id.subscription, id.group).to_ascii_lowercase()
}

impl IdentityResource {
    /// The `Identity` resource as `UserAssignedIdentities_Get` returns it.
    pub fn to_arm(&self) -> Value {
        json!({
            "id": self.id.lowercase_groups(ids::IDENTITY_TYPE),
            "name": self.id.name,
            "type": ids::IDENTITY_TYPE,
            "location": self.location,
            "tags": self.tags,
            "properties": { "tenantId": self.tenant_id, "principalId": self.principal_id, "clientId": self.client_id },
        })
    }
}
