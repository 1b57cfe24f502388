//! Done-when 2: the same message twice, and a kill of the handler at each step boundary followed by redelivery,
//! converge on the same final state with one `completed` event.

use std::time::Duration;

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};

use crate::testbed::{CONTOSO_ACCOUNT, TestBed, contoso, sample_scenario};

async fn assert_converged(bed: &TestBed) {
    bed.wait_until("one completed event", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    let completed = bed.events_of("completed");
    assert_eq!(completed.len(), 1, "exactly one completed event after topic dedupe: {completed:#?}");
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
    let identities = account["identity"]["userAssignedIdentities"].as_object().unwrap();
    assert_eq!(identities.len(), 1, "no duplicate identity: {account:#}");
    assert!(bed.dead_letters().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_onboarding_twice_converges() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-twice"), "msg-twice-1");
    bed.send(&contoso("obd-twice"), "msg-twice-2");
    bed.wait_until("both deliveries handled", |bed| bed.peek(crate::testbed::QUEUE).is_empty()).await;
    assert_converged(&bed).await;
    let patches = bed.requests().iter().filter(|r| r.method == "PATCH").count();
    assert!(patches <= 2, "at most one PATCH per delivery, got {patches}");
}

/// Holds the call after `boundary` with a long delay, waits until `boundary` itself was served, kills the handler,
/// then lets redelivery finish the job.
async fn kill_after(boundary: (&str, &str), hold: FaultMatch) {
    let bed = crate::testbed::start_with(sample_scenario(), &[]).await;
    let hold_id = bed
        .emulator
        .shared()
        .faults
        .add(FaultRule {
            matcher: hold,
            action: FaultAction::Delay { delay_ms: 30_000 },
            times: Some(1),
            probability: None,
            seed: None,
        })
        .unwrap();
    bed.send(&contoso("obd-kill"), "msg-kill");
    let (method, path_part) = boundary;
    bed.wait_until(&format!("{method} …{path_part} served"), |bed| {
        bed.requests().iter().any(|r| r.method == method && r.path.contains(path_part) && r.status < 300)
    })
    .await;
    bed.host().kill_handler();
    bed.emulator.shared().faults.remove(&hold_id);
    assert_converged(&bed).await;
    let status = bed.host().status();
    assert!(status["restarts"].as_u64().unwrap_or(0) >= 1, "the host restarted the handler: {status}");
}

fn hold(method: &str, host: &str, path_contains: &str) -> FaultMatch {
    FaultMatch {
        host: Some(host.to_owned()),
        method: Some(method.to_owned()),
        path_contains: Some(path_contains.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_identity_lookup() {
    kill_after(
        ("GET", "/userAssignedIdentities/"),
        hold("GET", "graph.microsoft.com", "/federatedIdentityCredentials"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_key_read() {
    kill_after(("GET", "/keys/cmk"), hold("POST", "*.vault.azure.net", "/wrapkey")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_before_the_storage_patch_lands() {
    kill_after(("POST", "/unwrapkey"), hold("PATCH", "management.azure.com", "/storageAccounts/")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_before_the_event_is_published() {
    kill_after(("PATCH", "/storageAccounts/"), hold("POST", "*.servicebus.windows.net", "/onboarding-events/messages"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_mode_creates_the_federated_credential_once() {
    let mut scenario = sample_scenario();
    scenario.applications[0].federated_identity_credentials.clear();
    // The handler still treats AADSTS70021 as permanent, so a created credential must work at once here; the
    // federated-credential window itself is tested at the emulator (tests/azure-emulator/tests/propagation.rs).
    scenario.propagation.federated_credential_seconds = 0;
    let bed = crate::testbed::start_with(scenario, &[("CMK_FIC_MODE", "ensure")]).await;
    bed.send(&contoso("obd-ensure"), "msg-ensure-1");
    bed.send(&contoso("obd-ensure"), "msg-ensure-2");
    assert_converged(&bed).await;
    let world = bed.emulator.shared().world.lock().unwrap();
    let app = world.directory.application_by_object_id("77777777-7777-7777-7777-777777777777").unwrap();
    assert_eq!(app.federated_identity_credentials.len(), 1, "{:#?}", app.federated_identity_credentials);
    drop(world);
    let _ = Duration::ZERO;
}
