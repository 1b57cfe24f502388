//! The key operations: each checks RBAC first (as Key Vault does, before it looks the key up), then the key's
//! state, then does the work. RSA work runs after the world lock is released.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::crypto::{self, WrapAlgorithm};
use super::rbac::{self, KeyAction};
use super::responses::{self, Failure, bad_parameter, error};
use super::store::{KeyVersion, VaultState};
use crate::http::Req;
use crate::rbac::Rbac;
use crate::scenario::Key;
use crate::state::Shared;

/// Most key versions one page of `GetKeyVersions` holds (Key Vault's `maxresults` limit).
const MAX_PAGE: usize = 25;

/// What every operation needs to know about the request.
#[derive(Debug)]
pub struct Call<'a> {
    pub shared: &'a Shared,
    pub host: &'a str,
    /// The caller's object id (token `oid`).
    pub principal: &'a str,
    pub body: &'a [u8],
}

impl Call<'_> {
    fn now(&self) -> i64 {
        self.shared.clock.now().unix_timestamp()
    }

    /// Runs `f` on the vault and the world's RBAC under the world lock. The vault exists: `handle` checked it.
    fn with_vault<T>(&self, f: impl FnOnce(&mut VaultState, &Rbac) -> T) -> Option<T> {
        let mut guard = self.shared.world.lock().expect("world lock poisoned");
        let world = &mut *guard;
        let rbac = &world.rbac;
        world.vaults.by_host_mut(self.host).map(|vault| f(vault, rbac))
    }

    /// Whether the caller may do `action` on key `name` now; else Key Vault's 403.
    fn authorize(&self, vault: &VaultState, rbac: &Rbac, name: &str, action: KeyAction) -> Result<(), Failure> {
        if rbac::allowed(rbac, vault, self.principal, name, action, self.shared.clock.now()) {
            Ok(())
        } else {
            Err(Box::new(forbidden_by_rbac(vault, self.principal, name, action)))
        }
    }
}

/// A snapshot of one key version and its vault, taken under the lock.
struct Located {
    vault: VaultState,
    key_name: String,
    version: KeyVersion,
}

fn forbidden_by_rbac(vault: &VaultState, principal: &str, key_name: &str, action: KeyAction) -> Response {
    // Key Vault names the key by its lower-cased ARM id when the vault has one.
    let vault_resource = vault.resource_id.as_ref().map_or_else(|| vault.uri(), |id| id.to_ascii_lowercase());
    let message = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role \
         definitions were changed recently, please observe propagation time.\r\nCaller: oid={principal}\r\nAction: \
         '{}'\r\nResource: '{}/keys/{key_name}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\n\
         DecisionReason: null \r\nVault: {};location=westeurope\r\n",
        action.data_action(vault.managed_hsm),
        vault_resource,
        vault.name
    );
    error(StatusCode::FORBIDDEN, "Forbidden", &message, Some("ForbiddenByRbac"))
}

fn key_not_found(vault: &VaultState, name: &str, version: Option<&str>) -> Response {
    let message = match version {
        Some(version) => format!(
            "A key with (name/id) {name}/{version} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None => format!(
            "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    };
    let _ = vault;
    error(StatusCode::NOT_FOUND, "KeyNotFound", &message, None)
}

/// A request body checked against its operation's schema in `keys.json` (unknown or read-only members, wrong types,
/// malformed base64url), then deserialised; Key Vault refuses a bad body with 400 `BadParameter`.
fn read_body<T: serde::de::DeserializeOwned>(body: &[u8], operation_id: &str) -> Result<T, Failure> {
    let invalid = |detail: String| Box::new(bad_parameter(&format!("The request body is invalid: {detail}")));
    let value: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let value = crate::openapi::KEY_VAULT_KEYS
        .request_body(operation_id)
        .check_request(&value)
        .map_err(|violations| invalid(violations[0].to_string()))?;
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// 403 `KeyDisabled`: "Operation {op} is not allowed on a disabled key."
fn key_disabled(operation: &str) -> Response {
    let message = format!("Operation {operation} is not allowed on a disabled key.");
    error(StatusCode::FORBIDDEN, "Forbidden", &message, Some("KeyDisabled"))
}

/// RBAC, then the key (latest when `version` is `None` or empty).
fn locate(call: &Call<'_>, name: &str, version: Option<&str>, action: KeyAction) -> Result<Located, Failure> {
    let version = version.filter(|v| !v.is_empty());
    call.with_vault(|vault, rbac| {
        call.authorize(vault, rbac, name, action)?;
        let Some(key) = vault.key(name) else {
            return Err(Box::new(key_not_found(vault, name, version)));
        };
        let found = match version {
            Some(version) => key.version(version),
            None => key.current(),
        };
        let Some(found) = found.cloned() else {
            return Err(Box::new(key_not_found(vault, name, version)));
        };
        let key_name = key.name.clone();
        Ok(Located { vault: vault.clone(), key_name, version: found })
    })
    .unwrap_or_else(|| Err(Box::new(crate::faults::name_not_resolved(call.host))))
}

fn bundle_response(located: &Located) -> Response {
    match responses::key_bundle(&located.vault, &located.key_name, &located.version) {
        Ok(bundle) => Json(bundle).into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &message, None),
    }
}

pub async fn get_key(call: &Call<'_>, name: &str, version: Option<&str>) -> Response {
    match locate(call, name, version, KeyAction::Read) {
        // Key Vault refuses every operation on a disabled key version, `get` included (reference
        // `cross-tenant-cmk.md` §2.4); the key's versions list still shows it with `enabled: false`.
        Ok(located) if !located.version.enabled => key_disabled("get"),
        Ok(located) => bundle_response(&located),
        Err(response) => *response,
    }
}

pub async fn list_versions(call: &Call<'_>, name: &str, req: &Req) -> Response {
    let page_size = match req.query("maxresults").map(|v| v.parse::<usize>()) {
        None => MAX_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => return bad_parameter("maxresults must be an integer between 1 and 25."),
    };
    let skip = match req.query("$skiptoken").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_parameter("Invalid $skiptoken."),
    };
    let listed = call.with_vault(|vault, rbac| {
        call.authorize(vault, rbac, name, KeyAction::Read)?;
        let Some(key) = vault.key(name) else {
            return Err(Box::new(key_not_found(vault, name, None)));
        };
        let items: Vec<Value> =
            key.versions.iter().skip(skip).take(page_size).map(|v| responses::key_item(vault, &key.name, v)).collect();
        let more = key.versions.len() > skip + page_size;
        let api_version = req.query("api-version").unwrap_or_default();
        let next_link = more.then(|| {
            format!(
                "{}/keys/{}/versions?api-version={api_version}&$skiptoken={}&maxresults={page_size}",
                vault.uri(),
                key.name,
                skip + page_size
            )
        });
        Ok(json!({ "value": items, "nextLink": next_link }))
    });
    match listed {
        Some(Ok(body)) => Json(body).into_response(),
        Some(Err(response)) => *response,
        None => crate::faults::name_not_resolved(call.host),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AttributesIn {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct CreateParameters {
    kty: String,
    key_size: Option<u32>,
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    attributes: AttributesIn,
    tags: Option<Value>,
}

pub async fn create_key(call: &Call<'_>, name: &str) -> Response {
    let params: CreateParameters = match read_body(call.body, "CreateKey") {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let valid_name =
        !name.is_empty() && name.len() <= 127 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid_name {
        return bad_parameter(
            "The request URI contains an invalid name: key names are 1-127 characters of 0-9, a-z, A-Z and -.",
        );
    }
    let now = call.now();
    let created = call.with_vault(|vault, rbac| {
        call.authorize(vault, rbac, name, KeyAction::Create)?;
        let allowed_kty: &[&str] = if vault.managed_hsm { &["RSA-HSM"] } else { &["RSA", "RSA-HSM"] };
        if !allowed_kty.contains(&params.kty.as_str()) {
            return Err(Box::new(bad_parameter(&format!(
                "Key type {} is not supported by this emulated vault (supported: {}).",
                params.kty,
                allowed_kty.join(", ")
            ))));
        }
        let size = params.key_size.unwrap_or(2048);
        if ![2048, 3072, 4096].contains(&size) {
            return Err(Box::new(bad_parameter(&format!(
                "Invalid key size {size}: RSA keys are 2048, 3072 or 4096 bits."
            ))));
        }
        let key = Key {
            name: vault.key(name).map_or_else(|| name.to_owned(), |k| k.name.clone()),
            kty: params.kty.clone(),
            size,
            enabled: params.attributes.enabled.unwrap_or(true),
            key_ops: params.key_ops.clone(),
            exp: params.attributes.exp,
            nbf: params.attributes.nbf,
            versions: 1,
            tags: Default::default(),
        };
        let mut version = vault.add_key(&key, now, None);
        if let Some(tags) = &params.tags {
            version.tags = Some(tags.clone());
            if let Some(stored) = vault.key_mut(name).and_then(|k| k.versions.last_mut()) {
                stored.tags = Some(tags.clone());
            }
        }
        Ok(Located { vault: vault.clone(), key_name: key.name, version })
    });
    match created {
        Some(Ok(located)) => bundle_response(&located),
        Some(Err(response)) => *response,
        None => crate::faults::name_not_resolved(call.host),
    }
}

#[derive(Debug, Deserialize)]
struct UpdateParameters {
    key_ops: Option<Vec<String>>,
    attributes: Option<AttributesIn>,
    tags: Option<Value>,
}

pub async fn update_key(call: &Call<'_>, name: &str, version: Option<&str>) -> Response {
    let params: UpdateParameters = match read_body(call.body, "UpdateKey") {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let located = match locate(call, name, version, KeyAction::Update) {
        Ok(located) => located,
        Err(response) => return *response,
    };
    let now = call.now();
    let updated = call.with_vault(|vault, _| {
        let stored = vault.key_mut(name)?.version_mut(&located.version.version)?;
        if let Some(ops) = &params.key_ops {
            stored.key_ops = ops.clone();
        }
        if let Some(attributes) = &params.attributes {
            if let Some(enabled) = attributes.enabled {
                stored.enabled = enabled;
            }
            if attributes.nbf.is_some() {
                stored.nbf = attributes.nbf;
            }
            if attributes.exp.is_some() {
                stored.exp = attributes.exp;
            }
        }
        if let Some(tags) = &params.tags {
            stored.tags = Some(tags.clone());
        }
        stored.updated = now;
        Some(stored.clone())
    });
    match updated.flatten() {
        Some(version) => bundle_response(&Located { version, ..located }),
        None => key_not_found(&located.vault, name, version),
    }
}

#[derive(Debug, Deserialize)]
struct OperationParameters {
    alg: String,
    value: String,
}

/// `wrapkey` (`wrap == true`) or `unwrapkey`.
pub async fn wrap(call: &Call<'_>, name: &str, version: &str, wrap: bool) -> Response {
    let params: OperationParameters = match read_body(call.body, if wrap { "wrapKey" } else { "unwrapKey" }) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let action = if wrap { KeyAction::Wrap } else { KeyAction::Unwrap };
    let located = match locate(call, name, Some(version), action) {
        Ok(located) => located,
        Err(response) => return *response,
    };
    let op_name = if wrap { "wrapKey" } else { "unwrapKey" };
    let key = &located.version;
    if !key.enabled {
        return key_disabled(op_name);
    }
    if !key.key_ops.iter().any(|op| op == op_name) {
        let message = format!("Operation {op_name} is not permitted on this key.");
        return error(StatusCode::FORBIDDEN, "Forbidden", &message, Some("KeyOperationForbidden"));
    }
    // Expiry and not-before block new wraps; unwrapping data wrapped earlier keeps working.
    let now = call.now();
    if wrap && (key.exp.is_some_and(|exp| now >= exp) || key.nbf.is_some_and(|nbf| now < nbf)) {
        let message = format!("Operation {op_name} is not allowed on a key that is expired or not yet valid.");
        return error(StatusCode::FORBIDDEN, "Forbidden", &message, Some("KeyNotYetValidOrExpired"));
    }
    let Some(alg) = WrapAlgorithm::parse(&params.alg) else {
        return bad_parameter(&format!("Invalid algorithm {:?} for an RSA key.", params.alg));
    };
    let Some(input) = crypto::decode_b64url(&params.value) else {
        return bad_parameter("The value is not base64url encoded.");
    };
    let material = match crypto::material(key) {
        Ok(material) => material,
        Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &message, None),
    };
    let output = if wrap { crypto::wrap(material, alg, &input) } else { crypto::unwrap(material, alg, &input) };
    match output {
        Ok(bytes) => Json(json!({
            "kid": responses::kid(&located.vault, &located.key_name, key),
            "value": crypto::encode_b64url(&bytes),
        }))
        .into_response(),
        Err(_) => {
            bad_parameter(&format!("The {op_name} operation failed: the value does not match the key or algorithm."))
        }
    }
}
