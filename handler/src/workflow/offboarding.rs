//! Offboarding: the account goes back to Microsoft-managed keys and loses our tags, in one PATCH; the ownership
//! guard refuses an account that is not ours (plan and verify are pure; the ARM calls are in [`run`]).
//!
//! Reference `cross-tenant-cmk.md` §5 ("Switch back to Microsoft-managed keys"): `keySource: Microsoft.Storage` with
//! the services, as the CLI sends it; the account's identities and `encryption.identity` stay (the CLI leaves them,
//! and the ISV may use the identity for something else). Storage PATCH replaces the whole `tags` object, so the
//! account's other tags are sent back unchanged.

use serde_json::{Map, Value, json};

use super::App;
use super::account_tags::{CUSTOMER_TENANT_TAG, ONBOARDING_ID_TAG, OUR_TAGS, tag};
use crate::contract::AccountRequest;
use crate::error::Error;

/// Reason code of the ownership guard.
pub const NOT_OURS: &str = "StorageAccountNotOurs";

/// Who the account must belong to for this offboarding to touch it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub onboarding_id: &'a str,
    pub customer_tenant_id: &'a str,
    /// The ISV identity set's user-assigned identity and app: the account's encryption identity when it is ours.
    pub uami_id: &'a str,
    pub app_client_id: &'a str,
    /// When the message names a vault, the account's key must be in it.
    pub vault_uri: Option<&'a str>,
}

/// What the account used before, for the `offboarded` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviousKey {
    pub vault_uri: Option<String>,
    pub key_name: Option<String>,
}

/// The one write that offboards the account, or nothing when it is already offboarded.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub patch: Option<Value>,
    pub previous: PreviousKey,
    /// Our tags the account carries (their names as the account spells them).
    pub removed_tags: Vec<String>,
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key)).and_then(Value::as_str)
}

fn is_ours(tag: &str) -> bool {
    OUR_TAGS.iter().any(|ours| ours.eq_ignore_ascii_case(tag))
}

fn uses_customer_key(account: &Value) -> bool {
    str_at(account, &["properties", "encryption", "keySource"])
        .is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"))
}

fn normalise_uri(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The ownership guard, then the PATCH. Refused (permanent, nothing written) when the account's tags name another
/// onboarding or customer tenant, or its customer-managed key is not configured through our identity (or not in the
/// vault the message names). An account on Microsoft-managed keys without our tags is already offboarded.
pub fn plan(account: &Value, owner: &Owner<'_>) -> Result<Plan, String> {
    let id = str_at(account, &["id"]).unwrap_or("the storage account");
    if let Some(recorded) = tag(account, ONBOARDING_ID_TAG)
        && recorded != owner.onboarding_id
    {
        return Err(format!(
            "{id} was configured by onboarding {recorded}, not {}; offboard that onboarding",
            owner.onboarding_id
        ));
    }
    if let Some(tenant) = tag(account, CUSTOMER_TENANT_TAG)
        && !tenant.eq_ignore_ascii_case(owner.customer_tenant_id)
    {
        return Err(format!("{id} is onboarded for customer tenant {tenant}, not {}", owner.customer_tenant_id));
    }
    let encryption = &account["properties"]["encryption"];
    let customer_key = uses_customer_key(account);
    if customer_key {
        let identity = str_at(encryption, &["identity", "userAssignedIdentity"]).unwrap_or("");
        let app = str_at(encryption, &["identity", "federatedIdentityClientId"]).unwrap_or("");
        if !crate::azure::arm::same_resource_id(identity, owner.uami_id)
            || !app.eq_ignore_ascii_case(owner.app_client_id)
        {
            return Err(format!(
                "{id} uses a customer-managed key through identity {identity:?} and app {app:?}, not this handler's \
                 ({} and {})",
                owner.uami_id, owner.app_client_id
            ));
        }
        let vault = str_at(encryption, &["keyvaultproperties", "keyvaulturi"]).unwrap_or("");
        if let Some(named) = owner.vault_uri
            && normalise_uri(vault) != normalise_uri(named)
        {
            return Err(format!("{id} uses a key in {vault}, not in {named} as the offboarding says"));
        }
    }
    let tags = account["tags"].as_object().cloned().unwrap_or_default();
    let removed_tags: Vec<String> = tags.keys().filter(|k| is_ours(k)).cloned().collect();
    let previous = PreviousKey {
        vault_uri: customer_key
            .then(|| str_at(encryption, &["keyvaultproperties", "keyvaulturi"]).map(str::to_owned))
            .flatten(),
        key_name: customer_key
            .then(|| str_at(encryption, &["keyvaultproperties", "keyname"]).map(str::to_owned))
            .flatten(),
    };
    let mut patch = Map::new();
    if !removed_tags.is_empty() {
        let kept: Map<String, Value> = tags.into_iter().filter(|(k, _)| !is_ours(k)).collect();
        patch.insert("tags".into(), Value::Object(kept));
    }
    if customer_key {
        patch.insert(
            "properties".into(),
            json!({ "encryption": {
                "keySource": "Microsoft.Storage",
                "services": {
                    "blob": { "enabled": true, "keyType": "Account" },
                    "file": { "enabled": true, "keyType": "Account" },
                },
            }}),
        );
    }
    Ok(Plan { patch: (!patch.is_empty()).then_some(Value::Object(patch)), previous, removed_tags })
}

/// Checks the read-back: Microsoft-managed keys and none of our tags.
pub fn verify(account: &Value) -> Result<(), String> {
    if uses_customer_key(account) {
        return Err("the storage account still uses a customer-managed key".into());
    }
    match account["tags"].as_object().and_then(|tags| tags.keys().find(|k| is_ours(k))) {
        Some(left) => Err(format!("the storage account still carries the tag {left}")),
        None => Ok(()),
    }
}

/// The ownership guard and plan for `offboarding` against the account as read (also what the diagnosis reports).
pub fn guard(account: &Value, offboarding: &AccountRequest) -> Result<Plan, Error> {
    let owner = Owner {
        onboarding_id: &offboarding.onboarding_id,
        customer_tenant_id: &offboarding.customer_tenant_id,
        uami_id: &offboarding.identity.uami_resource_id,
        app_client_id: &offboarding.identity.app_client_id,
        vault_uri: offboarding.key.as_ref().map(|k| k.vault_uri.as_str()),
    };
    plan(account, &owner).map_err(|message| Error::Refused { code: NOT_OURS, message })
}

/// Offboards the account: read, guard, one PATCH when something differs, read back and verify.
pub async fn run(app: &App, offboarding: &AccountRequest) -> Result<Plan, Error> {
    let account_id = offboarding.storage_account.arm_id();
    let arm = &app.clients.arm;
    let current = arm.get_storage_account(&account_id).await?;
    let plan = guard(&current.raw, offboarding)?;
    let Some(patch) = &plan.patch else {
        tracing::info!("storage account already on Microsoft-managed keys without our tags; nothing to change");
        return Ok(plan);
    };
    arm.update_storage_account(&account_id, patch).await?;
    let read_back = arm.get_storage_account(&account_id).await?;
    verify(&read_back.raw).map_err(Error::Verification)?;
    Ok(plan)
}
