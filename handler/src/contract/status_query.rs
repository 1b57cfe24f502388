//! The status function's request (pure): `?storageAccountId=<resource id>[&onboardingId=<id>]`, validated with the
//! message contract's grammars and the ISV's allowed scopes before anything is called.
//!
//! Strict on purpose: every parameter once (the host joins a repeated one's values with commas, which no valid value
//! holds), nothing unknown (a misspelt `onboardingid` would otherwise be answered
//! as if no onboarding had been asked about). `code` is the function key when a caller passes it in the query
//! (the host checked it already); it is ignored and never echoed.

use super::grammar::{StorageAccountId, is_onboarding_id, parse_storage_account_id};
use super::{AllowedScope, ValidationError, codes};

pub const STORAGE_ACCOUNT_ID_PARAMETER: &str = "storageAccountId";
pub const ONBOARDING_ID_PARAMETER: &str = "onboardingId";
/// The function key, when passed in the query instead of the `x-functions-key` header.
const FUNCTION_KEY_PARAMETER: &str = "code";

/// A valid status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusQuery {
    pub storage_account: StorageAccountId,
    /// The onboarding the caller asks about, compared with the one the account records.
    pub onboarding_id: Option<String>,
}

/// Validates the query parameters (as decoded by the host, in order). An account outside `scopes` is refused with
/// [`codes::STORAGE_ACCOUNT_NOT_ALLOWED`]: its status is not ours to tell, and it is never read.
pub fn parse_status_query(
    parameters: &[(String, String)],
    scopes: &[AllowedScope],
) -> Result<StatusQuery, ValidationError> {
    let mut account = None;
    let mut onboarding_id = None;
    for (name, value) in parameters {
        // ASP.NET's query collection ignores the case of names, so the host does too.
        let slot = match name.as_str() {
            n if n.eq_ignore_ascii_case(STORAGE_ACCOUNT_ID_PARAMETER) => &mut account,
            n if n.eq_ignore_ascii_case(ONBOARDING_ID_PARAMETER) => &mut onboarding_id,
            n if n.eq_ignore_ascii_case(FUNCTION_KEY_PARAMETER) => continue,
            other => {
                return Err(ValidationError::new(
                    codes::UNKNOWN_PARAMETER,
                    truncated(other),
                    format!(
                        "is not a parameter; use {STORAGE_ACCOUNT_ID_PARAMETER} and optionally {ONBOARDING_ID_PARAMETER}"
                    ),
                ));
            }
        };
        if slot.replace(value.as_str()).is_some() {
            return Err(ValidationError::new(codes::INVALID_MESSAGE, name.as_str(), "is given more than once"));
        }
    }
    let account = account.ok_or_else(|| {
        ValidationError::new(codes::INVALID_STORAGE_ACCOUNT_ID, STORAGE_ACCOUNT_ID_PARAMETER, "is required")
    })?;
    let storage_account = parse_storage_account_id(account)
        .map_err(|e| ValidationError::new(codes::INVALID_STORAGE_ACCOUNT_ID, STORAGE_ACCOUNT_ID_PARAMETER, e))?;
    if let Some(id) = onboarding_id
        && !is_onboarding_id(id)
    {
        return Err(ValidationError::new(
            codes::INVALID_ONBOARDING_ID,
            ONBOARDING_ID_PARAMETER,
            "must be 1-128 of [A-Za-z0-9._:-] starting with a letter or digit",
        ));
    }
    let allowed = scopes.iter().any(|s| s.contains(&storage_account.subscription_id, &storage_account.resource_group));
    if !allowed {
        return Err(ValidationError::new(
            codes::STORAGE_ACCOUNT_NOT_ALLOWED,
            STORAGE_ACCOUNT_ID_PARAMETER,
            format!("{} is outside the scopes this handler may read", storage_account.arm_id()),
        ));
    }
    Ok(StatusQuery { storage_account, onboarding_id: onboarding_id.map(str::to_owned) })
}

/// A caller's parameter name, cut for the error answer.
fn truncated(name: &str) -> String {
    crate::text::truncate(name, 64)
}
