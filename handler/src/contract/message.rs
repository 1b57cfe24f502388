//! The wire shape of an onboarding message (v1), for producers and tests that build messages.
//!
//! The handler itself validates from a `serde_json::Value` (see `validate.rs`) so it can name the offending field;
//! this struct is what a correct message looks like.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnboardingMessage {
    pub schema_version: String,
    pub onboarding_id: String,
    /// RFC 3339 with offset.
    pub requested_at: String,
    pub customer: CustomerRef,
    pub storage_account: StorageAccountRef,
    pub key: KeyMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isv_identity: Option<String>,
    /// True to re-key an account whose encryption already uses a key in another vault (absent or false: refuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_existing_key: Option<bool>,
    /// Create the account, encrypted with the key from the start, when it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<NewAccountMessage>,
}

/// `create`: where and what a new account is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccountMessage {
    pub location: String,
    pub sku: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRef {
    pub tenant_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountRef {
    pub resource_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMessage {
    pub vault_uri: String,
    pub name: String,
    /// Absent: automatic key version updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
