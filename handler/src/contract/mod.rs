//! The onboarding message, contract v1: parsing and validation (pure).

/// Why a message was rejected. `code` is a stable PascalCase reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub code: &'static str,
    /// JSON path of the offending field, e.g. `key.vaultUri`; `$` for the whole message.
    pub field: String,
    pub message: String,
}
