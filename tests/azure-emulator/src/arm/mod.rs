//! Azure Resource Manager: features, providers, user-assigned identities and storage accounts, behind ARM's
//! authentication, api-version and authorization (RBAC) checks.

mod authz;
mod cmk;
pub mod errors;
mod identities;
pub mod ids;
mod registration;
mod state;
mod storage;

use axum::response::{IntoResponse, Response};

pub use authz::Caller;
pub use cmk::{KEY_CHECK_INTERVAL, daily_key_check};
pub use errors::ArmError;
pub use state::{ArmState, Creation, IdentityResource, Registration, StorageAccountState, SubscriptionState};

use crate::cloud::Cloud;
use crate::entra::{Claims, TokenError, audience_matches};
use crate::http::Req;
use crate::state::Shared;
use ids::Route;

pub async fn handle(shared: &Shared, req: Req) -> Response {
    match serve(shared, &req) {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn serve(shared: &Shared, req: &Req) -> Result<Response, ArmError> {
    let cloud = shared.world.lock().expect("world lock poisoned").cloud;
    let claims = authenticate(shared, req, cloud)?;
    let route = ids::route(req.url.path())?;
    let subscription = route.subscription().to_owned();
    if !ids::is_guid(&subscription) {
        return Err(ArmError::invalid_subscription_id(&subscription));
    }
    let mut world = shared.world.lock().expect("world lock poisoned");
    cmk::daily_key_check(&mut world, shared.clock.now());
    let sub_tenant = world
        .arm
        .subscription(&subscription)
        .map(|s| s.tenant_id.clone())
        .ok_or_else(|| ArmError::subscription_not_found(&subscription))?;
    if !claims.tid.eq_ignore_ascii_case(&sub_tenant) {
        return Err(ArmError::wrong_tenant(&claims.tid, &sub_tenant));
    }
    let api_version = req.query("api-version").ok_or_else(ArmError::missing_api_version)?;
    let caller = Caller::new(&claims, shared.clock.now());
    // Feature and provider operations are authorized at the subscription, as ARM reports them.
    let subscription_scope = format!("/subscriptions/{subscription}");
    match route {
        Route::Feature { subscription, namespace, feature, register } => {
            registration::check_api_version(&api_version, crate::openapi::FEATURES)?;
            let action = if register {
                "Microsoft.Features/providers/features/register/action"
            } else {
                "Microsoft.Features/providers/features/read"
            };
            caller.authorize(&world.rbac, action, &subscription_scope)?;
            registration::feature(&mut world.arm, &req.method, &subscription, &namespace, &feature, register)
        }
        Route::Provider { subscription, namespace, register } => {
            registration::check_api_version(&api_version, crate::openapi::RESOURCES)?;
            let action = if register {
                format!("{namespace}/register/action")
            } else {
                "Microsoft.Resources/subscriptions/providers/read".to_owned()
            };
            caller.authorize(&world.rbac, &action, &subscription_scope)?;
            registration::provider(&mut world.arm, &req.method, &subscription, &namespace, register)
        }
        Route::Resource(id) if id.is_type(ids::IDENTITY_TYPE) => {
            identities::serve(&mut world, req, &id, &api_version, &caller)
        }
        Route::Resource(id) if id.is_type(ids::STORAGE_TYPE) => {
            storage::serve(&mut world, req, &id, &api_version, &caller)
        }
        Route::Resource(id) => Err(ArmError::invalid_resource_type(&id.full_type())),
        Route::StorageOperation { subscription, id } => {
            storage::operation(&mut world, &subscription, &id, &api_version, &caller)
        }
        Route::StorageList { subscription, group } => {
            world.arm.finish_creations(caller.now);
            storage::list(&world, req, &subscription, group.as_deref(), &api_version, &caller)
        }
    }
}

/// A bearer minted by this emulator, alive, for this cloud's ARM audience.
fn authenticate(shared: &Shared, req: &Req, cloud: Cloud) -> Result<Claims, ArmError> {
    let token = req.bearer().ok_or_else(ArmError::missing_token)?;
    let claims = shared.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired { exp, now } => ArmError::expired_token(exp, now),
        other => ArmError::invalid_token(&other.to_string()),
    })?;
    let arm_audience = format!("https://{}/", cloud.arm_host());
    let legacy_audience = legacy_arm_audience(cloud);
    if !audience_matches(&claims.aud, &arm_audience) && !audience_matches(&claims.aud, legacy_audience) {
        return Err(ArmError::wrong_audience(&claims.aud, cloud.arm_host()));
    }
    Ok(claims)
}

/// The older ARM audience each cloud still accepts.
fn legacy_arm_audience(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "https://management.core.windows.net/",
        Cloud::UsGovernment => "https://management.core.usgovcloudapi.net/",
        Cloud::China => "https://management.core.chinacloudapi.cn/",
    }
}
