//! `Microsoft.Features` feature registration and `Microsoft.Resources` provider registration: register sets
//! `Registering`, and the state turns `Registered` on the subscription's N-th GET after that.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::errors::ArmError;
use super::state::{ArmState, Registration};
use crate::openapi;

/// The Features and Resources RPs answer only their spec file's api-version; others get ARM's
/// `InvalidApiVersionParameter` (its wording as in Azure/azure-cli#27156).
pub fn check_api_version(version: &str, spec: openapi::Spec) -> Result<(), ArmError> {
    let served = spec.api_version();
    if version == served { Ok(()) } else { Err(ArmError::invalid_api_version_parameter(version, &[served])) }
}

fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested method '{method}' is not allowed on this resource."),
    )
}

/// Register starts `Registering` (or stays `Registered`); a GET counts one poll and completes on the last one.
fn step(registration: &mut Registration, register: bool, polls: u32) {
    if register {
        if registration.state != "Registered" {
            registration.state = if polls == 0 { "Registered" } else { "Registering" }.to_owned();
            registration.polls_left = polls;
        }
    } else if registration.state == "Registering" {
        registration.polls_left = registration.polls_left.saturating_sub(1);
        if registration.polls_left == 0 {
            registration.state = "Registered".to_owned();
        }
    }
}

pub fn feature(
    arm: &mut ArmState,
    method: &Method,
    subscription: &str,
    namespace: &str,
    feature: &str,
    register: bool,
) -> Result<Response, ArmError> {
    let expected = if register { Method::POST } else { Method::GET };
    if *method != expected {
        return Err(method_not_allowed(method));
    }
    let sub = arm.subscription_mut(subscription).ok_or_else(|| ArmError::subscription_not_found(subscription))?;
    let polls = sub.polls;
    let sub_id = sub.id.clone();
    let key = format!("{namespace}/{feature}").to_ascii_lowercase();
    let registration = sub.features.get_mut(&key).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "FeatureNotFound",
            format!("The feature '{feature}' could not be found in the namespace '{namespace}'."),
        )
    })?;
    step(registration, register, polls);
    let (ns, name) = registration.name.split_once('/').unwrap_or((namespace, feature));
    Ok(Json(json!({
        "properties": { "state": registration.state },
        "id": format!("/subscriptions/{sub_id}/providers/Microsoft.Features/providers/{ns}/features/{name}"),
        "type": "Microsoft.Features/providers/features",
        "name": registration.name,
    }))
    .into_response())
}

pub fn provider(
    arm: &mut ArmState,
    method: &Method,
    subscription: &str,
    namespace: &str,
    register: bool,
) -> Result<Response, ArmError> {
    let expected = if register { Method::POST } else { Method::GET };
    if *method != expected {
        return Err(method_not_allowed(method));
    }
    let sub = arm.subscription_mut(subscription).ok_or_else(|| ArmError::subscription_not_found(subscription))?;
    let polls = sub.polls;
    let sub_id = sub.id.clone();
    let registration = sub.providers.get_mut(&namespace.to_ascii_lowercase()).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        )
    })?;
    step(registration, register, polls);
    let resource_types = if registration.name.eq_ignore_ascii_case("Microsoft.Storage") {
        json!([{ "resourceType": "storageAccounts", "locations": ["West Europe"], "apiVersions": [openapi::STORAGE.api_version()], "capabilities": "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove, SystemAssignedResourceIdentity, SupportsTags, SupportsLocation" }])
    } else {
        json!([])
    };
    Ok(Json(json!({
        "id": format!("/subscriptions/{sub_id}/providers/{}", registration.name),
        "namespace": registration.name,
        "registrationState": registration.state,
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": resource_types,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_completes_on_the_last_poll() {
        let mut r = Registration { name: "N/F".into(), state: "NotRegistered".into(), polls_left: 0 };
        step(&mut r, true, 2);
        assert_eq!(r.state, "Registering");
        step(&mut r, false, 2);
        assert_eq!(r.state, "Registering");
        step(&mut r, false, 2);
        assert_eq!(r.state, "Registered");
        step(&mut r, true, 2);
        assert_eq!(r.state, "Registered", "re-registering a registered feature is a no-op");
    }
}
