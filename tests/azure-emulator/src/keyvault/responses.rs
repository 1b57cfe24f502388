//! Key Vault's response bodies: `KeyVaultError`, `KeyBundle`, `KeyItem`, built from the store.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::crypto;
use super::store::{KeyVersion, VaultState};

/// An error response on its way out; boxed because `Response` is large.
pub type Failure = Box<Response>;

/// `{"error":{"code","message","innererror":{"code"}}}` with the given status.
pub fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

pub fn bad_parameter(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "BadParameter", message, None)
}

/// A 401 with the challenge the Azure SDKs parse to find the tenant and the resource.
pub fn unauthorized(message: &str, login_host: &str, tenant: &str, resource: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    let challenge = format!("Bearer authorization=\"https://{login_host}/{tenant}\", resource=\"{resource}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

pub fn kid(vault: &VaultState, key_name: &str, version: &KeyVersion) -> String {
    format!("{}/keys/{key_name}/{}", vault.uri(), version.version)
}

/// `KeyAttributes` of a version in this vault.
pub fn attributes(vault: &VaultState, version: &KeyVersion) -> Value {
    let mut attributes = Map::new();
    attributes.insert("enabled".into(), json!(version.enabled));
    if let Some(nbf) = version.nbf {
        attributes.insert("nbf".into(), json!(nbf));
    }
    if let Some(exp) = version.exp {
        attributes.insert("exp".into(), json!(exp));
    }
    attributes.insert("created".into(), json!(version.created));
    attributes.insert("updated".into(), json!(version.updated));
    if let Some(days) = vault.recoverable_days() {
        attributes.insert("recoverableDays".into(), json!(days));
    }
    attributes.insert("recoveryLevel".into(), json!(vault.recovery_level()));
    if vault.managed_hsm {
        attributes.insert("exportable".into(), json!(false));
    }
    Value::Object(attributes)
}

/// `KeyBundle`: the public JWK and the attributes. Generates the RSA material if needed (slow: call unlocked).
pub fn key_bundle(vault: &VaultState, key_name: &str, version: &KeyVersion) -> Result<Value, String> {
    let material = crypto::material(version)?;
    let (n, e) = crypto::public_parts(material);
    let mut bundle = json!({
        "key": { "kid": kid(vault, key_name, version), "kty": version.kty, "key_ops": version.key_ops, "n": n, "e": e },
        "attributes": attributes(vault, version),
    });
    if let Some(tags) = &version.tags {
        bundle["tags"] = tags.clone();
    }
    Ok(bundle)
}

/// `KeyItem`, as listed by `GetKeyVersions`.
pub fn key_item(vault: &VaultState, key_name: &str, version: &KeyVersion) -> Value {
    let mut item = json!({ "kid": kid(vault, key_name, version), "attributes": attributes(vault, version) });
    if let Some(tags) = &version.tags {
        item["tags"] = tags.clone();
    }
    item
}
