//! The offboarding's pure decisions (ownership guard, the one PATCH, the read-back check), against account documents
//! shaped like ARM's answers.

use cmk_handler::workflow::offboarding::{Owner, plan, verify};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/storage/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

const UAMI: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";

fn owner() -> Owner<'static> {
    Owner {
        onboarding_id: "obd-2026-0001",
        customer_tenant_id: "22222222-2222-2222-2222-222222222222",
        uami_id: UAMI,
        app_client_id: "88888888-8888-8888-8888-888888888888",
        vault_uri: None,
    }
}

#[test]
fn one_patch_switches_the_key_source_and_keeps_the_other_tags() {
    let plan = plan(&fixture("cmk-applied-tagged.json"), &owner()).unwrap();
    assert_eq!(plan.patch, Some(fixture("expected-offboarding-patch.json")));
    let mut removed = plan.removed_tags.clone();
    removed.sort_unstable();
    // Tag names are case-insensitive in Azure: the account's spelling is the one removed.
    assert_eq!(removed, ["CMK-Customer-Tenant", "cmk-onboarding-id", "cmk-watch-state"]);
    assert_eq!(plan.previous.vault_uri.as_deref(), Some("https://contoso-kv.vault.azure.net"));
    assert_eq!(plan.previous.key_name.as_deref(), Some("cmk"));
}

#[test]
fn an_account_onboarded_before_tags_is_guarded_by_its_encryption_identity() {
    let account = fixture("cmk-applied.json");
    let plan = plan(&account, &owner()).unwrap();
    let patch = plan.patch.unwrap();
    assert!(patch.get("tags").is_none(), "no tags to remove, none sent: {patch}");
    assert_eq!(patch["properties"]["encryption"]["keySource"], "Microsoft.Storage");

    let mut other_app = account.clone();
    other_app["properties"]["encryption"]["identity"]["federatedIdentityClientId"] =
        json!("99999999-0000-0000-0000-000000000000");
    let refused = refusal(&other_app, &owner());
    assert!(refused.contains("99999999-0000-0000-0000-000000000000"), "{refused}");

    let named_vault = Owner { vault_uri: Some("https://FABRIKAM-kv.vault.azure.net/"), ..owner() };
    assert!(refusal(&account, &named_vault).contains("FABRIKAM-kv.vault.azure.net"));
    let same_vault = Owner { vault_uri: Some("https://Contoso-KV.vault.azure.net/"), ..owner() };
    assert!(plan_ok(&account, &same_vault));
}

#[test]
fn tags_naming_another_onboarding_or_tenant_are_refused() {
    let account = fixture("cmk-applied-tagged.json");
    assert!(refusal(&account, &Owner { onboarding_id: "obd-other", ..owner() }).contains("obd-2026-0001"));
    let other_tenant = Owner { customer_tenant_id: "44444444-4444-4444-4444-444444444444", ..owner() };
    assert!(refusal(&account, &other_tenant).contains("22222222-2222-2222-2222-222222222222"));
}

#[test]
fn an_account_on_microsoft_managed_keys_without_our_tags_is_already_offboarded() {
    let account = fixture("microsoft-managed.json");
    let plan = plan(&account, &owner()).unwrap();
    assert_eq!(plan.patch, None);
    assert!(plan.removed_tags.is_empty());
    assert_eq!(plan.previous.vault_uri, None);
    assert_eq!(verify(&account), Ok(()));
    // Only our tags left behind: one tags-only PATCH.
    let mut tagged = account.clone();
    tagged["tags"] = json!({ "cmk-onboarding-id": "obd-2026-0001", "team": "a" });
    let patch = plan_ok_patch(&tagged);
    assert_eq!(patch, json!({ "tags": { "team": "a" } }));
    assert!(verify(&tagged).unwrap_err().contains("cmk-onboarding-id"));
    assert!(verify(&fixture("cmk-applied.json")).is_err());
}

fn refusal(account: &Value, owner: &Owner<'_>) -> String {
    plan(account, owner).expect_err("refused")
}

fn plan_ok(account: &Value, owner: &Owner<'_>) -> bool {
    plan(account, owner).is_ok()
}

fn plan_ok_patch(account: &Value) -> Value {
    plan(account, &owner()).unwrap().patch.unwrap()
}
