//! The customer fixes their side during the run, but Azure takes time to show it: a service principal just created
//! by admin consent is unknown to token issuance for a while (AADSTS700016), a role just granted is not yet in force
//! at Key Vault (ForbiddenByRbac). The handler keeps treating those as "waiting on the customer" (same state, so no
//! second `action_required`), and its delayed retry completes once the emulator's clock has passed the propagation
//! delay. Time moves by the emulator's clock, never by sleeping.

use std::time::Duration;

use azure_emulator::scenario::{Change, RoleAssignment, ServicePrincipal};

use crate::testbed::{APP_CLIENT_ID, FABRIKAM_TENANT, TestBed, fabrikam, sample_scenario};

const FABRIKAM_SP: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";
const FABRIKAM_VAULT_HOST: &str = "fabrikam-kv.vault.azure.net";

fn reasons(bed: &TestBed) -> Vec<String> {
    bed.events_of("action_required")
        .iter()
        .map(|e| e["data"]["reasonCode"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn service_principal() -> Change {
    Change::AddServicePrincipal {
        service_principal: ServicePrincipal {
            id: FABRIKAM_SP.into(),
            app_id: APP_CLIENT_ID.into(),
            tenant_id: FABRIKAM_TENANT.into(),
            account_enabled: true,
        },
    }
}

fn key_role() -> Change {
    Change::GrantRole {
        vault: Some("fabrikam-kv".into()),
        assignment: RoleAssignment {
            principal_id: FABRIKAM_SP.into(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: "/".into(),
            description: None,
        },
    }
}

/// Waits until the log holds, after sequence number `after` (taken once the fix was applied), two requests `matches`
/// selects that got `status`. The first may have been judged just before the fix and logged after it; the second was
/// sent after the first's answer, so it was judged inside the window.
async fn wait_for_refusal(bed: &TestBed, what: &str, after: u64, status: u16, matches: impl Fn(&str, &str) -> bool) {
    bed.wait_until(what, |bed| {
        let requests = bed.requests();
        requests.iter().filter(|r| r.seq > after && r.status == status && matches(&r.host, &r.path)).count() >= 2
    })
    .await;
}

fn last_seq(bed: &TestBed) -> u64 {
    bed.requests().last().map_or(0, |r| r.seq)
}

async fn assert_completes_without_dead_letter(bed: &TestBed, expected_reason: &str) {
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert!(bed.dead_letters().is_empty(), "nothing is dead-lettered");
    assert!(bed.events_of("failed").is_empty());
    assert_eq!(reasons(bed), [expected_reason], "the window is the same customer state: announced once");
    assert_eq!(bed.events_of("completed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_rides_out_the_service_principal_window() {
    let mut scenario = sample_scenario();
    // Only the service principal propagates here; the role window is the next test.
    scenario.propagation.role_assignment_seconds = 0;
    let replication = Duration::from_secs(scenario.propagation.service_principal_seconds);
    assert_eq!(replication, Duration::from_secs(120), "the default");
    let bed = crate::testbed::start_with(scenario, &[]).await;
    bed.send(&fabrikam("obd-sp-window"), "msg-sp-window");
    bed.wait_until("action_required: service principal", |bed| reasons(bed) == ["ServicePrincipalMissing"]).await;

    // The customer consents, grants the role and turns on purge protection.
    bed.apply(vec![
        service_principal(),
        key_role(),
        Change::SetPurgeProtection { vault: "fabrikam-kv".into(), enabled: true },
    ]);
    let after_fix = last_seq(&bed);
    let token_endpoint = format!("/{FABRIKAM_TENANT}/oauth2/v2.0/token");
    wait_for_refusal(&bed, "token requests refused inside the window", after_fix, 400, |_, path| {
        path == token_endpoint
    })
    .await;
    assert!(bed.events_of("completed").is_empty(), "not before the service principal has replicated");
    assert!(bed.dead_letters().is_empty());

    bed.advance_clock(replication).await;
    assert_completes_without_dead_letter(&bed, "ServicePrincipalMissing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_rides_out_the_role_assignment_window() {
    let mut scenario = sample_scenario();
    // Fabrikam has installed the app and protected its vault; only the key role is missing.
    scenario.service_principals.push(ServicePrincipal {
        id: FABRIKAM_SP.into(),
        app_id: APP_CLIENT_ID.into(),
        tenant_id: FABRIKAM_TENANT.into(),
        account_enabled: true,
    });
    scenario.vaults.iter_mut().find(|v| v.name == "fabrikam-kv").unwrap().purge_protection = true;
    let propagation = Duration::from_secs(scenario.propagation.role_assignment_seconds);
    assert_eq!(propagation, Duration::from_secs(600), "the default");
    let bed = crate::testbed::start_with(scenario, &[]).await;
    bed.send(&fabrikam("obd-role-window"), "msg-role-window");
    bed.wait_until("action_required: key access", |bed| reasons(bed) == ["KeyAccessDenied"]).await;

    bed.apply(vec![key_role()]);
    let after_fix = last_seq(&bed);
    wait_for_refusal(&bed, "key requests refused inside the window", after_fix, 403, |host, _| {
        host == FABRIKAM_VAULT_HOST
    })
    .await;
    assert!(bed.events_of("completed").is_empty(), "not before the role assignment has propagated");
    assert!(bed.dead_letters().is_empty());

    bed.advance_clock(propagation).await;
    assert_completes_without_dead_letter(&bed, "KeyAccessDenied").await;
}
