//! Pacing at Azure's limits (issue 12), CI-sized: a few hundred onboardings of new accounts in one subscription and
//! region, two handler instances, the emulator enforcing the Storage RP's documented limits on a time scale. The
//! Storage RP allows 10 writes per second; the instances together send more than that unless they pace. Every
//! onboarding completes, none is dead-lettered, and the instances stay under the limit: at most 2% of ARM requests
//! are answered 429.

use std::path::Path;
use std::time::{Duration, Instant};

use azure_emulator::limits::LimitsConfig;
use cmk_testbed::{ALL_EVENTS, TestBed};

use crate::testbed::{CONTOSO_TENANT, handler, onboarding, sample_scenario};

const ONBOARDINGS: usize = 240;
/// Azure seconds per real second: the Storage RP's 10 writes per second become 40, its hour 15 minutes.
const TIME_SCALE: f64 = 4.0;

fn account(i: usize) -> String {
    format!(
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/paced{i:04}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_pace_a_bulk_onboarding_under_the_storage_write_limit() {
    let mut scenario = sample_scenario();
    for i in 0..ONBOARDINGS {
        scenario.storage_accounts.push(cmk_testbed::fresh_storage_account(account(i)));
    }
    // A session slot stays with its account for `sessionIdleTimeout` (1 s, the least host.json allows) after its only
    // message: 64 sessions per instance instead of 16, so the run is bound by Azure's limit, not by slots.
    let bed = TestBed::start_custom(
        handler(),
        scenario,
        &[("RUST_LOG", "warn"), cmk_testbed::ONE_KEY_MANY_ACCOUNTS],
        |app: &Path| {
            let path = app.join("host.json");
            let mut host: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            host["extensions"]["serviceBus"]["maxConcurrentSessions"] = 64.into();
            std::fs::write(&path, serde_json::to_vec_pretty(&host).unwrap()).unwrap();
        },
    )
    .await;
    let shared = bed.emulator.shared();
    shared.limits.configure(LimitsConfig { time_scale: TIME_SCALE, ..LimitsConfig::default() }).unwrap();
    let _second = bed.start_instance().await;

    let started = Instant::now();
    for i in 0..ONBOARDINGS {
        let body = onboarding(
            &format!("obd-paced-{i}"),
            CONTOSO_TENANT,
            &account(i),
            "https://contoso-kv.vault.azure.net/",
            "cmk",
        );
        bed.send(&body, &format!("msg-paced-{i}"));
    }
    // Not `wait_until`'s 90 s: the limit itself makes this run take at least 12 s, and a debug build on a loaded
    // machine is slow; still a bound.
    loop {
        let done = bed.peek(ALL_EVENTS).len();
        if done >= ONBOARDINGS {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "only {done} of {ONBOARDINGS} onboardings completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();

    assert_eq!(bed.events_of("completed").len(), ONBOARDINGS, "every onboarding completed");
    assert!(bed.dead_letters().is_empty(), "a throttled onboarding is delayed, never dead-lettered");
    let log = bed.requests();
    let arm: Vec<_> = log.iter().filter(|r| r.host == "management.azure.com").collect();
    let throttled = arm.iter().filter(|r| r.status == 429).count();
    let writes = arm.iter().filter(|r| r.method == "PATCH" && r.status == 200).count();
    assert_eq!(writes, ONBOARDINGS, "one storage write per onboarding");
    // The emulator enforces the limit, so the writes took at least (n - 10) / 40 s; pacing is what kept the 429s few.
    let floor = Duration::from_secs_f64((ONBOARDINGS - 10) as f64 / (10.0 * TIME_SCALE));
    assert!(elapsed >= floor, "the run cannot beat the limit: {elapsed:?} < {floor:?}");
    let share = throttled as f64 / arm.len() as f64;
    println!(
        "{ONBOARDINGS} onboardings in {elapsed:?}; ARM requests {}, 429s {throttled} ({:.2}%)",
        arm.len(),
        share * 100.0
    );
    assert!(share <= 0.02, "{throttled} of {} ARM requests throttled: {}", arm.len(), shared.limits.status());
}
