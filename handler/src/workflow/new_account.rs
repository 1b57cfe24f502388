//! A new storage account, encrypted with the customer's key from its first PUT (the `create` option, decision 29):
//! the `StorageAccounts_Create` body, and whether an account that already exists is the one asked for (pure; the
//! ARM calls live in `workflow::mod`).
//!
//! The body follows the article "Configure cross-tenant customer-managed keys for a new storage account" and the
//! spec's example `StorageAccountCreateUserAssignedIdentityWithFederatedIdentityClientId` (storage.json 2023-05-01):
//! `sku`, `kind`, `location`, the user-assigned identity, and `properties.encryption` with the key and the federated
//! client id, plus the account tags the handler writes (`account_tags`).

use serde_json::{Map, Value, json};

use super::storage::{DesiredEncryption, encryption_members};
use crate::contract::NewAccount;

/// The PUT body that creates the account with `want` from the start and `tags` (the handler's own, from
/// [`super::account_tags::merged`] over an empty account).
pub fn create_body(create: &NewAccount, want: &DesiredEncryption, tags: Map<String, Value>) -> Value {
    let mut body = encryption_members(&Value::Null, want);
    body.insert("location".to_owned(), json!(create.location));
    body.insert("sku".to_owned(), json!({ "name": create.sku }));
    body.insert("kind".to_owned(), json!(create.kind));
    body.insert("tags".to_owned(), Value::Object(tags));
    Value::Object(body)
}

/// What of `create` an existing account does not match (location, SKU, kind), one line each; empty when it is the
/// account asked for. Location compares without case and spaces (ARM takes `West Europe` for `westeurope`), the
/// others without case.
pub fn differences(account: &Value, create: &NewAccount) -> Vec<String> {
    let text = |pointer: &str| account.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let location = |l: &str| l.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let mut differ = Vec::new();
    if location(text("/location")) != location(&create.location) {
        differ.push(format!("location is {:?}, not {:?}", text("/location"), create.location));
    }
    if !text("/sku/name").eq_ignore_ascii_case(&create.sku) {
        differ.push(format!("sku is {:?}, not {:?}", text("/sku/name"), create.sku));
    }
    if !text("/kind").eq_ignore_ascii_case(&create.kind) {
        differ.push(format!("kind is {:?}, not {:?}", text("/kind"), create.kind));
    }
    differ
}

/// The account is still being created (`provisioningState` present and not `Succeeded`: `Creating`, `ResolvingDNS`):
/// nothing may be written to it yet, and it proves nothing yet.
pub fn still_provisioning(account: &Value) -> Option<&str> {
    account
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .filter(|state| !state.eq_ignore_ascii_case("Succeeded"))
}
