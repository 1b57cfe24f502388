//! The onboarding queue's messages, contract v1: parsing and validation (pure).
//!
//! [`parse_message`] is the only way in: it turns raw bytes into a [`ValidatedMessage`] (an onboarding, or with
//! `"kind": "offboarding"` an offboarding) or a [`ValidationError`] with a stable code; [`parse_and_validate`] takes
//! onboardings only; [`parse_status_query`] validates the status function's request with the same grammars. The
//! JSON Schema `schemas/onboarding-message.v1.schema.json` describes the same rules for producers; a test keeps the
//! two in agreement.

mod grammar;
mod isv;
mod message;
mod session;
mod status_query;
mod strict_json;
mod validate;

pub use grammar::{
    StorageAccountId, VaultUri, is_resource_group_name, normalize_guid, parse_storage_account_id, parse_vault_uri,
};
pub use isv::{AllowedScope, IsvIdentity};
pub use message::{CustomerRef, KeyMessage, NewAccountMessage, OnboardingMessage, StorageAccountRef};
pub use session::{DeliveredSessionId, check_session};
pub use status_query::{ONBOARDING_ID_PARAMETER, STORAGE_ACCOUNT_ID_PARAMETER, StatusQuery, parse_status_query};
pub use validate::{
    ACCOUNT_KINDS, AccountRequest, KIND_OFFBOARDING, KIND_ONBOARDING, KIND_PROBE, KeyRef, MAX_CLOCK_SKEW, NewAccount,
    SKU_NAMES, ValidatedMessage, ValidatedOnboarding, ValidationPolicy, parse_and_validate, parse_and_validate_at,
    parse_message, parse_message_at,
};

/// Why a message was rejected. `code` is a stable PascalCase reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub code: &'static str,
    /// JSON path of the offending field, e.g. `key.vaultUri`; `$` for the whole message.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code, field: field.into(), message: message.into() }
    }
}

/// The reason codes [`parse_and_validate`] can return.
pub mod codes {
    pub const INVALID_JSON: &str = "InvalidJson";
    pub const MESSAGE_TOO_LARGE: &str = "MessageTooLarge";
    /// A required field is missing or has the wrong JSON type.
    pub const INVALID_MESSAGE: &str = "InvalidMessage";
    pub const UNSUPPORTED_SCHEMA_VERSION: &str = "UnsupportedSchemaVersion";
    /// `kind` is neither `onboarding` nor `offboarding`.
    pub const UNSUPPORTED_MESSAGE_KIND: &str = "UnsupportedMessageKind";
    /// A valid message of another kind than the caller takes (an offboarding given to the diagnosis).
    pub const UNEXPECTED_MESSAGE_KIND: &str = "UnexpectedMessageKind";
    pub const INVALID_ONBOARDING_ID: &str = "InvalidOnboardingId";
    pub const INVALID_REQUESTED_AT: &str = "InvalidRequestedAt";
    pub const INVALID_TENANT_ID: &str = "InvalidTenantId";
    pub const INVALID_STORAGE_ACCOUNT_ID: &str = "InvalidStorageAccountId";
    pub const INVALID_VAULT_URI: &str = "InvalidVaultUri";
    pub const INVALID_KEY_NAME: &str = "InvalidKeyName";
    pub const INVALID_KEY_VERSION: &str = "InvalidKeyVersion";
    pub const INVALID_ISV_IDENTITY: &str = "InvalidIsvIdentity";
    /// `create` is not exactly `location`, `sku` and `kind` with valid values, or is on another kind than onboarding.
    pub const INVALID_CREATE_OPTIONS: &str = "InvalidCreateOptions";
    pub const STORAGE_ACCOUNT_NOT_ALLOWED: &str = "StorageAccountNotAllowed";
    pub const UNKNOWN_ISV_IDENTITY: &str = "UnknownIsvIdentity";
    /// The delivery's SessionId is not its storage account's (`contract::check_session`).
    pub const SESSION_ID_MISMATCH: &str = "SessionIdMismatch";
    pub const SESSION_ID_MISSING: &str = "SessionIdMissing";
    pub const SESSION_ID_UNVERIFIABLE: &str = "SessionIdUnverifiable";
    /// The status function was given a query parameter it does not take (`contract::parse_status_query`).
    pub const UNKNOWN_PARAMETER: &str = "UnknownParameter";
}
