//! Storage account encryption: compare the account with the desired customer-managed-key configuration, build the
//! one PATCH that closes the gap (with the account's tags, `account_tags`), and check the read-back (pure; the ARM calls live in `workflow::mod`).
//!
//! Wire names follow `storage.json` 2023-05-01 (`keyvaultproperties`, `keyvaulturi`, …; reference `cross-tenant-cmk.md`
//! step 12). Resource ids are compared case-insensitively because ARM itself is inconsistent about
//! `resourceGroups`/`resourcegroups` casing in what it returns.

use serde_json::{Map, Value, json};

/// The encryption configuration an onboarding asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredEncryption {
    /// `https://{vault host}` (no trailing slash, as the ARM examples write it).
    pub vault_uri: String,
    pub key_name: String,
    /// `None`: automatic key version updates (`keyversion: ""`).
    pub key_version: Option<String>,
    /// Resource id of the ISV's user-assigned identity used for CMK.
    pub uami_id: String,
    /// Client id of the multi-tenant app (`federatedIdentityClientId`).
    pub app_client_id: String,
}

/// What the account shows once the configuration is in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedEncryption {
    pub current_versioned_key_identifier: String,
    pub last_key_rotation_timestamp: Option<String>,
    pub current_versioned_key_expiration_timestamp: Option<String>,
}

fn eq_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn normalise_uri(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key)).and_then(Value::as_str)
}

/// True when the account already has exactly the desired configuration (nothing to PATCH).
pub fn is_applied(account: &Value, want: &DesiredEncryption) -> bool {
    let encryption = &account["properties"]["encryption"];
    let has_identity = account["identity"]["userAssignedIdentities"]
        .as_object()
        .is_some_and(|ids| ids.keys().any(|id| eq_id(id, &want.uami_id)));
    let key_source_ok =
        str_at(encryption, &["keySource"]).is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"));
    let kv = &encryption["keyvaultproperties"];
    let uri_ok = str_at(kv, &["keyvaulturi"]).is_some_and(|u| normalise_uri(u) == normalise_uri(&want.vault_uri));
    let name_ok = str_at(kv, &["keyname"]) == Some(want.key_name.as_str());
    let version_ok = str_at(kv, &["keyversion"]).unwrap_or("") == want.key_version.as_deref().unwrap_or("");
    let enc_identity_ok =
        str_at(encryption, &["identity", "userAssignedIdentity"]).is_some_and(|id| eq_id(id, &want.uami_id));
    let fic_ok = str_at(encryption, &["identity", "federatedIdentityClientId"])
        .is_some_and(|id| id.eq_ignore_ascii_case(&want.app_client_id));
    has_identity && key_source_ok && uri_ok && name_ok && version_ok && enc_identity_ok && fic_ok
}

/// The vault the account's encryption uses now, when that is a customer-managed key in a vault other than the one
/// `want` names (hosts compared case-insensitively, trailing slash ignored); `None` for Microsoft-managed keys or the
/// same vault. The ownership guard: such an account belongs to someone's key already, and is not re-keyed unless the
/// message says so.
pub fn other_vault_in_use(account: &Value, want: &DesiredEncryption) -> Option<String> {
    let encryption = &account["properties"]["encryption"];
    let customer_managed =
        str_at(encryption, &["keySource"]).is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Keyvault"));
    let current = str_at(encryption, &["keyvaultproperties", "keyvaulturi"]).filter(|u| !u.trim().is_empty())?;
    (customer_managed && normalise_uri(current) != normalise_uri(&want.vault_uri)).then(|| current.trim().to_owned())
}

/// The PATCH body that brings `account` to `want` and sets `tags` (the whole tags object, from
/// [`super::account_tags::merged`]; `None` when the account's tags are already right), or `None` when nothing differs.
/// When only the tags differ, the body holds only them: the encryption is not sent again.
///
/// The identity is merged, never replaced: a system-assigned identity stays (`SystemAssigned,UserAssigned`), and the
/// user-assigned identities already attached are sent back unchanged next to ours, so nothing the ISV attached for
/// other purposes is detached.
pub fn plan_update(account: &Value, want: &DesiredEncryption, tags: Option<Map<String, Value>>) -> Option<Value> {
    let mut patch = Map::new();
    if let Some(tags) = tags {
        patch.insert("tags".to_owned(), Value::Object(tags));
    }
    if !is_applied(account, want) {
        patch.extend(encryption_members(account, want));
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// The identity and encryption members of the PATCH (and of a new account's PUT, `new_account`: with `account`
/// `null`, the identity is ours alone).
pub fn encryption_members(account: &Value, want: &DesiredEncryption) -> Map<String, Value> {
    let current_type = str_at(account, &["identity", "type"]).unwrap_or("None");
    let identity_type = if current_type.to_ascii_lowercase().contains("systemassigned") {
        "SystemAssigned,UserAssigned"
    } else {
        "UserAssigned"
    };
    let mut user_assigned = Map::new();
    if let Some(existing) = account["identity"]["userAssignedIdentities"].as_object() {
        for id in existing.keys().filter(|id| !eq_id(id, &want.uami_id)) {
            user_assigned.insert(id.clone(), json!({}));
        }
    }
    user_assigned.insert(want.uami_id.clone(), json!({}));
    let patch = json!({
        "identity": { "type": identity_type, "userAssignedIdentities": user_assigned },
        "properties": { "encryption": {
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {
                "keyvaulturi": want.vault_uri,
                "keyname": want.key_name,
                "keyversion": want.key_version.clone().unwrap_or_default(),
            },
            "identity": {
                "userAssignedIdentity": want.uami_id,
                "federatedIdentityClientId": want.app_client_id,
            },
            "services": {
                "blob": { "enabled": true, "keyType": "Account" },
                "file": { "enabled": true, "keyType": "Account" },
            },
        }},
    });
    match patch {
        Value::Object(members) => members,
        _ => Map::new(),
    }
}

/// Checks a read-back: the configuration is in place and Storage reports which key version it uses.
pub fn verify(account: &Value, want: &DesiredEncryption) -> Result<AppliedEncryption, String> {
    if !is_applied(account, want) {
        return Err("the storage account does not show the requested encryption configuration".into());
    }
    let kv = &account["properties"]["encryption"]["keyvaultproperties"];
    let current =
        str_at(kv, &["currentVersionedKeyIdentifier"]).ok_or("Storage reports no currentVersionedKeyIdentifier yet")?;
    let expected_prefix = format!("{}/keys/{}/", normalise_uri(&want.vault_uri), want.key_name.to_ascii_lowercase());
    if !current.to_ascii_lowercase().starts_with(&expected_prefix) {
        return Err(format!("Storage uses {current}, not a version of {}", want.key_name));
    }
    if let Some(version) = &want.key_version
        && !current.to_ascii_lowercase().ends_with(&format!("/{}", version.to_ascii_lowercase()))
    {
        return Err(format!("Storage uses {current}, not the pinned version {version}"));
    }
    Ok(AppliedEncryption {
        current_versioned_key_identifier: current.to_owned(),
        last_key_rotation_timestamp: str_at(kv, &["lastKeyRotationTimestamp"]).map(str::to_owned),
        current_versioned_key_expiration_timestamp: str_at(kv, &["currentVersionedKeyExpirationTimestamp"])
            .map(str::to_owned),
    })
}
