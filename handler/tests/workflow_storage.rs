//! The storage reconciler's pure decisions, checked against account documents shaped like ARM's answers.

use cmk_handler::workflow::storage::{DesiredEncryption, other_vault_in_use, plan_update, verify};
use serde_json::Value;

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

#[test]
fn microsoft_managed_account_gets_one_merging_patch() {
    let patch = plan_update(&fixture("microsoft-managed.json"), &desired(), None).expect("a patch is needed");
    assert_eq!(patch, fixture("expected-patch.json"));
}

#[test]
fn applied_account_needs_no_patch_even_with_other_id_casing() {
    // ARM returns `resourcegroups` in lower case inside encryption.identity; that is the same id.
    assert_eq!(plan_update(&fixture("cmk-applied.json"), &desired(), None), None);
    let applied = verify(&fixture("cmk-applied.json"), &desired()).unwrap();
    assert_eq!(
        applied.current_versioned_key_identifier,
        "https://contoso-kv.vault.azure.net/keys/cmk/0123456789abcdef0123456789abcdef"
    );
}

#[test]
fn a_different_key_or_version_is_a_difference() {
    let account = fixture("cmk-applied.json");
    assert!(plan_update(&account, &DesiredEncryption { key_name: "other".into(), ..desired() }, None).is_some());
    let pinned = DesiredEncryption { key_version: Some("fedcba9876543210fedcba9876543210".into()), ..desired() };
    let patch = plan_update(&account, &pinned, None).unwrap();
    assert_eq!(
        patch["properties"]["encryption"]["keyvaultproperties"]["keyversion"],
        "fedcba9876543210fedcba9876543210"
    );
    assert!(verify(&account, &pinned).is_err());
}

#[test]
fn account_without_identity_gets_user_assigned_only() {
    let mut account = fixture("microsoft-managed.json");
    account.as_object_mut().unwrap().remove("identity");
    let patch = plan_update(&account, &desired(), None).unwrap();
    assert_eq!(patch["identity"]["type"], "UserAssigned");
    assert_eq!(patch["identity"]["userAssignedIdentities"].as_object().unwrap().len(), 1);
}

#[test]
fn verify_needs_the_versioned_key_identifier() {
    let mut account = fixture("cmk-applied.json");
    account["properties"]["encryption"]["keyvaultproperties"]
        .as_object_mut()
        .unwrap()
        .remove("currentVersionedKeyIdentifier");
    assert!(verify(&account, &desired()).is_err());
}

#[test]
fn an_account_using_another_vault_is_flagged_and_the_same_vault_is_not() {
    let applied = fixture("cmk-applied.json");
    // The same vault, any spelling of its URI, with another key or version: no conflict (the customer's own vault).
    for uri in ["https://contoso-kv.vault.azure.net", "https://CONTOSO-KV.vault.azure.net/"] {
        assert_eq!(other_vault_in_use(&applied, &DesiredEncryption { vault_uri: uri.into(), ..desired() }), None);
    }
    assert_eq!(other_vault_in_use(&applied, &DesiredEncryption { key_name: "other".into(), ..desired() }), None);
    // Another vault: the vault in use is named.
    let fabrikam = DesiredEncryption { vault_uri: "https://fabrikam-kv.vault.azure.net".into(), ..desired() };
    assert_eq!(other_vault_in_use(&applied, &fabrikam).as_deref(), Some("https://contoso-kv.vault.azure.net"));
    // Microsoft-managed keys belong to nobody's vault.
    assert_eq!(other_vault_in_use(&fixture("microsoft-managed.json"), &fabrikam), None);
    let mut switched_back = applied.clone();
    switched_back["properties"]["encryption"]["keySource"] = "Microsoft.Storage".into();
    assert_eq!(other_vault_in_use(&switched_back, &fabrikam), None);
}

#[test]
fn tags_go_in_the_same_patch_and_alone_when_the_encryption_is_right() {
    use cmk_handler::order::OnboardingOrder;
    use cmk_handler::workflow::account_tags::{OwnTags, applied, merged};
    let own = OwnTags {
        onboarding_id: "obd-2026-0001",
        order: OnboardingOrder::parse("2026-12-03T18:00:05Z#562949953421313").unwrap(),
        customer_tenant_id: "11111111-1111-1111-1111-111111111111",
    };
    // A new account: encryption and tags in one PATCH, the account's own tags kept (Storage replaces the object).
    let account = fixture("microsoft-managed.json");
    let tags = merged(&account, &own).unwrap();
    let patch = plan_update(&account, &desired(), Some(tags)).unwrap();
    assert_eq!(patch, fixture("expected-patch-with-tags.json"));
    // Encryption already right, tags missing: the tags alone.
    let configured = fixture("cmk-applied.json");
    assert!(!applied(&configured, &own));
    let patch = plan_update(&configured, &desired(), Some(merged(&configured, &own).unwrap())).unwrap();
    assert_eq!(patch.as_object().unwrap().keys().collect::<Vec<_>>(), ["tags"]);
}
