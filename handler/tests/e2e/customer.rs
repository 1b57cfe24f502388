//! Done-when 3: a customer not ready (no service principal; then no role; then purge protection off) gets the right
//! `action_required` events, once per state; after the customer fixes each, the delayed retry completes. The fixes
//! take effect at once here (propagation 0); riding out the propagation windows is `propagation.rs`.

use azure_emulator::scenario::{Change, RoleAssignment, ServicePrincipal};

use crate::testbed::{TestBed, onboarding};

const FABRIKAM_TENANT: &str = "44444444-4444-4444-4444-444444444444";
const FABRIKAM_ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/fabrikamdata";
const FABRIKAM_SP: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";

fn reasons(bed: &TestBed) -> Vec<String> {
    bed.events_of("action_required")
        .iter()
        .map(|e| e["data"]["reasonCode"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_steps_are_asked_for_one_at_a_time_then_it_completes() {
    let mut scenario = crate::testbed::sample_scenario();
    scenario.propagation.service_principal_seconds = 0;
    scenario.propagation.role_assignment_seconds = 0;
    let bed = crate::testbed::start_with(scenario, &[]).await;
    bed.send(
        &onboarding("obd-fabrikam", FABRIKAM_TENANT, FABRIKAM_ACCOUNT, "https://fabrikam-kv.vault.azure.net/", "cmk"),
        "msg-fabrikam",
    );

    bed.wait_until("action_required: service principal", |bed| reasons(bed) == ["ServicePrincipalMissing"]).await;
    let first = &bed.events_of("action_required")[0];
    assert_eq!(
        first["data"]["adminConsentUrl"],
        format!(
            "https://login.microsoftonline.com/{FABRIKAM_TENANT}/adminconsent?client_id=88888888-8888-8888-8888-888888888888"
        )
    );
    let commands = first["data"]["actions"].to_string();
    assert!(commands.contains("az ad sp create --id 88888888-8888-8888-8888-888888888888"), "{commands}");
    // Let a few more retries see the same state: it must not be announced again.
    bed.wait_until("two more attempts in the same state", |bed| {
        bed.requests().iter().filter(|r| r.path.starts_with(&format!("/{FABRIKAM_TENANT}/oauth2"))).count() >= 3
    })
    .await;
    assert_eq!(reasons(&bed), ["ServicePrincipalMissing"]);

    bed.apply(vec![Change::AddServicePrincipal {
        service_principal: ServicePrincipal {
            id: FABRIKAM_SP.into(),
            app_id: "88888888-8888-8888-8888-888888888888".into(),
            tenant_id: FABRIKAM_TENANT.into(),
            account_enabled: true,
        },
    }]);
    bed.wait_until("action_required: key access", |bed| reasons(bed).len() == 2).await;
    assert_eq!(reasons(&bed)[1], "KeyAccessDenied");

    bed.apply(vec![Change::GrantRole {
        vault: Some("fabrikam-kv".into()),
        assignment: RoleAssignment {
            principal_id: FABRIKAM_SP.into(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: "/".into(),
            description: None,
        },
    }]);
    bed.wait_until("action_required: purge protection", |bed| reasons(bed).len() == 3).await;
    assert_eq!(reasons(&bed)[2], "PurgeProtectionDisabled");

    bed.apply(vec![Change::SetPurgeProtection { vault: "fabrikam-kv".into(), enabled: true }]);
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert_eq!(reasons(&bed).len(), 3, "one action_required per distinct state");
    let completed = &bed.events_of("completed")[0];
    assert!(completed["data"]["attempts"].as_u64().unwrap() >= 4, "{completed:#}");
    assert!(bed.dead_letters().is_empty());
}

/// Key Vault answers a disabled key's GET with 403 `KeyDisabled` (not 200 with `enabled: false`): the handler asks the
/// customer to enable it, and the delayed retry completes once they have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_is_asked_for_then_it_completes() {
    let bed = crate::testbed::start().await;
    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: false }]);
    bed.send(&crate::testbed::contoso("obd-disabled-key"), "msg-disabled-key");
    bed.wait_until("action_required: key disabled", |bed| reasons(bed) == ["KeyDisabled"]).await;
    let key_reads: Vec<u16> = bed
        .requests()
        .iter()
        .filter(|r| r.host == "contoso-kv.vault.azure.net" && r.method == "GET")
        .map(|r| r.status)
        .collect();
    // The first request to a vault goes without a token (its 401 challenge names the vault's tenant); every read with
    // a token is refused while the key is disabled.
    assert_eq!(key_reads.first(), Some(&401), "the challenge first: {key_reads:?}");
    assert!(key_reads.len() > 1 && key_reads[1..].iter().all(|s| *s == 403), "refused while disabled: {key_reads:?}");

    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: true }]);
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert_eq!(reasons(&bed), ["KeyDisabled"]);
    assert!(bed.dead_letters().is_empty());
}

/// The customer-tenant token the handler caches lasts an hour by Entra's clock. A vault that judges it ended before
/// the handler's cache does (here the emulator's clock moves two hours; on Azure, a revocation or a clock ahead of
/// ours) answers 401 `AKV10000`: the handler exchanges a fresh token and goes on, where it used to dead-letter the
/// onboarding as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_vault_no_longer_takes_is_exchanged_again() {
    const SECOND: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosoextra";
    let mut scenario = crate::testbed::sample_scenario();
    scenario.storage_accounts.push(crate::testbed::fresh_storage_account(SECOND.into()));
    let bed = crate::testbed::start_with(scenario, &[crate::testbed::ONE_KEY_MANY_ACCOUNTS]).await;
    bed.send(&crate::testbed::contoso("obd-first"), "msg-first");
    bed.wait_until("the first onboarding completed", |bed| bed.events_of("completed").len() == 1).await;
    let refusals = |bed: &TestBed| {
        bed.requests().iter().filter(|r| r.host == "contoso-kv.vault.azure.net" && r.status == 401).count()
    };
    let challenges = refusals(&bed);

    bed.advance_clock(std::time::Duration::from_secs(2 * 3600)).await;
    let second =
        onboarding("obd-second", crate::testbed::CONTOSO_TENANT, SECOND, "https://contoso-kv.vault.azure.net/", "cmk");
    bed.send(&second, "msg-second");

    bed.wait_until("the second onboarding ended", |bed| bed.events().len() >= 2 && bed.queue().is_empty()).await;
    bed.wait_queue_idle().await;
    assert!(bed.dead_letters().is_empty(), "{:#?}", bed.events());
    assert_eq!(bed.events_of("completed").len(), 2, "{:#?}", bed.events());
    assert_eq!(refusals(&bed) - challenges, 2, "the refused token, then the challenge read again");
}
