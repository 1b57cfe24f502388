//! What the Storage RP does when an account is pointed at a Key Vault key: the encryption identity must be one
//! of the account's identities, then the RP reaches the key *as the app in the vault's tenant* (managed-identity
//! assertion → federated exchange → the vault's RBAC and key checks) and records the version it will use; with no
//! version pinned it checks the vault daily for a newer one (auto-rotation).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::errors::ArmError;
use super::ids::{IDENTITY_TYPE, ResourceId};
use super::state::StorageAccountState;
use super::storage::dotnet_time;
use crate::cloud::{Cloud, Service};
use crate::entra::{Claims, Subject};
use crate::keyvault::{KeyVersionInfo, StorageKeyError};
use crate::state::World;

/// How long the assertion the RP mints for itself lives; only its claims matter here.
const ASSERTION_LIFETIME_SECS: i64 = 600;

fn missing_prerequisites() -> ArmError {
    ArmError::bad_request(
        "BadRequest",
        "Missing pre-requisites to enable EncryptionAtRest/Customer Managed Key for this storage account. For more information, see - https://aka.ms/storagecmkconfiguration",
    )
}

fn authentication_failure() -> ArmError {
    ArmError::bad_request(
        "KeyVaultAuthenticationFailure",
        "The operation failed because of authentication issue on the keyvault. For more information, see - https://aka.ms/storagekeyvaultaccesspolicy",
    )
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The encryption identity is one of the account's user-assigned identities (or, without one, the account has a
/// system-assigned identity and no federated client id); the vault reference names a vault and a key.
pub fn require_prerequisites(account: &StorageAccountState) -> Result<(), ArmError> {
    let encryption = &account.encryption;
    match text(encryption, "/identity/userAssignedIdentity") {
        Some(uami) => {
            if !account.user_identities.contains_key(&uami.to_ascii_lowercase()) {
                return Err(missing_prerequisites());
            }
        }
        None => {
            let federated = text(encryption, "/identity/federatedIdentityClientId").is_some();
            if account.system_identity.is_none() || federated {
                return Err(missing_prerequisites());
            }
        }
    }
    if text(encryption, "/keyvaultproperties/keyvaulturi").is_none()
        || text(encryption, "/keyvaultproperties/keyname").is_none()
    {
        return Err(ArmError::bad_request(
            "InvalidRequestPropertyValue",
            "encryption.keyvaultproperties.keyvaulturi and keyname are required when keySource is Microsoft.Keyvault.",
        ));
    }
    Ok(())
}

/// Reaches the key the way the RP does. Call after [`require_prerequisites`].
pub fn check_key_access(
    world: &World,
    account: &StorageAccountState,
    now: OffsetDateTime,
) -> Result<KeyVersionInfo, ArmError> {
    let encryption = &account.encryption;
    let uri = text(encryption, "/keyvaultproperties/keyvaulturi").unwrap_or_default();
    let key_name = text(encryption, "/keyvaultproperties/keyname").unwrap_or_default();
    let key_version = text(encryption, "/keyvaultproperties/keyversion");
    let vault_not_found =
        || ArmError::bad_request("KeyVaultVaultNotFound", format!("The specified key vault '{uri}' is not found."));
    // The vault's URI, nothing more: a key path, query, port or credentials in it is not a vault URI.
    let host = url::Url::parse(uri)
        .ok()
        .filter(|u| {
            u.scheme() == "https"
                && u.username().is_empty()
                && u.password().is_none()
                && u.port().is_none()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    let host = host.filter(|h| matches!(Cloud::service_for_host(h), Some((_, Service::KeyVault { .. })))).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidRequestPropertyValue",
            format!("The value '{uri}' of encryption.keyvaultproperties.keyvaulturi is not a Key Vault or Managed HSM URI."),
        )
    })?;
    let vault_tenant = world.vaults.by_host(&host).map(|v| v.tenant_id.clone()).ok_or_else(vault_not_found)?;
    let (principal, tenant) = storage_principal(world, account, &vault_tenant, now)?;
    world.vaults.check_storage_access(&world.rbac, &host, &principal, &tenant, key_name, key_version, now).map_err(
        |error| match error {
            StorageKeyError::VaultNotFound(_) => vault_not_found(),
            StorageKeyError::NotRecoverable => {
                ArmError::bad_request("KeyVaultPolicyError", "Keyvault policy recoverable is not set")
            }
            StorageKeyError::KeyNotFound(_) => ArmError::bad_request(
                "KeyVaultEncryptionKeyNotFound",
                "The key vault key is not found to unwrap the encryption key.",
            ),
            _ => authentication_failure(),
        },
    )
}

/// The principal and tenant Key Vault will see: the app's service principal in the vault's tenant when a
/// federated client id is set, else the account's own identity.
fn storage_principal(
    world: &World,
    account: &StorageAccountState,
    vault_tenant: &str,
    now: OffsetDateTime,
) -> Result<(String, String), ArmError> {
    let encryption = &account.encryption;
    let Some(uami_id) = text(encryption, "/identity/userAssignedIdentity") else {
        let (principal, tenant) = account.system_identity.clone().ok_or_else(missing_prerequisites)?;
        return Ok((principal, tenant));
    };
    let uami = world.arm.identity(uami_id).ok_or_else(|| {
        ArmError::bad_request(
            "KeyVaultAccessTokenCannotBeAcquired",
            "Cannot acquire a Key Vault access token for the storage account's user-assigned identity.",
        )
    })?;
    let Some(app_id) = text(encryption, "/identity/federatedIdentityClientId") else {
        return Ok((uami.principal_id.clone(), uami.tenant_id.clone()));
    };
    let cloud = world.cloud;
    let canonical_id =
        ResourceId::parse(uami_id).map(|id| id.canonical(IDENTITY_TYPE)).unwrap_or_else(|| uami_id.to_owned());
    let subject = Subject {
        tenant_id: &uami.tenant_id,
        object_id: &uami.principal_id,
        client_id: &uami.client_id,
        mi_resource_id: Some(&canonical_id),
    };
    let assertion =
        Claims::issue(cloud, &subject, cloud.token_exchange_audience(), now.unix_timestamp(), ASSERTION_LIFETIME_SECS);
    let service_principal = world
        .directory
        .federated_exchange(cloud, app_id, vault_tenant, &assertion, now)
        .map_err(|_| authentication_failure())?;
    Ok((service_principal.id.clone(), vault_tenant.to_owned()))
}

/// Records the version Storage now uses, as the account shows it, and turns on account-key encryption for blob
/// and file.
pub fn record_key(account: &mut StorageAccountState, key: &KeyVersionInfo, now: OffsetDateTime) {
    let stamp = dotnet_time(now);
    let properties = &mut account.encryption["keyvaultproperties"];
    let rotated = properties.get("currentVersionedKeyIdentifier").and_then(Value::as_str) != Some(key.kid.as_str());
    properties["currentVersionedKeyIdentifier"] = json!(key.kid);
    if rotated || properties.get("lastKeyRotationTimestamp").is_none() {
        properties["lastKeyRotationTimestamp"] = json!(stamp);
    }
    match key.exp.and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok()) {
        Some(exp) => properties["currentVersionedKeyExpirationTimestamp"] = json!(dotnet_time(exp)),
        None => {
            if let Some(object) = properties.as_object_mut() {
                object.remove("currentVersionedKeyExpirationTimestamp");
            }
        }
    }
    for service in ["blob", "file"] {
        let entry = &mut account.encryption["services"][service];
        let was_enabled = entry.get("enabled").and_then(Value::as_bool) == Some(true);
        entry["enabled"] = json!(true);
        entry["keyType"] = json!("Account");
        if !was_enabled || entry.get("lastEnabledTime").is_none() {
            entry["lastEnabledTime"] = json!(stamp);
        }
    }
}

/// The interval of the Storage RP's check for a new key version: "Azure Storage checks the key vault for a new key
/// version only once daily" (customer-managed-keys-overview; reference `cross-tenant-cmk.md` §5).
pub const KEY_CHECK_INTERVAL: time::Duration = time::Duration::days(1);

/// `keySource` is `Microsoft.Keyvault`.
pub fn uses_vault(account: &StorageAccountState) -> bool {
    account
        .encryption
        .get("keySource")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"))
}

/// Runs the daily checks that came due by `now` for every account on a key with no version pinned (auto-rotation):
/// at the last due check, the RP reaches the key as it does on a PATCH and moves the account to the newest version
/// that existed then (`currentVersionedKeyIdentifier`, `lastKeyRotationTimestamp`). A check that cannot reach the key
/// changes nothing (Storage keeps the version it has). Evaluated lazily, whenever ARM or the state dump reads
/// accounts (and after control changes), so it follows the emulator's clock exactly.
pub fn daily_key_check(world: &mut World, now: OffsetDateTime) {
    let due: Vec<(String, OffsetDateTime)> = world
        .arm
        .key_checked_at
        .iter()
        .filter(|(_, checked)| now - **checked >= KEY_CHECK_INTERVAL)
        .map(|(key, checked)| {
            let periods = ((now - *checked).whole_seconds() / KEY_CHECK_INTERVAL.whole_seconds()) as i32;
            (key.clone(), *checked + KEY_CHECK_INTERVAL * periods)
        })
        .collect();
    for (key, at) in due {
        world.arm.key_checked_at.insert(key.clone(), at);
        let Some(account) = world.arm.storage.get(&key) else { continue };
        if !uses_vault(account) || text(&account.encryption, "/keyvaultproperties/keyversion").is_some() {
            continue;
        }
        let Some(newest) = newest_version_at(world, account, at) else { continue };
        let mut pinned = account.clone();
        pinned.encryption["keyvaultproperties"]["keyversion"] = json!(newest);
        let Ok(found) = check_key_access(world, &pinned, at) else { continue };
        if let Some(account) = world.arm.storage.get_mut(&key) {
            record_key(account, &found, at);
        }
    }
}

/// The newest version of the account's key created at or before `at`.
fn newest_version_at(world: &World, account: &StorageAccountState, at: OffsetDateTime) -> Option<String> {
    let uri = text(&account.encryption, "/keyvaultproperties/keyvaulturi")?;
    let host = url::Url::parse(uri).ok()?.host_str()?.to_ascii_lowercase();
    let key = world.vaults.by_host(&host)?.key(text(&account.encryption, "/keyvaultproperties/keyname")?)?;
    let at = at.unix_timestamp();
    key.versions.iter().rev().find(|v| v.created <= at).map(|v| v.version.clone())
}
