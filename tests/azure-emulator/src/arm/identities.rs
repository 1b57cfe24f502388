//! `Microsoft.ManagedIdentity/userAssignedIdentities`: GET and PUT (create registers the identity in the Entra
//! directory so that it can get tokens).

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::authz::Caller;
use super::errors::ArmError;
use super::ids::{IDENTITY_TYPE, ResourceId};
use super::state::IdentityResource;
use crate::http::Req;
use crate::scenario::ManagedIdentity;
use crate::state::World;

pub const API_VERSIONS: &[&str] =
    &["2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31", "2023-07-31-preview", "2024-11-30"];

/// Members a PUT body may carry; the read-only ones are ignored, as ARM does.
const PUT_MEMBERS: &[&str] = &["location", "tags", "properties", "id", "name", "type", "systemData"];

pub fn serve(
    world: &mut World,
    req: &Req,
    id: &ResourceId,
    api_version: &str,
    caller: &Caller,
) -> Result<Response, ArmError> {
    if !API_VERSIONS.contains(&api_version) {
        return Err(ArmError::invalid_api_version(api_version, IDENTITY_TYPE, API_VERSIONS));
    }
    let path = req.url.path();
    match req.method {
        Method::GET => {
            caller.authorize(&world.rbac, "Microsoft.ManagedIdentity/userAssignedIdentities/read", path)?;
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
            caller.authorize(&world.rbac, "Microsoft.ManagedIdentity/userAssignedIdentities/write", path)?;
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
    let object = body.as_object().ok_or_else(|| ArmError::invalid_request_content("the body is not a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !PUT_MEMBERS.contains(&k.as_str())) {
        return Err(ArmError::invalid_request_content(&format!(
            "Could not find member '{unknown}' on object of type 'Identity'. Path '{unknown}'"
        )));
    }
    let location = object
        .get("location")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ArmError::bad_request("LocationRequired", "The location property is required for this definition.")
        })?
        .to_owned();
    let tags = match object.get("tags") {
        None | Some(Value::Null) => json!({}),
        Some(tags @ Value::Object(map)) if map.values().all(Value::is_string) => tags.clone(),
        Some(_) => {
            return Err(ArmError::invalid_request_content(
                "Error converting value to type 'Dictionary<string, string>'. Path 'tags'",
            ));
        }
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
