//! Strict grammars for the identifiers in a message: GUIDs, storage-account resource ids, vault URIs, names.
//!
//! These are hand-written rather than delegated to a URL parser on purpose: a parser normalises away exactly the
//! things we must reject (user info, ports, `..`, percent-encoding), and the vault URI decides where a token goes.

use crate::cloud::Cloud;

/// Canonical 8-4-4-4-12 hex GUID, any case, returned in lowercase; `None` for anything else (braces, no hyphens).
pub fn normalize_guid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups.iter().zip(lengths).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| text.to_ascii_lowercase())
}

/// ARM resource group names: 1–90 of letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.`.
pub fn is_resource_group_name(name: &str) -> bool {
    (1..=90).contains(&name.len())
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
}

/// Storage account names: 3–24 lowercase letters and digits.
fn is_storage_account_name(name: &str) -> bool {
    (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A storage account in the ISV tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountId {
    /// Lowercase GUID.
    pub subscription_id: String,
    /// As sent (ARM compares resource group names case-insensitively).
    pub resource_group: String,
    pub name: String,
}

impl StorageAccountId {
    /// The canonical ARM id, keywords spelled as ARM documents them.
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

/// Exactly `/subscriptions/{guid}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}`; keywords
/// case-insensitive, nothing before or after.
pub fn parse_storage_account_id(text: &str) -> Result<StorageAccountId, String> {
    let Some(rest) = text.strip_prefix('/') else {
        return Err("must start with /subscriptions/".into());
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let [sub_kw, sub, rg_kw, rg, prov_kw, namespace, type_kw, name] = segments.as_slice() else {
        return Err(format!(
            "has {} segments; expected /subscriptions/{{id}}/resourceGroups/{{rg}}/providers/Microsoft.Storage/storageAccounts/{{name}}",
            segments.len()
        ));
    };
    let keyword = |seg: &str, expected: &str| {
        if seg.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(format!("expected {expected:?} but found {seg:?}"))
        }
    };
    keyword(sub_kw, "subscriptions")?;
    keyword(rg_kw, "resourceGroups")?;
    keyword(prov_kw, "providers")?;
    keyword(namespace, "Microsoft.Storage")?;
    keyword(type_kw, "storageAccounts")?;
    let subscription_id = normalize_guid(sub).ok_or_else(|| format!("subscription {sub:?} is not a GUID"))?;
    if !is_resource_group_name(rg) {
        return Err(format!("resource group {rg:?} is not a valid name"));
    }
    if !is_storage_account_name(name) {
        return Err(format!("storage account name {name:?} is not 3-24 lowercase letters or digits"));
    }
    Ok(StorageAccountId { subscription_id, resource_group: (*rg).to_owned(), name: (*name).to_owned() })
}

/// A Key Vault or Managed HSM endpoint of the configured cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultUri {
    /// `https://{host}/`, lowercase.
    pub uri: String,
    /// `{name}.{suffix}`, lowercase.
    pub host: String,
    /// The first DNS label: the vault (or HSM) name.
    pub name: String,
    pub managed_hsm: bool,
}

/// Vault (and HSM) names: 3–24 of letters, digits and hyphens; starts with a letter; no `--`; no trailing `-`.
fn is_vault_name(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `https://{name}.{kv or mhsm suffix of cloud}` with an optional trailing `/` and nothing else.
pub fn parse_vault_uri(text: &str, cloud: Cloud) -> Result<VaultUri, String> {
    let rest = text.strip_prefix("https://").ok_or("must start with https://")?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    // Only DNS characters: this rejects user info (@), ports (:), paths (/), queries (?), fragments (#),
    // IPv6 literals ([) and percent-encoding in one go.
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err("must be https://{vault}.{suffix}/ with no user info, port, path, query or fragment".into());
    }
    let host = host.to_ascii_lowercase();
    let (name, suffix) = host.split_once('.').ok_or("host has no domain")?;
    let managed_hsm = if suffix == cloud.key_vault_suffix() {
        false
    } else if suffix == cloud.managed_hsm_suffix() {
        true
    } else {
        return Err(format!(
            "host must be {{name}}.{} or {{name}}.{} in cloud {cloud}",
            cloud.key_vault_suffix(),
            cloud.managed_hsm_suffix()
        ));
    };
    if !is_vault_name(name) {
        return Err(format!(
            "vault name {name:?} must be 3-24 letters, digits or single hyphens, start with a letter and not end with a hyphen"
        ));
    }
    Ok(VaultUri { uri: format!("https://{host}/"), name: name.to_owned(), host, managed_hsm })
}

/// `[A-Za-z0-9]` then up to 127 of `[A-Za-z0-9._:-]`.
pub(crate) fn is_onboarding_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// Key Vault key names: 1–127 of `[0-9A-Za-z-]`.
pub(crate) fn is_key_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Key versions are 32 hex characters.
pub(crate) fn is_key_version(version: &str) -> bool {
    version.len() == 32 && version.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Identity-set names: `[A-Za-z0-9]` then up to 63 of `[A-Za-z0-9._-]`.
pub(crate) fn is_identity_set_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `1.<minor>`.
pub(crate) fn is_supported_schema_version(version: &str) -> bool {
    version.strip_prefix("1.").is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
}
