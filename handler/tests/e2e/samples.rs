//! The samples in `samples/` end as the README promises: good → completed, waiting → action_required then
//! completed after `customer-fixes.json` (and the sample scenario's propagation delays, as `cargo xtask demo` shows),
//! poison → dead-lettered with its reason.

use azure_emulator::scenario::Change;

use crate::testbed::{longest_propagation, repo_root, sample_message, sample_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_end_as_documented() {
    let bed = crate::testbed::start().await;
    bed.send(&sample_message("onboarding-good.json"), "sample-good");
    bed.send(&sample_message("onboarding-waiting-on-customer.json"), "sample-waiting");
    bed.send(&sample_message("onboarding-poison.json"), "sample-poison");
    bed.wait_until("good completed, poison dead-lettered, customer asked", |bed| {
        bed.events_of("completed").len() == 1
            && bed.dead_letters().len() == 1
            && !bed.events_of("action_required").is_empty()
    })
    .await;
    assert_eq!(bed.events_of("completed")[0]["subject"], "obd-2026-0001");
    assert_eq!(bed.events_of("action_required")[0]["data"]["reasonCode"], "ServicePrincipalMissing");
    assert_eq!(bed.dead_letters()[0].application_properties["cmk-dead-letter-reason"], "InvalidVaultUri");

    let fixes: Vec<Change> =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("samples/customer-fixes.json")).unwrap())
            .unwrap();
    bed.apply(fixes);
    bed.advance_clock(longest_propagation(&sample_scenario())).await;
    bed.wait_until("the waiting sample completed", |bed| bed.events_of("completed").len() == 2).await;
    bed.wait_queue_idle().await;
    assert_eq!(bed.events_of("completed")[1]["subject"], "obd-2026-0002");
    assert_eq!(bed.dead_letters().len(), 1);
}
