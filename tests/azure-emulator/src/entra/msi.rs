//! The App Service managed-identity endpoint (`GET /msi/token`, api-version 2019-08-01), which the emulated host
//! hands to the handler as `IDENTITY_ENDPOINT` with the secret `IDENTITY_HEADER`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::MI_TOKEN_LIFETIME_SECS;
use super::directory::Directory;
use super::token::{Claims, Subject, strip_default_scope};
use crate::http::Req;
use crate::state::Shared;

/// The identity a request selects, with what its token needs.
struct Selected {
    tenant_id: String,
    principal_id: String,
    client_id: String,
    resource_id: Option<String>,
}

/// `GET /msi/token?resource=…&api-version=2019-08-01[&client_id|principal_id|object_id|mi_res_id=…]`.
pub async fn msi(shared: &Shared, req: Req) -> Response {
    if req.method != axum::http::Method::GET {
        return app_service_error(StatusCode::METHOD_NOT_ALLOWED, "Only GET is supported.");
    }
    // Constant-time comparison is pointless here; the secret only guards against SSRF-style misuse.
    if req.header("x-identity-header") != Some(shared.identity_header.as_str()) {
        return app_service_error(
            StatusCode::BAD_REQUEST,
            "The X-IDENTITY-HEADER header is missing or does not match.",
        );
    }
    match req.query("api-version").as_deref() {
        Some("2019-08-01") => {}
        other => {
            return app_service_error(
                StatusCode::BAD_REQUEST,
                &format!("Unsupported api-version {other:?}; this endpoint serves 2019-08-01."),
            );
        }
    }
    let Some(resource) = req.query("resource").filter(|r| !r.is_empty()) else {
        return app_service_error(StatusCode::BAD_REQUEST, "The 'resource' query parameter is required.");
    };
    let world = shared.world.lock().expect("world lock poisoned");
    let selected = match select(&world.directory, &req) {
        Ok(selected) => selected,
        Err(message) => return app_service_error(StatusCode::BAD_REQUEST, &message),
    };
    let cloud = world.cloud;
    drop(world);
    let now = shared.tokens.now();
    let subject = Subject {
        tenant_id: &selected.tenant_id,
        object_id: &selected.principal_id,
        client_id: &selected.client_id,
        mi_resource_id: selected.resource_id.as_deref(),
    };
    let claims = Claims::issue(cloud, &subject, &resource, now, MI_TOKEN_LIFETIME_SECS);
    let expires_on = claims.exp;
    Json(json!({
        "access_token": shared.tokens.mint(claims),
        "expires_on": expires_on.to_string(),
        "resource": strip_default_scope(&resource),
        "token_type": "Bearer",
        "client_id": selected.client_id,
    }))
    .into_response()
}

/// No id: the function app's system-assigned identity. An id: one of its user-assigned identities.
fn select(directory: &Directory, req: &Req) -> Result<Selected, String> {
    let app =
        directory.function_app().ok_or("The function app has no managed identity (no functionApp in the scenario).")?;
    let by_client = req.query("client_id");
    let by_principal = req.query("principal_id").or_else(|| req.query("object_id"));
    let by_resource = req.query("mi_res_id").or_else(|| req.query("msi_res_id"));
    let identity = match (by_client, by_principal, by_resource) {
        (None, None, None) => {
            return Ok(Selected {
                tenant_id: app.tenant_id.clone(),
                principal_id: app.system_assigned.principal_id.clone(),
                client_id: app.system_assigned.client_id.clone(),
                resource_id: None,
            });
        }
        (Some(id), None, None) => directory.managed_identity_by_client_id(&id),
        (None, Some(id), None) => directory.managed_identity_by_principal_id(&id),
        (None, None, Some(id)) => directory.managed_identity_by_resource_id(&id),
        _ => return Err("Only one of client_id, principal_id and mi_res_id may be given.".to_owned()),
    };
    let attached = identity.filter(|mi| app.user_assigned.iter().any(|r| r.eq_ignore_ascii_case(&mi.resource_id)));
    let identity = attached.ok_or("Unable to load the proper Managed Identity.")?;
    Ok(Selected {
        tenant_id: identity.tenant_id.clone(),
        principal_id: identity.principal_id.clone(),
        client_id: identity.client_id.clone(),
        resource_id: Some(identity.resource_id.clone()),
    })
}

/// App Service's error shape for its identity endpoint.
pub fn app_service_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "statusCode": status.as_u16(),
        "message": message,
        "correlationId": uuid::Uuid::new_v4(),
    });
    (status, Json(body)).into_response()
}
