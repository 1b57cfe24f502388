//! What the Storage resource provider checks in the customer's vault before it accepts a CMK configuration.

use time::OffsetDateTime;

use super::rbac::{self, KeyAction};
use super::store::Vaults;
use crate::rbac::Rbac;

/// The key version Storage will use, as it reports it back on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// `https://{vault host}/keys/{name}/{version}`.
    pub kid: String,
    pub version: String,
    /// Unix seconds, when the version has an expiry.
    pub exp: Option<i64>,
}

/// Why Storage cannot use the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageKeyError {
    #[error("no vault at {0}")]
    VaultNotFound(String),
    #[error("the vault belongs to another tenant")]
    WrongTenant,
    #[error("soft delete or purge protection is off")]
    NotRecoverable,
    #[error("the principal lacks {0:?} on the key")]
    Forbidden(KeyAction),
    #[error("key {0} not found")]
    KeyNotFound(String),
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key is expired or not yet valid")]
    KeyExpired,
    #[error("the key does not allow {0}")]
    OperationNotAllowed(&'static str),
    #[error("key type {0} is not usable for storage encryption")]
    UnsupportedKeyType(String),
}

impl Vaults {
    /// The checks Storage does with the token of `principal_id` (issued in `tenant`) when it is given
    /// `key_name`/`key_version` (empty or `None`: the current version): RBAC `get`, `wrapKey`, `unwrapKey`, the
    /// key's state, and the vault's soft delete + purge protection, at `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn check_storage_access(
        &self,
        rbac: &Rbac,
        vault_host: &str,
        principal_id: &str,
        tenant: &str,
        key_name: &str,
        key_version: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<KeyVersionInfo, StorageKeyError> {
        let vault = self.by_host(vault_host).ok_or_else(|| StorageKeyError::VaultNotFound(vault_host.to_owned()))?;
        if !vault.tenant_id.eq_ignore_ascii_case(tenant) {
            return Err(StorageKeyError::WrongTenant);
        }
        for action in [KeyAction::Read, KeyAction::Wrap, KeyAction::Unwrap] {
            if !rbac::allowed(rbac, vault, principal_id, key_name, action, now) {
                return Err(StorageKeyError::Forbidden(action));
            }
        }
        let key = vault.key(key_name).ok_or_else(|| StorageKeyError::KeyNotFound(key_name.to_owned()))?;
        let version = match key_version.filter(|v| !v.is_empty()) {
            Some(wanted) => key.version(wanted),
            None => key.current(),
        }
        .ok_or_else(|| StorageKeyError::KeyNotFound(format!("{key_name}/{}", key_version.unwrap_or_default())))?;
        if !version.enabled {
            return Err(StorageKeyError::KeyDisabled);
        }
        let now = now.unix_timestamp();
        if version.exp.is_some_and(|exp| now >= exp) || version.nbf.is_some_and(|nbf| now < nbf) {
            return Err(StorageKeyError::KeyExpired);
        }
        for op in ["wrapKey", "unwrapKey"] {
            if !version.key_ops.iter().any(|o| o == op) {
                return Err(StorageKeyError::OperationNotAllowed(op));
            }
        }
        if !matches!(version.kty.as_str(), "RSA" | "RSA-HSM") || ![2048, 3072, 4096].contains(&version.size) {
            return Err(StorageKeyError::UnsupportedKeyType(format!("{} {}", version.kty, version.size)));
        }
        if !(vault.soft_delete && vault.purge_protection) {
            return Err(StorageKeyError::NotRecoverable);
        }
        Ok(KeyVersionInfo {
            kid: format!("{}/keys/{}/{}", vault.uri(), key.name, version.version),
            version: version.version.clone(),
            exp: version.exp,
        })
    }
}
