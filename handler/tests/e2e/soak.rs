//! Issue 9, item 5: the fault soak in CI — 100 onboardings while a fifth of the requests to every emulated host fail,
//! the handler is killed at random and message locks expire (`cmk_testbed::soak`). The 1,000-onboarding run is the
//! benchmark `cargo bench -p handler --bench soak`.

use std::time::Duration;

use cmk_testbed::soak::{self, Soak, soak_onboarding};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_onboardings_complete_through_faults_kills_and_lost_locks() {
    // About 20 s on an idle 2-core machine; the bound leaves room for a loaded one.
    let figures = soak::run(crate::testbed::handler(), &Soak::standard(100, Duration::from_secs(150))).await;
    println!("{figures}");
    // The run exercised what it claims to.
    assert!(figures.faults_per_host.values().all(|fired| *fired > 0), "every host failed some requests: {figures}");
    assert!(figures.retries > 0, "{figures}");
    assert!(figures.kills >= 2 && figures.handler_restarts >= figures.kills.into(), "{figures}");
    assert!(figures.redeliveries > 0 && figures.lost_locks > 0, "{figures}");
}

/// Found by the soak: after each start, every invocation of the burst that arrived with it looked the identity chain
/// up itself (98 Graph reads for 7 handler processes in one run), though a process needs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboardings_arriving_together_look_the_identity_chain_up_once() {
    let burst = 16;
    let bed = crate::testbed::start_with(soak::scenario(burst), &[cmk_testbed::ONE_KEY_MANY_ACCOUNTS]).await;
    for i in 0..burst {
        bed.send(&soak_onboarding(i), &format!("msg-burst-{i}"));
    }
    bed.wait_until("the burst completed", |bed| bed.events_of("completed").len() == burst).await;
    let requests = bed.requests();
    let count = |host: &str, path_part: &str| {
        requests.iter().filter(|r| r.method == "GET" && r.host == host && r.path.contains(path_part)).count()
    };
    assert_eq!(count("management.azure.com", "/userAssignedIdentities/"), 1, "ARM identity reads");
    assert_eq!(count("graph.microsoft.com", "/federatedIdentityCredentials"), 1, "Graph credential reads");
}
