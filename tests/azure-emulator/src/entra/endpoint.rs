//! The login host: `POST /{tenant}/oauth2/v2.0/token` (client credentials with a federated client assertion) and
//! a minimal `/{tenant}/v2.0/.well-known/openid-configuration`.

use std::collections::HashMap;

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::APP_TOKEN_LIFETIME_SECS;
use super::error::EntraError;
use super::token::{Claims, Subject, TokenError, strip_default_scope};
use crate::cloud::Cloud;
use crate::http::Req;
use crate::state::Shared;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Requests for the cloud's login host.
pub async fn handle(shared: &Shared, req: Req) -> Response {
    let cloud = Cloud::service_for_host(&req.host()).map(|(cloud, _)| cloud).unwrap_or_default();
    let segments: Vec<&str> = req.url.path().trim_matches('/').split('/').collect();
    match (&req.method, segments.as_slice()) {
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            let now = shared.clock.now();
            match token(shared, cloud, tenant, &req) {
                Ok(body) => (StatusCode::OK, [("cache-control", "no-store, no-cache")], Json(body)).into_response(),
                Err(error) => {
                    tracing::info!(code = error.code, tenant, "token request refused");
                    error.response_at(now)
                }
            }
        }
        (&Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => openid_configuration(cloud, tenant),
        (_, [_, "oauth2", "v2.0", "token"]) => EntraError::bad_request(
            "invalid_request",
            900561,
            format!("The endpoint only accepts POST requests. Received a {} request.", req.method),
        )
        .response_at(shared.clock.now()),
        _ => (StatusCode::NOT_FOUND, "no such Entra endpoint in the emulator").into_response(),
    }
}

/// The client-credentials grant with a client assertion, checked in Entra's order: request shape, tenant,
/// assertion signature, directory rules (app, service principal, federated credential), assertion lifetime.
fn token(shared: &Shared, cloud: Cloud, tenant: &str, req: &Req) -> Result<serde_json::Value, EntraError> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
    let param = |name: &str| {
        form.get(name).filter(|v| !v.is_empty()).map(String::as_str).ok_or_else(|| {
            EntraError::bad_request(
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
    };
    let grant_type = param("grant_type")?;
    if grant_type != "client_credentials" {
        return Err(EntraError::bad_request(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let client_id = param("client_id")?;
    let scope = param("scope")?;
    let resource = single_default_scope(scope)?;
    if form.contains_key("client_secret") {
        return Err(EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. The emulator only knows federated client assertions.",
        ));
    }
    let assertion_type = form.get("client_assertion_type").map(String::as_str).unwrap_or_default();
    let assertion = form.get("client_assertion").map(String::as_str).unwrap_or_default();
    if assertion.is_empty() {
        return Err(EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    }
    if assertion_type != JWT_BEARER {
        return Err(EntraError::bad_request(
            "invalid_request",
            900144,
            format!(
                "The request body must contain the following parameter: 'client_assertion_type' with value '{JWT_BEARER}'."
            ),
        ));
    }
    let world = shared.world.lock().expect("world lock poisoned");
    if !world.directory.tenant_exists(tenant) {
        // Checked before the assertion because Entra resolves the tenant before anything else.
        return Err(EntraError::unknown_tenant(tenant));
    }
    let claims = shared.tokens.verify_signature(assertion).map_err(|e| invalid_assertion(&e))?;
    let sp = world.directory.federated_exchange(cloud, client_id, tenant, &claims, shared.clock.now())?;
    shared.tokens.check_lifetime(&claims).map_err(|e| invalid_assertion(&e))?;
    let now = shared.tokens.now();
    let subject = Subject { tenant_id: &sp.tenant_id, object_id: &sp.id, client_id: &sp.app_id, mi_resource_id: None };
    let access_token = shared.tokens.mint(Claims::issue(cloud, &subject, resource, now, APP_TOKEN_LIFETIME_SECS));
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": APP_TOKEN_LIFETIME_SECS,
        "ext_expires_in": APP_TOKEN_LIFETIME_SECS,
        "access_token": access_token,
    }))
}

/// Client credentials take exactly one scope, `{resource}/.default`.
fn single_default_scope(scope: &str) -> Result<&str, EntraError> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [only] = scopes.as_slice() else {
        return Err(EntraError::bad_request(
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        ));
    };
    if !only.ends_with("/.default") || only.len() == "/.default".len() {
        return Err(EntraError::bad_request(
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {only} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    Ok(strip_default_scope(only))
}

fn invalid_assertion(error: &TokenError) -> EntraError {
    match error {
        TokenError::Expired { .. } | TokenError::NotYetValid { .. } => EntraError::bad_request(
            "invalid_client",
            700024,
            format!("Client assertion is not within its valid time range. ({error})"),
        ),
        TokenError::Malformed(_) | TokenError::BadSignature => {
            EntraError::bad_request("invalid_request", 50027, format!("JWT token is invalid or malformed. ({error})"))
        }
    }
}

fn openid_configuration(cloud: Cloud, tenant: &str) -> Response {
    let login = cloud.login_host();
    Json(json!({
        "token_endpoint": format!("https://{login}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("https://{login}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": format!("https://{login}/{tenant}/v2.0"),
        "authorization_endpoint": format!("https://{login}/{tenant}/oauth2/v2.0/authorize"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": match cloud {
            Cloud::Public => "microsoftonline.com",
            Cloud::UsGovernment => "microsoftonline.us",
            Cloud::China => "partner.microsoftonline.cn",
        },
    }))
    .into_response()
}
