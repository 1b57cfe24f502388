//! `Microsoft.ManagedIdentity/userAssignedIdentities`: GET and PUT (create registers the identity in the Entra
//! directory so that it can get tokens).

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::ArmError;
use super::ids::{IDENTITY_TYPE, ResourceId};
use super::state::IdentityResource;
use crate::http::Req;
use crate::openapi;
use crate::scenario::ManagedIdentity;
use crate::state::World;

/// A read-only member in a PUT: the code the emulator uses for every body the RP cannot take (the real RP's answer
/// is not documented; see the emulator README's Known differences).
fn read_only(name: &str) -> ArmError {
    ArmError::bad_request("InvalidRequestContent", format!("The property '{name}' is read-only and cannot be set."))
}

pub fn serve(
    world: &mut World,
    req: &Req,
    id: &ResourceId,
    api_version: &str,
    caller: &str,
) -> Result<Response, ArmError> {
    let served = openapi::MANAGED_IDENTITY.api_version();
    if api_version != served {
        return Err(ArmError::invalid_api_version(api_version, "userAssignedIdentities", &[served]));
    }
    let path = req.url.path();
    match req.method {
        Method::GET => {
            world.arm.authorize(caller, "Microsoft.ManagedIdentity/userAssignedIdentities/read", path)?;
            if !world.arm.group_exists(id) {
                return Err(ArmError::resource_group_not_found(&id.group));
            }
            let identity = world
                .arm
                .identities
                .get(&id.key())
                .ok_or_else(|| ArmError::resource_not_found(IDENTITY_TYPE, &id.name, &id.group))?;
            Ok(Json(identity.to_arm()).into_response())
        }
        Method::PUT => {
            world.arm.authorize(caller, "Microsoft.ManagedIdentity/userAssignedIdentities/write", path)?;
            if !world.arm.group_exists(id) {
                return Err(ArmError::resource_group_not_found(&id.group));
            }
            put(world, req, id)
        }
        _ => Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested method '{}' is not allowed on this resource.", req.method),
        )),
    }
}

fn put(world: &mut World, req: &Req, id: &ResourceId) -> Result<Response, ArmError> {
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|e| ArmError::invalid_request_content(&e.to_string()))?;
    // ARM itself insists on a location for a tracked resource, before the RP reads the body.
    if body.get("location").and_then(Value::as_str).is_none() {
        return Err(ArmError::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    let body = openapi::MANAGED_IDENTITY
        .request_body("UserAssignedIdentities_CreateOrUpdate")
        .check_request(&body)
        .map_err(|violations| ArmError::request_violation(&violations[0], read_only))?;
    let location = body["location"].as_str().unwrap_or_default().to_owned();
    let tags = match body.get("tags") {
        None | Some(Value::Null) => json!({}),
        Some(tags) => tags.clone(),
    };
    let key = id.key();
    if let Some(existing) = world.arm.identities.get_mut(&key) {
        if !existing.location.eq_ignore_ascii_case(&location) {
            return Err(ArmError::bad_request(
                "InvalidResourceLocation",
                format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name.",
                    id.name, existing.location, id.group
                ),
            ));
        }
        existing.tags = tags;
        return Ok((StatusCode::OK, Json(existing.to_arm())).into_response());
    }
    let tenant_id = world.arm.subscription(&id.subscription).map(|s| s.tenant_id.clone()).unwrap_or_default();
    let identity = IdentityResource {
        id: ResourceId {
            namespace: "Microsoft.ManagedIdentity".into(),
            resource_type: "userAssignedIdentities".into(),
            ..id.clone()
        },
        location: location.clone(),
        tags,
        client_id: uuid::Uuid::new_v4().to_string(),
        principal_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.clone(),
    };
    world.directory.add_managed_identity(ManagedIdentity {
        resource_id: identity.id.canonical(IDENTITY_TYPE),
        client_id: identity.client_id.clone(),
        principal_id: identity.principal_id.clone(),
        tenant_id,
        location,
    });
    let body = identity.to_arm();
    world.arm.identities.insert(key, identity);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
