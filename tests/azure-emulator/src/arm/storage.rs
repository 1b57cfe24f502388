//! `Microsoft.Storage/storageAccounts` GET and PATCH (`StorageAccounts_Update`, synchronous): identity and
//! encryption merge rules, and the account as ARM shows it.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::authz::Caller;
use super::cmk;
use super::errors::ArmError;
use super::ids::{IDENTITY_TYPE, ResourceId, STORAGE_TYPE};
use super::state::{ArmState, Creation, StorageAccountState};
use crate::cloud::Cloud;
use crate::http::Req;
use crate::openapi;
use crate::rbac::Rbac;
use crate::scenario::StorageAccount;
use crate::state::World;

/// The Storage RP's code for a member a request may not set ("The property 'isHnsEnabled' was specified in the input,
/// but it cannot be updated.", seen in jenkins-infra/azure#125); used here for the spec's read-only members.
fn cannot_be_updated(name: &str) -> ArmError {
    ArmError::bad_request(
        "AccountPropertyCannotBeUpdated",
        format!("The property '{name}' was specified in the input, but it cannot be updated."),
    )
}

/// .NET's round-trip timestamp format, which the Storage RP uses (`2019-12-13T20:36:23.7023290Z`).
pub fn dotnet_time(at: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

fn invalid_value(message: impl Into<String>) -> ArmError {
    ArmError::bad_request("InvalidRequestPropertyValue", message)
}

pub fn serve(
    world: &mut World,
    req: &Req,
    id: &ResourceId,
    api_version: &str,
    caller: &Caller,
) -> Result<Response, ArmError> {
    let served = openapi::STORAGE.api_version();
    if api_version != served {
        return Err(ArmError::invalid_api_version(api_version, "storageAccounts", &[served]));
    }
    let path = req.url.path();
    let action = match req.method {
        Method::GET => "Microsoft.Storage/storageAccounts/read",
        // Creating an account and updating one are the same action (`StorageAccounts_Create` is a PUT).
        Method::PATCH | Method::PUT => "Microsoft.Storage/storageAccounts/write",
        _ => {
            return Err(ArmError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("The emulator serves GET, PUT and PATCH on storage accounts, not {}.", req.method),
            ));
        }
    };
    caller.authorize(&world.rbac, action, path)?;
    if !world.arm.group_exists(id) {
        return Err(ArmError::resource_group_not_found(&id.group));
    }
    world.arm.finish_creations(caller.now);
    if req.method == Method::PUT {
        return create(world, req, id, caller);
    }
    let account = world
        .arm
        .storage
        .get(&id.key())
        .ok_or_else(|| ArmError::resource_not_found(STORAGE_TYPE, &id.name, &id.group))?
        .clone();
    if req.method == Method::GET {
        return Ok(Json(account.to_arm(&world.arm)).into_response());
    }
    if account.creating_until.is_some() {
        return Err(operation_in_progress(&id.name));
    }
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|e| ArmError::invalid_request_content(&e.to_string()))?;
    // Read as the RP reads it: against `StorageAccountUpdateParameters`, names and enum values in the spec's spelling.
    let body = openapi::STORAGE
        .request_body("StorageAccounts_Update")
        .check_request(&body)
        .map_err(|violations| ArmError::request_violation(&violations[0], cannot_be_updated))?;
    let updated = patch(world, account, &body, caller, path)?;
    note_key_check(world, id, &body, &updated, caller.now);
    let response = updated.to_arm(&world.arm);
    world.arm.storage.insert(id.key(), updated);
    Ok(Json(response).into_response())
}

/// A write that sent `encryption` (PATCH, or the PUT of a creation or update) has just made the RP read the key: its
/// daily check for a new version counts from `now`, or stops when the account no longer uses a vault.
fn note_key_check(
    world: &mut World,
    id: &ResourceId,
    body: &Value,
    account: &StorageAccountState,
    now: time::OffsetDateTime,
) {
    if body.pointer("/properties/encryption").is_some_and(|e| !e.is_null()) {
        match cmk::uses_vault(account) {
            true => world.arm.key_checked_at.insert(id.key(), now),
            false => world.arm.key_checked_at.remove(&id.key()),
        };
    }
}

/// 409 for a write while the account is still being created (the code is the one Storage gives concurrent writes,
/// reference `cross-tenant-cmk.md` step 12).
fn operation_in_progress(name: &str) -> ArmError {
    ArmError::new(
        StatusCode::CONFLICT,
        "StorageAccountOperationInProgress",
        format!(
            "An operation is currently performing on this storage account '{name}' that requires exclusive access."
        ),
    )
}

/// The longest `Retry-After` the emulator sends while an account is created: the value in the example of
/// Microsoft's "Track asynchronous Azure operations" ("Create storage account (202 with location and Retry-After)").
pub const CREATE_RETRY_AFTER_SECONDS: i64 = 17;

/// `StorageAccounts_Create`: a PUT of `StorageAccountCreateParameters`. A new account is checked like a PATCH (the
/// same identity rules, and the same key check through the federated identity) before it is accepted, then answers
/// 202 with `Location` and `Retry-After`, shows `provisioningState: Creating` until the creation time (emulator clock)
/// has passed, and `Succeeded` after. A PUT on an existing account updates it (the spec: "If an account is already
/// created and a subsequent create request is issued with different properties, the account properties will be
/// updated"), synchronously, 200; its location cannot change.
fn create(world: &mut World, req: &Req, id: &ResourceId, caller: &Caller) -> Result<Response, ArmError> {
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|e| ArmError::invalid_request_content(&e.to_string()))?;
    let body = openapi::STORAGE
        .request_body("StorageAccounts_Create")
        .check_request(&body)
        .map_err(|violations| ArmError::request_violation(&violations[0], cannot_be_updated))?;
    let path = req.url.path();
    let location = normalise_location(body.get("location").and_then(Value::as_str).unwrap_or_default());
    if let Some(existing) = world.arm.storage.get(&id.key()).cloned() {
        if existing.creating_until.is_some() {
            return Err(operation_in_progress(&id.name));
        }
        if normalise_location(&existing.location) != location {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "InvalidResourceLocation",
                format!(
                    "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{location}'. Please select a new resource name.",
                    id.name, existing.location, id.group
                ),
            ));
        }
        let updated = patch(world, existing, &body, caller, path)?;
        note_key_check(world, id, &body, &updated, caller.now);
        let response = updated.to_arm(&world.arm);
        world.arm.storage.insert(id.key(), updated);
        return Ok(Json(response).into_response());
    }
    name_available(world, id)?;
    location_available(world.cloud, &location)?;
    let text = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let fresh = StorageAccount {
        id: id.canonical(STORAGE_TYPE),
        location,
        kind: text("kind"),
        sku: body.pointer("/sku/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        identity: None,
        encryption: None,
        tags: BTreeMap::new(),
    };
    let mut account =
        StorageAccountState::from_scenario(&fresh, &world.arm).map_err(|e| ArmError::invalid_request_content(&e))?;
    account.creation_time = dotnet_time(caller.now);
    // Infrastructure encryption is chosen at creation only (what `merge_encryption` refuses to change later).
    if let Some(infrastructure) =
        body.pointer("/properties/encryption/requireInfrastructureEncryption").and_then(Value::as_bool)
    {
        account.encryption["requireInfrastructureEncryption"] = json!(infrastructure);
    }
    let mut account = patch(world, account, &body, caller, path)?;
    note_key_check(world, id, &body, &account, caller.now);
    let done_at = caller.now + world.arm.creation_time;
    account.creating_until = Some(done_at);
    let operation = uuid::Uuid::new_v4().simple().to_string();
    world
        .arm
        .creations
        .insert(operation.clone(), Creation { subscription: id.subscription.clone(), account: id.key(), done_at });
    world.arm.storage.insert(id.key(), account);
    Ok(accepted(world.cloud, &id.subscription, &operation, done_at - caller.now))
}

/// 202 with the operation's `Location` and a `Retry-After` of the time left (1 to 17 seconds).
fn accepted(cloud: Cloud, subscription: &str, operation: &str, left: time::Duration) -> Response {
    let location = format!(
        "https://{}/subscriptions/{subscription}/providers/Microsoft.Storage/operations/{operation}?monitor=true&api-version={}",
        cloud.arm_host(),
        openapi::STORAGE.api_version()
    );
    let seconds = (left.whole_milliseconds() + 999).div_euclid(1000);
    let retry_after = i64::try_from(seconds).unwrap_or(i64::MAX).clamp(1, CREATE_RETRY_AFTER_SECONDS);
    (StatusCode::ACCEPTED, [("Location", location), ("Retry-After", retry_after.to_string())]).into_response()
}

/// The `Location` of a creation: 202 (same headers) until it is done, then 200 with the account. Tracking an
/// operation needs permission at the resource group (Microsoft's "Track asynchronous Azure operations": "the URL to
/// track the status isn't scoped to the resource"); which action ARM checks is not documented, so the emulator asks
/// for `storageAccounts/read` there (README, known differences).
pub fn operation(
    world: &mut World,
    subscription: &str,
    operation_id: &str,
    api_version: &str,
    caller: &Caller,
) -> Result<Response, ArmError> {
    let served = openapi::STORAGE.api_version();
    if api_version != served {
        return Err(ArmError::invalid_api_version(api_version, "operations", &[served]));
    }
    let not_found = || {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The operation '{operation_id}' under subscription '{subscription}' was not found."),
        )
    };
    let creation = world
        .arm
        .creations
        .get(operation_id)
        .filter(|c| c.subscription.eq_ignore_ascii_case(subscription))
        .cloned()
        .ok_or_else(not_found)?;
    let group_scope = {
        let account = world.arm.storage.get(&creation.account).ok_or_else(not_found)?;
        format!("/subscriptions/{}/resourceGroups/{}", account.id.subscription, account.id.group)
    };
    caller.authorize(&world.rbac, "Microsoft.Storage/storageAccounts/read", &group_scope)?;
    world.arm.finish_creations(caller.now);
    if caller.now < creation.done_at {
        return Ok(accepted(world.cloud, subscription, operation_id, creation.done_at - caller.now));
    }
    let account = world.arm.storage.get(&creation.account).ok_or_else(not_found)?;
    Ok(Json(account.to_arm(&world.arm)).into_response())
}

/// Storage account names are global: 3–24 lowercase letters and digits, and not held by any other account.
fn name_available(world: &World, id: &ResourceId) -> Result<(), ArmError> {
    let name = &id.name;
    if !(3..=24).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(ArmError::bad_request(
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        ));
    }
    let taken = || {
        ArmError::new(
            StatusCode::CONFLICT,
            "StorageAccountAlreadyTaken",
            format!("The storage account named {name} is already taken."),
        )
    };
    if world.arm.taken_names.contains(name) {
        return Err(taken());
    }
    match world.arm.storage.values().find(|a| a.id.name.eq_ignore_ascii_case(name)) {
        Some(other) if other.id.subscription.eq_ignore_ascii_case(&id.subscription) => Err(ArmError::new(
            StatusCode::CONFLICT,
            "StorageAccountAlreadyExists",
            format!("The storage account named {name} already exists under the subscription."),
        )),
        Some(_) => Err(taken()),
        None => Ok(()),
    }
}

/// ARM takes a region's programmatic name or its display name (`West Europe`): compared without case and spaces.
fn normalise_location(location: &str) -> String {
    location.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase()
}

/// Regions where storage accounts can be created, per cloud (programmatic names, `az account list-locations`).
fn location_available(cloud: Cloud, location: &str) -> Result<(), ArmError> {
    const PUBLIC: &[&str] = &[
        "eastus",
        "eastus2",
        "westus",
        "westus2",
        "westus3",
        "centralus",
        "northcentralus",
        "southcentralus",
        "westcentralus",
        "canadacentral",
        "canadaeast",
        "brazilsouth",
        "mexicocentral",
        "northeurope",
        "westeurope",
        "uksouth",
        "ukwest",
        "francecentral",
        "francesouth",
        "germanywestcentral",
        "germanynorth",
        "switzerlandnorth",
        "switzerlandwest",
        "norwayeast",
        "norwaywest",
        "swedencentral",
        "polandcentral",
        "italynorth",
        "spaincentral",
        "eastasia",
        "southeastasia",
        "japaneast",
        "japanwest",
        "koreacentral",
        "koreasouth",
        "australiaeast",
        "australiasoutheast",
        "australiacentral",
        "australiacentral2",
        "centralindia",
        "southindia",
        "westindia",
        "uaenorth",
        "uaecentral",
        "southafricanorth",
        "southafricawest",
        "qatarcentral",
        "israelcentral",
        "newzealandnorth",
    ];
    const US_GOVERNMENT: &[&str] = &["usgovvirginia", "usgovarizona", "usgovtexas", "usdodeast", "usdodcentral"];
    const CHINA: &[&str] = &["chinaeast", "chinaeast2", "chinaeast3", "chinanorth", "chinanorth2", "chinanorth3"];
    let regions = match cloud {
        Cloud::Public => PUBLIC,
        Cloud::UsGovernment => US_GOVERNMENT,
        Cloud::China => CHINA,
    };
    if regions.contains(&location) {
        return Ok(());
    }
    Err(ArmError::bad_request(
        "LocationNotAvailableForResourceType",
        format!(
            "The provided location '{location}' is not available for resource type 'Microsoft.Storage/storageAccounts'. List of available regions for the resource type is '{}'.",
            regions.join(",")
        ),
    ))
}

/// Accounts per page of a list. The Storage RP's page size is not documented; ours is small enough that a
/// thousand accounts take ten pages, so paging is exercised.
pub const LIST_PAGE_SIZE: usize = 100;

/// `StorageAccounts_List` / `StorageAccounts_ListByResourceGroup`: `{value, nextLink}` pages in a stable order,
/// `nextLink` the same URL with `$skipToken` (an offset here; opaque to clients). Authorized at the listed scope, as
/// ARM authorizes the request's scope.
pub fn list(
    world: &World,
    req: &Req,
    subscription: &str,
    group: Option<&str>,
    api_version: &str,
    caller: &Caller,
) -> Result<Response, ArmError> {
    let served = openapi::STORAGE.api_version();
    if api_version != served {
        return Err(ArmError::invalid_api_version(api_version, "storageAccounts", &[served]));
    }
    if req.method != Method::GET {
        return Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The emulator serves GET on a list of storage accounts, not {}.", req.method),
        ));
    }
    caller.authorize(&world.rbac, "Microsoft.Storage/storageAccounts/read", req.url.path())?;
    if let Some(group) = group {
        let probe = ResourceId {
            subscription: subscription.to_owned(),
            group: group.to_owned(),
            namespace: String::new(),
            resource_type: String::new(),
            name: String::new(),
        };
        if !world.arm.group_exists(&probe) {
            return Err(ArmError::resource_group_not_found(group));
        }
    }
    let skip = match req.query("$skipToken") {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| {
            ArmError::bad_request("InvalidSkipToken", format!("The skip token '{token}' is not valid."))
        })?,
    };
    let accounts: Vec<&StorageAccountState> = world
        .arm
        .storage
        .values()
        .filter(|a| a.id.subscription.eq_ignore_ascii_case(subscription))
        .filter(|a| group.is_none_or(|g| a.id.group.eq_ignore_ascii_case(g)))
        .collect();
    let page: Vec<Value> = accounts.iter().skip(skip).take(LIST_PAGE_SIZE).map(|a| a.to_arm(&world.arm)).collect();
    let mut body = json!({ "value": page });
    if skip + LIST_PAGE_SIZE < accounts.len() {
        let mut next = req.url.clone();
        next.set_query(None);
        next.query_pairs_mut()
            .append_pair("api-version", api_version)
            .append_pair("$skipToken", &(skip + LIST_PAGE_SIZE).to_string());
        body["nextLink"] = json!(next.to_string());
    }
    Ok(Json(body).into_response())
}

/// Applies a PATCH body to a copy of the account; the caller stores it only if every check passed.
fn patch(
    world: &World,
    mut account: StorageAccountState,
    body: &Value,
    caller: &Caller,
    scope: &str,
) -> Result<StorageAccountState, ArmError> {
    let now = caller.now;
    let members = |v: &Value, name: &str| v.get(name).filter(|m| !m.is_null()).cloned();
    if let Some(identity) = members(body, "identity") {
        merge_identity(&world.arm, &world.rbac, &mut account, &identity, caller, scope)?;
    }
    if let Some(tags) = members(body, "tags") {
        account.tags = tags;
    }
    if let Some(sku) = members(body, "sku").and_then(|s| s.get("name").and_then(Value::as_str).map(str::to_owned)) {
        account.sku = sku;
    }
    if let Some(kind) = members(body, "kind").and_then(|k| k.as_str().map(str::to_owned)) {
        account.kind = kind;
    }
    let properties = members(body, "properties").unwrap_or_else(|| json!({}));
    let encryption = members(&properties, "encryption");
    if let Some(properties) = properties.as_object() {
        for (key, value) in properties {
            if key != "encryption" && !value.is_null() {
                account.extra.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(encryption) = &encryption {
        merge_encryption(&mut account, encryption, now)?;
    }
    let uses_vault = cmk::uses_vault(&account);
    if uses_vault && (encryption.is_some() || body.get("identity").is_some()) {
        cmk::require_prerequisites(&account)?;
    }
    if uses_vault && encryption.is_some() {
        let key = cmk::check_key_access(world, &account, now)?;
        cmk::record_key(&mut account, &key, now);
    }
    Ok(account)
}

fn merge_identity(
    arm: &ArmState,
    rbac: &Rbac,
    account: &mut StorageAccountState,
    identity: &Value,
    caller: &Caller,
    scope: &str,
) -> Result<(), ArmError> {
    let kind = identity.get("type").and_then(Value::as_str).ok_or_else(|| {
        ArmError::invalid_request_content("Required property 'type' not found in JSON. Path 'identity'")
    })?;
    let normalised: String = kind.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let (system, user) = match normalised.as_str() {
        "none" => (false, false),
        "systemassigned" => (true, false),
        "userassigned" => (false, true),
        "systemassigned,userassigned" => (true, true),
        _ => {
            return Err(invalid_value(format!(
                "The value '{kind}' of identity.type is invalid. Allowed values are 'None', 'SystemAssigned', 'UserAssigned', 'SystemAssigned,UserAssigned'."
            )));
        }
    };
    let requested = identity.get("userAssignedIdentities").and_then(Value::as_object).cloned().unwrap_or_default();
    if !user && requested.values().any(|v| !v.is_null()) {
        return Err(invalid_value(format!(
            "userAssignedIdentities can only be set when identity.type includes UserAssigned (it is '{kind}')."
        )));
    }
    account.system_identity = if system {
        account.system_identity.take().or_else(|| {
            let principal = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, account.id.key().as_bytes()).to_string();
            let tenant = arm.subscription(&account.id.subscription).map(|s| s.tenant_id.clone()).unwrap_or_default();
            Some((principal, tenant))
        })
    } else {
        None
    };
    if user {
        for (raw_id, value) in &requested {
            let key = raw_id.to_ascii_lowercase();
            if value.is_null() {
                account.user_identities.remove(&key);
                continue;
            }
            let parsed = ResourceId::parse(raw_id)
                .filter(|id| id.is_type(IDENTITY_TYPE))
                .ok_or_else(|| ArmError::linked_invalid_property_id(raw_id, "identity.userAssignedIdentities"))?;
            if !arm.identities.contains_key(&parsed.key()) {
                return Err(ArmError::bad_request(
                    "FailedIdentityOperation",
                    format!(
                        "Identity operation for resource '{}' failed with error 'Failed to perform resource identity operation. Status: 'BadRequest'. Response: '{{\"error\":{{\"code\":\"BadRequest\",\"message\":\"Resource '{raw_id}' was not found.\"}}}}'.'.",
                        account.id.canonical(STORAGE_TYPE)
                    ),
                ));
            }
            caller.authorize_linked(
                rbac,
                ("Microsoft.Storage/storageAccounts/write", scope),
                ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", raw_id),
            )?;
            account.user_identities.insert(key, raw_id.clone());
        }
        if account.user_identities.is_empty() {
            return Err(invalid_value("identity.type includes UserAssigned but no userAssignedIdentities remain."));
        }
    } else {
        account.user_identities.clear();
    }
    account.identity_declared = true;
    Ok(())
}

fn merge_encryption(account: &mut StorageAccountState, body: &Value, now: OffsetDateTime) -> Result<(), ArmError> {
    let mut encryption = account.encryption.as_object().cloned().unwrap_or_default();
    if let Some(source) = body.get("keySource").and_then(Value::as_str) {
        let canonical = match source.to_ascii_lowercase().as_str() {
            "microsoft.storage" => "Microsoft.Storage",
            "microsoft.keyvault" => "Microsoft.Keyvault",
            _ => {
                return Err(invalid_value(format!(
                    "The value '{source}' of encryption.keySource is invalid. Allowed values are 'Microsoft.Storage', 'Microsoft.Keyvault'."
                )));
            }
        };
        encryption.insert("keySource".into(), json!(canonical));
    }
    if let Some(services) = body.get("services").and_then(Value::as_object) {
        let mut merged = encryption.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
        for (name, service) in services.iter().filter(|(_, s)| !s.is_null()) {
            let mut entry = merged.get(name).and_then(Value::as_object).cloned().unwrap_or_default();
            if let Some(enabled) = service.get("enabled").and_then(Value::as_bool) {
                entry.insert("enabled".into(), json!(enabled));
            }
            let current_type = entry.get("keyType").and_then(Value::as_str).map(str::to_owned);
            if let Some(key_type) = service.get("keyType").and_then(Value::as_str) {
                // Queue and table key types are fixed at creation (x-ms-mutability create/read).
                let fixed = matches!(name.as_str(), "queue" | "table");
                if fixed && current_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case(key_type)) {
                    return Err(invalid_value(format!(
                        "encryption.services.{name}.keyType cannot be changed after creation."
                    )));
                }
                entry.insert("keyType".into(), json!(key_type));
            }
            entry.entry("keyType").or_insert_with(|| json!("Account"));
            entry.entry("enabled").or_insert_with(|| json!(true));
            entry.entry("lastEnabledTime").or_insert_with(|| json!(dotnet_time(now)));
            merged.insert(name.clone(), Value::Object(entry));
        }
        encryption.insert("services".into(), Value::Object(merged));
    }
    if let Some(infrastructure) = body.get("requireInfrastructureEncryption").and_then(Value::as_bool) {
        let current = encryption.get("requireInfrastructureEncryption").and_then(Value::as_bool).unwrap_or(false);
        if infrastructure != current {
            return Err(invalid_value("requireInfrastructureEncryption can only be set when the account is created."));
        }
    }
    if let Some(properties) = body.get("keyvaultproperties").filter(|v| !v.is_null()) {
        let previous = encryption.get("keyvaultproperties").cloned().unwrap_or_else(|| json!({}));
        let field = |name: &str| properties.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut sent = Map::new();
        sent.insert("keyvaulturi".into(), json!(field("keyvaulturi").unwrap_or_default()));
        sent.insert("keyname".into(), json!(field("keyname").unwrap_or_default()));
        sent.insert("keyversion".into(), json!(field("keyversion").unwrap_or_default()));
        // Keep what Storage recorded about the key it used last; `record_key` refreshes it after the checks.
        for kept in
            ["currentVersionedKeyIdentifier", "lastKeyRotationTimestamp", "currentVersionedKeyExpirationTimestamp"]
        {
            if let Some(value) = previous.get(kept) {
                sent.insert(kept.into(), value.clone());
            }
        }
        encryption.insert("keyvaultproperties".into(), Value::Object(sent));
    }
    if let Some(identity) = body.get("identity").and_then(Value::as_object) {
        let mut merged = encryption.get("identity").and_then(Value::as_object).cloned().unwrap_or_default();
        for (key, value) in identity {
            if value.is_null() {
                merged.remove(key);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        encryption.insert("identity".into(), Value::Object(merged));
    }
    if encryption.get("keySource").and_then(Value::as_str) != Some("Microsoft.Keyvault") {
        // Back to Microsoft-managed keys: the vault reference goes, the encryption identity stays (as the RP does).
        encryption.remove("keyvaultproperties");
    }
    account.encryption = Value::Object(encryption);
    Ok(())
}

impl StorageAccountState {
    pub fn from_scenario(account: &StorageAccount, arm: &ArmState) -> Result<Self, String> {
        let id = ResourceId::parse(&account.id)
            .filter(|id| id.is_type(STORAGE_TYPE))
            .ok_or_else(|| format!("storage account id {:?} is not a storage account id", account.id))?;
        let created = dotnet_time(OffsetDateTime::now_utc());
        let mut state = Self {
            id,
            location: account.location.clone(),
            kind: account.kind.clone(),
            sku: account.sku.clone(),
            tags: serde_json::to_value(&account.tags).unwrap_or_else(|_| json!({})),
            system_identity: None,
            user_identities: BTreeMap::new(),
            identity_declared: false,
            encryption: json!({
                "services": {
                    "blob": { "keyType": "Account", "enabled": true, "lastEnabledTime": created },
                    "file": { "keyType": "Account", "enabled": true, "lastEnabledTime": created },
                },
                "keySource": "Microsoft.Storage",
                "requireInfrastructureEncryption": false,
            }),
            extra: Map::new(),
            creation_time: created,
            creating_until: None,
        };
        if let Some(identity) = &account.identity {
            state.identity_declared = true;
            let kind = identity.get("type").and_then(Value::as_str).unwrap_or("None").to_ascii_lowercase();
            if kind.contains("systemassigned") {
                let principal = identity.get("principalId").and_then(Value::as_str).map(str::to_owned);
                let principal = principal.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let tenant = identity.get("tenantId").and_then(Value::as_str).map(str::to_owned);
                let tenant = tenant
                    .or_else(|| arm.subscription(&state.id.subscription).map(|s| s.tenant_id.clone()))
                    .unwrap_or_default();
                state.system_identity = Some((principal, tenant));
            }
            if let Some(users) = identity.get("userAssignedIdentities").and_then(Value::as_object) {
                for raw in users.keys() {
                    state.user_identities.insert(raw.to_ascii_lowercase(), raw.clone());
                }
            }
        }
        if let Some(encryption) = &account.encryption {
            let mut merged = state.encryption.as_object().cloned().unwrap_or_default();
            for (key, value) in encryption.as_object().ok_or("storage account encryption must be an object")? {
                merged.insert(key.clone(), value.clone());
            }
            state.encryption = Value::Object(merged);
        }
        Ok(state)
    }

    fn identity_to_arm(&self, arm: &ArmState) -> Option<Value> {
        if !self.identity_declared {
            return None;
        }
        let kind = match (self.system_identity.is_some(), !self.user_identities.is_empty()) {
            (false, false) => "None",
            (true, false) => "SystemAssigned",
            (false, true) => "UserAssigned",
            (true, true) => "SystemAssigned,UserAssigned",
        };
        let mut identity = json!({ "type": kind });
        if let Some((principal, tenant)) = &self.system_identity {
            identity["principalId"] = json!(principal);
            identity["tenantId"] = json!(tenant);
        }
        if !self.user_identities.is_empty() {
            let users: Map<String, Value> = self
                .user_identities
                .values()
                .map(|raw| {
                    let details = arm
                        .identity(raw)
                        .map(|mi| json!({ "principalId": mi.principal_id, "clientId": mi.client_id }))
                        .unwrap_or_else(|| json!({}));
                    (raw.clone(), details)
                })
                .collect();
            identity["userAssignedIdentities"] = Value::Object(users);
        }
        Some(identity)
    }

    /// The account as `StorageAccounts_GetProperties` (and the PATCH response) show it.
    pub fn to_arm(&self, arm: &ArmState) -> Value {
        let suffix = match arm.cloud {
            Cloud::Public => "core.windows.net",
            Cloud::UsGovernment => "core.usgovcloudapi.net",
            Cloud::China => "core.chinacloudapi.cn",
        };
        let name = &self.id.name;
        let endpoint = |service: &str| format!("https://{name}.{service}.{suffix}/");
        let mut encryption = self.encryption.clone();
        // The RP prints the encryption identity with `resourcegroups` lower-cased.
        let uami = encryption.pointer("/identity/userAssignedIdentity").and_then(Value::as_str);
        if let Some(parsed) = uami.and_then(ResourceId::parse) {
            encryption["identity"]["userAssignedIdentity"] = json!(parsed.lowercase_groups(IDENTITY_TYPE));
        }
        let mut properties = json!({
            "privateEndpointConnections": [],
            "networkAcls": {
                "bypass": "AzureServices", "virtualNetworkRules": [], "ipRules": [], "resourceAccessRules": [],
                "defaultAction": "Allow",
            },
            "supportsHttpsTrafficOnly": true,
            "encryption": encryption,
            "accessTier": "Hot",
            "provisioningState": if self.creating_until.is_some() { "Creating" } else { "Succeeded" },
            "creationTime": self.creation_time,
            "primaryEndpoints": {
                "web": endpoint("web"), "dfs": endpoint("dfs"), "blob": endpoint("blob"),
                "file": endpoint("file"), "queue": endpoint("queue"), "table": endpoint("table"),
            },
            "primaryLocation": self.location,
            "statusOfPrimary": "available",
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": false,
        });
        for (key, value) in &self.extra {
            properties[key] = value.clone();
        }
        let tier = if self.sku.starts_with("Premium") { "Premium" } else { "Standard" };
        let mut account = json!({
            "id": self.id.canonical(STORAGE_TYPE),
            "name": name,
            "type": STORAGE_TYPE,
            "location": self.location,
            "tags": self.tags,
            "sku": { "name": self.sku, "tier": tier },
            "kind": self.kind,
            "properties": properties,
        });
        if let Some(identity) = self.identity_to_arm(arm) {
            account["identity"] = identity;
        }
        account
    }
}
