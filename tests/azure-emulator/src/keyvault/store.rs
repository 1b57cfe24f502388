//! The vaults of the emulated world: keys with their versions, vault settings and RBAC role assignments.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use rsa::RsaPrivateKey;
use serde_json::{Value, json};

use crate::cloud::Cloud;
use crate::rbac::Realm;
use crate::scenario::{Change, Key, Scenario, Vault};

/// All vaults and their keys, by lower-cased host name. Their role assignments live in `rbac::Rbac`.
#[derive(Debug, Default)]
pub struct Vaults {
    pub(crate) cloud: Cloud,
    pub(crate) by_host: BTreeMap<String, VaultState>,
}

/// One Key Vault or Managed HSM.
#[derive(Debug, Clone)]
pub struct VaultState {
    pub name: String,
    pub managed_hsm: bool,
    pub host: String,
    pub tenant_id: String,
    pub soft_delete: bool,
    pub purge_protection: bool,
    pub retention_days: u32,
    /// Keys by name; Key Vault key names are case-insensitive, so the map key is lower-cased.
    pub keys: BTreeMap<String, KeyState>,
    /// The vault's ARM id, when the scenario gives one: Azure role assignments at or above it apply.
    pub resource_id: Option<String>,
    /// Soft-deleted keys, recoverable, by lower-cased name (no purge date: the emulator keeps them).
    pub deleted_keys: BTreeMap<String, KeyState>,
}

/// A key and its versions, oldest first (the last one is the current version).
#[derive(Debug, Clone)]
pub struct KeyState {
    pub name: String,
    pub versions: Vec<KeyVersion>,
}

/// One key version. The RSA material is generated on first use and shared by clones.
#[derive(Debug, Clone)]
pub struct KeyVersion {
    /// 32 lower-case hex digits, as Key Vault uses.
    pub version: String,
    pub kty: String,
    pub size: u32,
    pub enabled: bool,
    pub key_ops: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: Option<Value>,
    pub material: Arc<OnceLock<RsaPrivateKey>>,
}

/// Operations a new RSA key allows unless the creator restricts them.
pub const ALL_RSA_OPS: [&str; 6] = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"];

impl Vaults {
    pub fn from_scenario(scenario: &Scenario, cloud: Cloud) -> Result<Self, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut by_host = BTreeMap::new();
        for vault in &scenario.vaults {
            let state = VaultState::from_scenario(vault, cloud, now)?;
            if by_host.insert(state.host.clone(), state).is_some() {
                return Err(format!("vault {:?} is defined twice", vault.name));
            }
        }
        Ok(Self { cloud, by_host })
    }

    /// Applies a change made at `now` (the emulator's clock: versions created by a change are dated by it).
    pub fn apply(&mut self, change: &Change, now: time::OffsetDateTime) -> Result<(), String> {
        let now = now.unix_timestamp();
        match change {
            Change::SetKeyEnabled { vault, key, enabled } => {
                let vault = self.by_name_mut(vault)?;
                let key = vault.keys.get_mut(&key.to_ascii_lowercase()).ok_or_else(|| format!("no key {key:?}"))?;
                for version in &mut key.versions {
                    version.enabled = *enabled;
                    version.updated = now;
                }
                Ok(())
            }
            Change::SetKeyExpiry { vault, key, expires } => {
                let exp = expires
                    .as_deref()
                    .map(|text| {
                        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                            .map(|t| t.unix_timestamp())
                            .map_err(|e| format!("expires {text:?} is not RFC 3339: {e}"))
                    })
                    .transpose()?;
                let vault = self.by_name_mut(vault)?;
                let key = vault.keys.get_mut(&key.to_ascii_lowercase()).ok_or_else(|| format!("no key {key:?}"))?;
                let newest = key.versions.last_mut().ok_or("the key has no version")?;
                newest.exp = exp;
                newest.updated = now;
                Ok(())
            }
            Change::AddKey { vault, key } => {
                let vault = self.by_name_mut(vault)?;
                vault.add_key(key, now, None);
                Ok(())
            }
            Change::RotateKey { vault, key } => {
                let vault = self.by_name_mut(vault)?;
                let host = vault.host.clone();
                let state = vault.key_mut(key).ok_or_else(|| format!("no key {key:?}"))?;
                let current = state.current().ok_or_else(|| format!("key {key:?} has no version"))?;
                let rotated = Key {
                    name: state.name.clone(),
                    kty: current.kty.clone(),
                    size: current.size,
                    enabled: true,
                    key_ops: Some(current.key_ops.clone()),
                    exp: None,
                    nbf: None,
                    versions: 1,
                    tags: BTreeMap::new(),
                };
                let version = deterministic_version(&host, key, state.versions.len() as u32);
                vault.add_key(&rotated, now, Some(version));
                Ok(())
            }
            Change::DeleteKey { vault, key } => {
                let vault = self.by_name_mut(vault)?;
                let name = key.to_ascii_lowercase();
                let state = vault.keys.remove(&name).ok_or_else(|| format!("no key {key:?}"))?;
                if vault.soft_delete {
                    vault.deleted_keys.insert(name, state);
                }
                Ok(())
            }
            Change::RecoverKey { vault, key } => {
                let vault = self.by_name_mut(vault)?;
                let name = key.to_ascii_lowercase();
                let state = vault.deleted_keys.remove(&name).ok_or_else(|| format!("no deleted key {key:?}"))?;
                vault.keys.insert(name, state);
                Ok(())
            }
            Change::SetKeyTags { vault, key, tags } => {
                let vault = self.by_name_mut(vault)?;
                let state = vault.keys.get_mut(&key.to_ascii_lowercase()).ok_or_else(|| format!("no key {key:?}"))?;
                let latest = state.versions.last_mut().ok_or_else(|| format!("key {key:?} has no version"))?;
                latest.tags = Some(serde_json::to_value(tags).map_err(|e| e.to_string())?);
                latest.updated = now;
                Ok(())
            }
            Change::SetPurgeProtection { vault, enabled } => {
                self.by_name_mut(vault)?.purge_protection = *enabled;
                Ok(())
            }
            other => Err(format!("not a Key Vault change: {other:?}")),
        }
    }

    /// State dump for `/_emulator/state`: vaults, key versions (no private material) and role assignments.
    pub fn dump(&self) -> Value {
        let vaults: Vec<Value> = self.by_host.values().map(VaultState::dump).collect();
        json!({ "vaults": vaults })
    }

    pub fn by_host(&self, host: &str) -> Option<&VaultState> {
        self.by_host.get(&host.to_ascii_lowercase())
    }

    pub fn by_host_mut(&mut self, host: &str) -> Option<&mut VaultState> {
        self.by_host.get_mut(&host.to_ascii_lowercase())
    }

    fn by_name_mut(&mut self, name: &str) -> Result<&mut VaultState, String> {
        self.by_host
            .values_mut()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("no vault named {name:?}"))
    }

    /// The RBAC realm of the vault named `name`: its local scopes.
    pub fn realm_of(&self, name: &str) -> Result<Realm, String> {
        self.by_host
            .values()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .map(VaultState::realm)
            .ok_or_else(|| format!("no vault named {name:?}"))
    }
}

impl VaultState {
    fn from_scenario(vault: &Vault, cloud: Cloud, now: i64) -> Result<Self, String> {
        let managed_hsm = match vault.kind.to_ascii_lowercase().as_str() {
            "vault" | "keyvault" => false,
            "managedhsm" | "hsm" => true,
            other => return Err(format!("vault {:?}: unknown kind {other:?}", vault.name)),
        };
        if !(7..=90).contains(&vault.retention_days) {
            return Err(format!("vault {:?}: retentionDays must be 7..=90", vault.name));
        }
        if let Some(id) = &vault.resource_id {
            let expected = format!("/providers/Microsoft.KeyVault/vaults/{}", vault.name).to_ascii_lowercase();
            let is_vault_id = id.to_ascii_lowercase().starts_with("/subscriptions/")
                && id.trim_end_matches('/').to_ascii_lowercase().ends_with(&expected);
            if managed_hsm || !is_vault_id {
                return Err(format!(
                    "vault {:?}: resourceId must be a Key Vault id ending in {expected} (Managed HSMs use local RBAC only)",
                    vault.name
                ));
            }
        }
        let suffix = if managed_hsm { cloud.managed_hsm_suffix() } else { cloud.vault_suffix() };
        let host = format!("{}.{suffix}", vault.name.to_ascii_lowercase());
        let mut state = Self {
            name: vault.name.clone(),
            managed_hsm,
            host,
            tenant_id: vault.tenant_id.clone(),
            soft_delete: vault.soft_delete,
            purge_protection: vault.purge_protection,
            retention_days: vault.retention_days,
            keys: BTreeMap::new(),
            resource_id: vault.resource_id.clone(),
            deleted_keys: BTreeMap::new(),
        };
        for key in &vault.keys {
            for index in 0..key.versions.max(1) {
                let version = deterministic_version(&state.host, &key.name, index);
                state.add_key(key, now, Some(version));
            }
        }
        Ok(state)
    }

    /// Adds `key` as a new key, or as a new current version of the existing key of that name.
    pub fn add_key(&mut self, key: &Key, now: i64, version: Option<String>) -> KeyVersion {
        let version = KeyVersion {
            version: version.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            kty: key.kty.clone(),
            size: key.size,
            enabled: key.enabled,
            key_ops: key.key_ops.clone().unwrap_or_else(|| ALL_RSA_OPS.iter().map(|op| (*op).to_owned()).collect()),
            exp: key.exp,
            nbf: key.nbf,
            created: now,
            updated: now,
            tags: (!key.tags.is_empty()).then(|| serde_json::to_value(&key.tags).unwrap_or_default()),
            material: Arc::new(OnceLock::new()),
        };
        let entry = self
            .keys
            .entry(key.name.to_ascii_lowercase())
            .or_insert_with(|| KeyState { name: key.name.clone(), versions: Vec::new() });
        entry.versions.push(version.clone());
        version
    }

    pub fn key(&self, name: &str) -> Option<&KeyState> {
        self.keys.get(&name.to_ascii_lowercase())
    }

    pub fn key_mut(&mut self, name: &str) -> Option<&mut KeyState> {
        self.keys.get_mut(&name.to_ascii_lowercase())
    }

    /// The RBAC realm of this vault's local scopes.
    pub fn realm(&self) -> Realm {
        Realm::Vault(self.host.clone())
    }

    /// `https://{host}`: the vault URI without a trailing slash.
    pub fn uri(&self) -> String {
        format!("https://{}", self.host)
    }

    /// `attributes.recoveryLevel` of every key in this vault (spec `DeletionRecoveryLevel`).
    pub fn recovery_level(&self) -> &'static str {
        let customized = self.retention_days < 90;
        match (self.soft_delete, self.purge_protection, customized) {
            (false, _, _) => "Purgeable",
            (true, false, false) => "Recoverable+Purgeable",
            (true, false, true) => "CustomizedRecoverable+Purgeable",
            (true, true, false) => "Recoverable",
            (true, true, true) => "CustomizedRecoverable",
        }
    }

    /// `attributes.recoverableDays`: the retention when soft delete is on, else absent.
    pub fn recoverable_days(&self) -> Option<u32> {
        self.soft_delete.then_some(self.retention_days)
    }

    fn dump(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .values()
            .map(|key| {
                let versions: Vec<Value> = key
                    .versions
                    .iter()
                    .map(|v| {
                        json!({
                            "version": v.version, "kid": format!("{}/keys/{}/{}", self.uri(), key.name, v.version),
                            "kty": v.kty, "size": v.size, "enabled": v.enabled, "keyOps": v.key_ops,
                            "exp": v.exp, "nbf": v.nbf, "created": v.created, "updated": v.updated,
                        })
                    })
                    .collect();
                json!({ "name": key.name, "versions": versions })
            })
            .collect();
        json!({
            "name": self.name, "kind": if self.managed_hsm { "managedhsm" } else { "vault" }, "uri": self.uri(),
            "tenantId": self.tenant_id, "softDelete": self.soft_delete, "purgeProtection": self.purge_protection,
            "retentionDays": self.retention_days, "recoveryLevel": self.recovery_level(), "keys": keys,
            "deletedKeys": self.deleted_keys.values().map(|k| k.name.clone()).collect::<Vec<_>>(),
            "resourceId": self.resource_id,
        })
    }
}

impl KeyState {
    pub fn current(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    pub fn version(&self, version: &str) -> Option<&KeyVersion> {
        self.versions.iter().find(|v| v.version.eq_ignore_ascii_case(version))
    }

    pub fn version_mut(&mut self, version: &str) -> Option<&mut KeyVersion> {
        self.versions.iter_mut().find(|v| v.version.eq_ignore_ascii_case(version))
    }
}

/// Scenario keys get stable version ids so that tests and dumps can name them.
pub fn deterministic_version(host: &str, key: &str, index: u32) -> String {
    let name = format!("{host}/keys/{}/{index}", key.to_ascii_lowercase());
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).simple().to_string()
}
