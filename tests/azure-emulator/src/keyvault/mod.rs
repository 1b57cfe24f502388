//! Key Vault and Managed HSM data plane (keys, the api-version of `specs/azure`'s `keys.json`): bearer challenge, tenant and audience checks,
//! RBAC, key get/list/create/update and real RSA wrap/unwrap. Also the key checks Storage's RP does for CMK.

mod crypto;
mod ops;
pub mod rbac;
mod responses;
mod storage_access;
mod store;

use axum::http::{Method, StatusCode};
use axum::response::Response;

pub use storage_access::{KeyVersionInfo, StorageKeyError};
pub use store::{KeyState, KeyVersion, VaultState, Vaults, deterministic_version};

use crate::cloud::Cloud;
use crate::entra::{Claims, audience_matches};
use crate::http::Req;
use crate::state::Shared;

/// The resource (token audience) of a vault in `cloud`.
pub fn resource(cloud: Cloud, managed_hsm: bool) -> String {
    let suffix = if managed_hsm { cloud.managed_hsm_suffix() } else { cloud.vault_suffix() };
    format!("https://{suffix}")
}

pub async fn handle(shared: &Shared, req: Req) -> Response {
    let host = req.host();
    let (cloud, tenant, managed_hsm) = {
        let world = shared.world.lock().expect("world lock poisoned");
        match world.vaults.by_host(&host) {
            Some(vault) => (world.vaults.cloud, vault.tenant_id.clone(), vault.managed_hsm),
            // A vault that does not exist has no DNS record: the client cannot even connect.
            None => return crate::faults::reset_response(),
        }
    };
    let resource = resource(cloud, managed_hsm);
    let claims = match authenticate(shared, &req, cloud, &tenant, &resource) {
        Ok(claims) => claims,
        Err(response) => return *response,
    };
    match req.query("api-version") {
        None => return responses::bad_parameter("The api-version query parameter is missing."),
        // Only the api-version of the embedded spec (`openapi::KEY_VAULT_KEYS`); Key Vault's wording for others as in
        // Azure/azure-sdk-for-python#28595.
        Some(version) if version != crate::openapi::KEY_VAULT_KEYS.api_version() => {
            return responses::bad_parameter(&format!(
                "The specified version ({version}) is not recognized. Consider using the latest supported version ({}).",
                crate::openapi::KEY_VAULT_KEYS.api_version()
            ));
        }
        Some(_) => {}
    }
    let segments: Vec<String> = req.url.path().trim_start_matches('/').split('/').map(str::to_owned).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let call = ops::Call { shared, host: &host, principal: &claims.oid, body: &req.body };
    match (&req.method, segments.as_slice()) {
        (&Method::GET, ["keys", name] | ["keys", name, ""]) => ops::get_key(&call, name, None).await,
        (&Method::GET, ["keys", name, "versions"]) => ops::list_versions(&call, name, &req).await,
        (&Method::GET, ["keys", name, version]) => ops::get_key(&call, name, Some(version)).await,
        (&Method::POST, ["keys", name, "create"]) => ops::create_key(&call, name).await,
        (&Method::PATCH, ["keys", name] | ["keys", name, ""]) => ops::update_key(&call, name, None).await,
        (&Method::PATCH, ["keys", name, version]) => ops::update_key(&call, name, Some(version)).await,
        (&Method::POST, ["keys", name, version, op]) if op.eq_ignore_ascii_case("wrapkey") => {
            ops::wrap(&call, name, version, true).await
        }
        (&Method::POST, ["keys", name, version, op]) if op.eq_ignore_ascii_case("unwrapkey") => {
            ops::wrap(&call, name, version, false).await
        }
        _ => responses::error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("The emulator does not serve {} {}", req.method, req.url.path()),
            None,
        ),
    }
}

/// Bearer present, signed by this emulator, alive, meant for this vault's resource and issued by its tenant.
fn authenticate(
    shared: &Shared,
    req: &Req,
    cloud: Cloud,
    tenant: &str,
    resource: &str,
) -> Result<Claims, responses::Failure> {
    let login = cloud.login_host();
    let refuse = |message: &str| Box::new(responses::unauthorized(message, login, tenant, resource));
    let Some(token) = req.bearer() else {
        return Err(refuse("Request is missing a Bearer or PoP token."));
    };
    let claims =
        shared.tokens.verify(token).map_err(|e| refuse(&format!("AKV10000: Request is unauthorized: {e}.")))?;
    if !audience_matches(&claims.aud, resource) {
        return Err(refuse(&format!("AKV10022: Invalid audience. Expected {resource}, found: {}.", claims.aud)));
    }
    if !claims.tid.eq_ignore_ascii_case(tenant) {
        return Err(refuse(&format!(
            "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found {}.",
            claims.iss
        )));
    }
    Ok(claims)
}
