//! Remediation: golden commands for every `CustomerAction`, with this onboarding's values filled in.
//!
//! Regenerate the goldens after an intended change with `BLESS_GOLDEN=1 cargo test -p handler --test remediation`,
//! then review the diff.

use std::collections::BTreeMap;
use std::path::Path;

use cmk_handler::cloud::Cloud;
use cmk_handler::error::CustomerAction;
use cmk_handler::remediation::{RemediationContext, lost_access_remediation, remediation};

fn every_action() -> Vec<CustomerAction> {
    vec![
        CustomerAction::InstallApplication,
        CustomerAction::EnableApplication,
        CustomerAction::GrantKeyAccess,
        CustomerAction::CreateKey,
        CustomerAction::KeyDisabled,
        CustomerAction::KeyExpired,
        CustomerAction::KeyNotYetValid,
        CustomerAction::UnsupportedKeyType { detail: "EC key".into() },
        CustomerAction::AllowKeyOperations { missing: vec!["wrapKey".into()] },
        CustomerAction::EnablePurgeProtection,
        CustomerAction::AllowNetworkAccess,
        CustomerAction::VaultNotFound,
        CustomerAction::ConsentToAccount { storage_account_id: ACCOUNT.into() },
    ]
}

const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const APP: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata";

fn vault() -> RemediationContext<'static> {
    RemediationContext {
        cloud: Cloud::Public,
        customer_tenant_id: TENANT,
        app_client_id: APP,
        vault_name: "contoso-kv",
        managed_hsm: false,
        key_name: "cmk",
        key_version: None,
        vault_resource_id: None,
    }
}

fn hsm() -> RemediationContext<'static> {
    RemediationContext {
        vault_name: "contoso-hsm",
        managed_hsm: true,
        key_version: Some("0682afdd9c104f4285df20107e956cad"),
        ..vault()
    }
}

fn check_golden(file: &str, ctx: &RemediationContext<'_>) {
    let actual: BTreeMap<&str, _> = every_action().iter().map(|a| (a.reason_code(), remediation(a, ctx))).collect();
    let actual = serde_json::to_value(&actual).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/remediation").join(file);
    if std::env::var_os("BLESS_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let golden: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(actual, golden, "{file} differs; actual:\n{}", serde_json::to_string_pretty(&actual).unwrap());
}

#[test]
fn key_vault_commands_match_the_golden_file() {
    check_golden("key-vault.json", &vault());
}

#[test]
fn managed_hsm_commands_match_the_golden_file() {
    check_golden("managed-hsm.json", &hsm());
}

#[test]
fn every_action_names_this_onboarding() {
    for ctx in [vault(), hsm()] {
        for action in every_action() {
            let r = remediation(&action, &ctx);
            assert!(r.missing.ends_with('.') && r.missing.matches(". ").count() == 0, "one sentence: {}", r.missing);
            assert!(r.actions.len() >= 2, "sign-in plus at least one step");
            assert_eq!(r.actions[0].azure_cli, vec![format!("az login --tenant {TENANT}")]);
            assert_eq!(
                r.admin_consent_url,
                format!("https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={APP}")
            );
            let commands: Vec<&String> =
                r.actions.iter().flat_map(|s| s.azure_cli.iter().chain(&s.powershell)).collect();
            assert!(r.actions.iter().all(|s| !s.azure_cli.is_empty() && !s.powershell.is_empty()));
            let mentions = |needle: &str| commands.iter().any(|c| c.contains(needle));
            match action {
                CustomerAction::InstallApplication | CustomerAction::EnableApplication => assert!(mentions(APP)),
                CustomerAction::GrantKeyAccess => {
                    assert!(mentions(APP) && mentions(ctx.vault_name));
                    let role = if ctx.managed_hsm {
                        "Managed HSM Crypto Service Encryption User"
                    } else {
                        "Key Vault Crypto Service Encryption User"
                    };
                    assert!(mentions(role), "{role}");
                }
                CustomerAction::ConsentToAccount { .. } => {
                    assert!(mentions(&format!("cmk-consent-contosodata={ACCOUNT}")), "CLI tags the key");
                    assert!(mentions(&format!("-Tag @{{'cmk-consent-contosodata' = '{ACCOUNT}'}}")), "PowerShell too");
                }
                _ => assert!(mentions(ctx.vault_name), "{action:?} names the vault"),
            }
        }
    }
}

#[test]
fn a_known_vault_resource_id_replaces_the_lookup() {
    let id = "/subscriptions/66666666-6666-6666-6666-666666666666/resourceGroups/contoso-rg/providers/Microsoft.KeyVault/vaults/contoso-kv";
    let ctx = RemediationContext { vault_resource_id: Some(id), ..vault() };
    let r = remediation(&CustomerAction::GrantKeyAccess, &ctx);
    assert!(r.actions[1].azure_cli.contains(&format!("kvResourceId={id}")));
    assert!(!r.actions[1].azure_cli.iter().any(|c| c.contains("az keyvault show")));
    let unknown = remediation(&CustomerAction::GrantKeyAccess, &vault());
    assert!(unknown.actions[1].azure_cli.iter().any(|c| c.contains("--scope $kvResourceId")));
}

/// The key watch found the app's service principal gone: it was deleted (access worked before), and the one created
/// again has a new object id, so the fix assigns the role again too; other lost accesses get the onboarding's fix.
#[test]
fn a_deleted_service_principal_is_created_and_granted_again() {
    let fix = lost_access_remediation(&CustomerAction::InstallApplication, &vault());
    assert!(fix.missing.ends_with('.') && fix.missing.matches(". ").count() == 0, "one sentence: {}", fix.missing);
    let cli: Vec<&String> = fix.actions.iter().flat_map(|s| &s.azure_cli).collect();
    let create = cli.iter().position(|c| c.contains(&format!("az ad sp create --id {APP}"))).expect("create the SP");
    let grant = cli.iter().position(|c| c.contains("az role assignment create")).expect("assign the role again");
    assert!(create < grant, "the service principal first: {cli:#?}");
    assert!(cli.iter().any(|c| c.contains("Key Vault Crypto Service Encryption User")));
    let changed = |a: &CustomerAction| matches!(a, CustomerAction::InstallApplication | CustomerAction::CreateKey);
    for other in every_action().into_iter().filter(|a| !changed(a)) {
        assert_eq!(lost_access_remediation(&other, &vault()), remediation(&other, &vault()));
    }
}

/// The key watch found the key gone: it existed before, so it was deleted, and only recovering it (not a new key)
/// brings back what the account's data is wrapped with.
#[test]
fn a_deleted_key_is_recovered_not_created() {
    for ctx in [vault(), hsm()] {
        let fix = lost_access_remediation(&CustomerAction::CreateKey, &ctx);
        assert!(fix.missing.ends_with('.') && fix.missing.matches(". ").count() == 0, "one sentence: {}", fix.missing);
        assert!(fix.missing.contains("recover"), "{}", fix.missing);
        assert_eq!(fix.actions.len(), 2, "sign-in, recover: {:#?}", fix.actions);
        let target = if ctx.managed_hsm { "--hsm-name contoso-hsm" } else { "--vault-name contoso-kv" };
        assert_eq!(fix.actions[1].azure_cli, vec![format!("az keyvault key recover {target} --name cmk")]);
        let target = if ctx.managed_hsm { "-HsmName contoso-hsm" } else { "-VaultName contoso-kv" };
        assert_eq!(fix.actions[1].powershell, vec![format!("Undo-AzKeyVaultKeyRemoval {target} -Name cmk")]);
    }
}
