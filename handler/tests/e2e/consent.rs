//! Issue 14, the confused deputy: a message naming another customer's tenant and vault does not get the first
//! customer's account encrypted with the second customer's key, unless that key's owner tagged it with their consent
//! to exactly this account.

use azure_emulator::scenario::Change;

use crate::testbed::{CONTOSO_ACCOUNT, FABRIKAM_ACCOUNT, FABRIKAM_TENANT, TestBed, contoso, onboarding, repo_root};

const FABRIKAM_VAULT: &str = "https://fabrikam-kv.vault.azure.net/";

/// Fabrikam is ready (the demo's fixes applied, their propagation waited out); its key consents to its own account
/// (the sample scenario).
async fn fabrikam_ready() -> TestBed {
    let bed = crate::testbed::start().await;
    let fixes: Vec<Change> =
        serde_json::from_slice(&std::fs::read(repo_root().join("samples/customer-fixes.json")).unwrap()).unwrap();
    bed.apply(fixes);
    bed.advance_clock(std::time::Duration::from_secs(azure_emulator::propagation::ROLE_ASSIGNMENT_SECONDS)).await;
    bed
}

fn set_fabrikam_key_tags(bed: &TestBed, tags: &[(&str, &str)]) {
    let tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    bed.apply(vec![Change::SetKeyTags { vault: "fabrikam-kv".into(), key: "cmk".into(), tags }]);
}

fn patches(bed: &TestBed) -> usize {
    bed.requests().iter().filter(|r| r.method == "PATCH").count()
}

/// Contoso's message names Fabrikam's tenant and vault. Both checks of before pass (the vault is Fabrikam's tenant's,
/// the app may wrap with the key), but the key does not consent to Contoso's account: nothing is written to it, and
/// the customer is asked, with the commands, for exactly this consent. Once Fabrikam's key names Contoso's account,
/// the onboarding completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_key_needs_its_owners_consent_to_this_account() {
    let bed = fabrikam_ready().await;
    let before = bed.storage_account(CONTOSO_ACCOUNT);
    bed.send(&onboarding("obd-deputy", FABRIKAM_TENANT, CONTOSO_ACCOUNT, FABRIKAM_VAULT, "cmk"), "msg-deputy");
    bed.wait_until("consent asked for", |bed| !bed.events_of("action_required").is_empty()).await;

    let asked = &bed.events_of("action_required")[0]["data"];
    assert_eq!(asked["reasonCode"], "KeyConsentMissing", "{asked:#}");
    let commands = asked["actions"].to_string();
    assert!(commands.contains(&format!("--tags cmk-consent-contosodata={CONTOSO_ACCOUNT}")), "{commands}");
    assert!(commands.contains("Update-AzKeyVaultKey -VaultName fabrikam-kv -Name cmk -Tag"), "{commands}");
    assert_eq!(patches(&bed), 0, "Contoso's account is not touched");
    assert_eq!(bed.storage_account(CONTOSO_ACCOUNT), before);
    assert!(bed.events_of("completed").is_empty());

    set_fabrikam_key_tags(
        &bed,
        &[("cmk-consent-fabrikamdata", FABRIKAM_ACCOUNT), ("cmk-consent-contosodata", CONTOSO_ACCOUNT)],
    );
    bed.wait_until("completed with consent", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(
        account["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"],
        "https://fabrikam-kv.vault.azure.net"
    );
    assert!(bed.dead_letters().is_empty());
}

/// A consent tag that names another account (here Fabrikam's own) does not count for Contoso's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_tag_naming_another_account_does_not_count() {
    let bed = fabrikam_ready().await;
    set_fabrikam_key_tags(&bed, &[("cmk-consent", FABRIKAM_ACCOUNT), ("cmk-consent-contosodata", FABRIKAM_ACCOUNT)]);
    bed.send(&onboarding("obd-other-tag", FABRIKAM_TENANT, CONTOSO_ACCOUNT, FABRIKAM_VAULT, "cmk"), "msg-other-tag");
    bed.wait_until("consent asked for", |bed| !bed.events_of("action_required").is_empty()).await;
    assert_eq!(bed.events_of("action_required")[0]["data"]["reasonCode"], "KeyConsentMissing");
    assert_eq!(patches(&bed), 0);
    // Fabrikam's own onboarding, which its tags do name, completes meanwhile.
    bed.send(&crate::testbed::fabrikam("obd-fabrikam-own"), "msg-fabrikam-own");
    bed.wait_until("fabrikam completed", |bed| bed.events_of("completed").len() == 1).await;
    assert_eq!(bed.events_of("completed")[0]["data"]["onboardingId"], "obd-fabrikam-own");
}

/// The demo's ready customer carries its consent, and with the requirement off (an ISV that binds tenants upstream)
/// a key without any consent tag is used as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_customer_consents_and_the_requirement_can_be_turned_off() {
    let scenario = crate::testbed::sample_scenario();
    let contoso_key = &scenario.vaults.iter().find(|v| v.name == "contoso-kv").unwrap().keys[0];
    assert_eq!(contoso_key.tags.get("cmk-consent-contosodata").map(String::as_str), Some(CONTOSO_ACCOUNT));

    let bed = crate::testbed::start_with(scenario, &[("CMK_REQUIRE_KEY_CONSENT", "false")]).await;
    bed.apply(vec![Change::SetKeyTags { vault: "contoso-kv".into(), key: "cmk".into(), tags: Default::default() }]);
    bed.send(&contoso("obd-no-consent-needed"), "msg-no-consent-needed");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
}
