//! A new account's PUT body and the check of an account that already exists (decision 29), against fixtures and the
//! Storage spec's `StorageAccountCreateParameters`.

use cmk_handler::contract::NewAccount;
use cmk_handler::order::OnboardingOrder;
use cmk_handler::workflow::account_tags::{OwnTags, merged};
use cmk_handler::workflow::new_account::{create_body, differences, still_provisioning};
use cmk_handler::workflow::storage::DesiredEncryption;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/storage/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn desired() -> DesiredEncryption {
    DesiredEncryption {
        vault_uri: "https://contoso-kv.vault.azure.net".into(),
        key_name: "cmk".into(),
        key_version: None,
        uami_id: "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami".into(),
        app_client_id: "88888888-8888-8888-8888-888888888888".into(),
    }
}

fn new_account() -> NewAccount {
    NewAccount { location: "westeurope".into(), sku: "Standard_LRS".into(), kind: "StorageV2".into() }
}

#[test]
fn the_create_body_carries_the_key_identity_and_tags_from_the_first_put() {
    let order = OnboardingOrder::parse("2026-11-29T10:00:00Z#42").unwrap();
    let own = OwnTags { onboarding_id: "obd-new-1", order, customer_tenant_id: "22222222-2222-2222-2222-222222222222" };
    let body = create_body(&new_account(), &desired(), merged(&Value::Null, &own).unwrap());
    assert_eq!(body, fixture("expected-create.json"));
    // What the Storage RP reads it as: the spec's StorageAccountCreateParameters, nothing unknown or read-only.
    let checked = azure_emulator::openapi::STORAGE.request_body("StorageAccounts_Create").check_request(&body);
    assert!(checked.is_ok(), "{checked:?}");
}

#[test]
fn an_existing_account_is_the_one_asked_for_only_with_its_location_sku_and_kind() {
    let account = fixture("cmk-applied-tagged.json");
    assert!(differences(&account, &new_account()).is_empty(), "{account:#}");
    let display = NewAccount { location: "West Europe".into(), ..new_account() };
    assert!(differences(&account, &display).is_empty(), "ARM's display name is the same region");
    let other = NewAccount { location: "eastus".into(), sku: "Premium_LRS".into(), kind: "BlockBlobStorage".into() };
    let differ = differences(&account, &other);
    assert_eq!(differ.len(), 3, "{differ:?}");
    assert!(
        differ[0].contains("eastus") && differ[1].contains("Premium_LRS") && differ[2].contains("BlockBlobStorage")
    );
}

#[test]
fn an_account_being_created_is_still_provisioning() {
    assert_eq!(still_provisioning(&json!({ "properties": { "provisioningState": "Creating" } })), Some("Creating"));
    assert_eq!(still_provisioning(&json!({ "properties": { "provisioningState": "Succeeded" } })), None);
    assert_eq!(still_provisioning(&fixture("cmk-applied.json")), None);
}
