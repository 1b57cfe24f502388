//! ARM's error responses (`{"error":{"code","message"}}`) for the codes the emulator produces.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::openapi::{Violation, ViolationKind};

/// One ARM error: status, code and message, as the gateway or a resource provider answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into() }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    }

    pub fn invalid_token(reason: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            format!("The access token is invalid. {reason}"),
        )
    }

    pub fn expired_token(exp: i64, now: i64) -> Self {
        let utc = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| t.to_string())
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "ExpiredAuthenticationToken",
            format!("The access token expiry UTC time '{}' is earlier than current UTC time '{}'.", utc(exp), utc(now)),
        )
    }

    pub fn wrong_audience(audience: &str, arm_host: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{audience}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://{arm_host}/','https://{arm_host}'."
            ),
        )
    }

    pub fn wrong_tenant(token_tenant: &str, subscription_tenant: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer 'https://sts.windows.net/{token_tenant}/'. It must match the tenant 'https://sts.windows.net/{subscription_tenant}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{subscription_tenant}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later."
            ),
        )
    }

    pub fn authorization_failed(principal: &str, action: &str, scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{principal}' with object id '{principal}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        )
    }

    pub fn linked_authorization_failed(
        principal: &str,
        action: &str,
        scope: &str,
        linked_action: &str,
        linked: &str,
    ) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "LinkedAuthorizationFailed",
            format!(
                "The client '{principal}' with object id '{principal}' has permission to perform action '{action}' on scope '{scope}'; however, it does not have permission to perform action(s) '{linked_action}' on the linked scope(s) '{linked}' (respectively) or the linked scope(s) are invalid."
            ),
        )
    }

    pub fn missing_api_version() -> Self {
        Self::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    }

    /// ARM's answer for an api-version a resource provider does not serve; `resource_type` is the type without its
    /// namespace (`storageAccounts`), as ARM prints it (e.g. Azure/azure-cli#7075).
    pub fn invalid_api_version(version: &str, resource_type: &str, supported: &[&str]) -> Self {
        Self::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'westeurope' and API version '{version}' for type '{resource_type}'. The supported api-versions are '{}'. The supported locations are 'westeurope'.",
                supported.join(", ")
            ),
        )
    }

    pub fn invalid_api_version_parameter(version: &str, supported: &[&str]) -> Self {
        Self::bad_request(
            "InvalidApiVersionParameter",
            format!("The api-version '{version}' is invalid. The supported versions are '{}'.", supported.join(",")),
        )
    }

    pub fn subscription_not_found(subscription: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{subscription}' could not be found."),
        )
    }

    pub fn invalid_subscription_id(subscription: &str) -> Self {
        Self::bad_request(
            "InvalidSubscriptionId",
            format!("The provided subscription identifier '{subscription}' is malformed or invalid."),
        )
    }

    pub fn resource_group_not_found(group: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{group}' could not be found."),
        )
    }

    pub fn resource_not_found(resource_type: &str, name: &str, group: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{resource_type}/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn invalid_resource_type(resource_type: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The resource type '{resource_type}' could not be found in the namespace of this emulator."),
        )
    }

    pub fn linked_invalid_property_id(id: &str, path: &str) -> Self {
        Self::bad_request(
            "LinkedInvalidPropertyId",
            format!(
                "Property id '{id}' at path '{path}' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{{subscriptionId}}' or '/providers/{{resourceProviderNamespace}}/'."
            ),
        )
    }

    /// The first way a request body differs from its operation's schema, as a Json.NET-based RP reports it: the
    /// deserialiser's own messages for unknown members, missing required members and values it cannot convert (a
    /// closed enum's unknown name, a malformed date or GUID, a wrong JSON type). A read-only member is refused with
    /// `read_only` (the RP's code for a property a request may not set); an `arm-id` that is not one with ARM's
    /// `LinkedInvalidPropertyId`.
    pub fn request_violation(violation: &Violation, read_only: fn(&str) -> ArmError) -> Self {
        let path = &violation.path;
        let convert = |value: &str, type_name: &str| {
            Self::invalid_request_content(&format!(
                "Error converting value {value} to type '{type_name}'. Path '{path}'"
            ))
        };
        match &violation.kind {
            ViolationKind::UnknownMember(name) => Self::invalid_request_content(&format!(
                "Could not find member '{name}' on object of type '{}'. Path '{path}'",
                violation.type_name
            )),
            ViolationKind::MissingRequired(name) => {
                Self::invalid_request_content(&format!("Required property '{name}' not found in JSON. Path '{path}'"))
            }
            ViolationKind::ReadOnly(name) => read_only(name),
            ViolationKind::NotInEnum { value, .. } => {
                convert(&Value::from(value.as_str()).to_string(), &violation.type_name)
            }
            ViolationKind::WrongType { expected, value } => {
                let net_type = match *expected {
                    "a string" => "System.String",
                    "a boolean" => "System.Boolean",
                    "an integer" => "System.Int64",
                    "a number" => "System.Double",
                    _ => violation.type_name.as_str(),
                };
                convert(&value.to_string(), net_type)
            }
            ViolationKind::BadFormat { format, value } if format == "arm-id" => {
                Self::linked_invalid_property_id(value, path)
            }
            ViolationKind::BadFormat { format, value } => {
                let net_type = match format.as_str() {
                    "date-time" => "System.DateTime",
                    "uuid" => "System.Guid",
                    "uri" => "System.Uri",
                    "int32" => "System.Int32",
                    _ => "System.Byte[]",
                };
                convert(&Value::from(value.as_str()).to_string(), net_type)
            }
        }
    }

    /// The body-deserialisation error RPs built on Json.NET report for unknown members and wrong types.
    pub fn invalid_request_content(detail: &str) -> Self {
        Self::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let challenge = (self.status == StatusCode::UNAUTHORIZED).then(|| {
            format!(
                "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{}\"",
                self.message.replace('"', "'")
            )
        });
        let mut response =
            (self.status, axum::Json(json!({ "error": { "code": self.code, "message": self.message } })))
                .into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
