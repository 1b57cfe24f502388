//! One deadline per invocation: with a short `functionTimeout` and a degraded Azure (slow Key Vault, throttling and
//! outages with `Retry-After`), every invocation answers before the host's timeout, the delayed retry copy carries
//! the onboarding on, and it completes, with no host timeout and no handler restart.

use std::time::Duration;

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
use azure_emulator::servicebus::MessageState;
use cmk_testbed::TestBed;

use crate::testbed::{contoso, handler, sample_scenario};

fn rule(host: &str, method: Option<&str>, action: FaultAction, times: u32) -> FaultRule {
    FaultRule {
        matcher: FaultMatch { host: Some(host.into()), method: method.map(Into::into), path_contains: None },
        action,
        times: Some(times),
        probability: None,
        seed: None,
    }
}

fn respond(status: u16, retry_after: u64) -> FaultAction {
    FaultAction::Respond { status, retry_after: Some(retry_after), error_code: None, message: None }
}

/// The shipped app with `functionTimeout` set to `timeout` in its host.json, which both the host and the handler read.
async fn with_function_timeout(timeout: &str) -> TestBed {
    TestBed::start_custom(handler(), sample_scenario(), &[], |app| {
        let path = app.join("host.json");
        let mut host: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        host["functionTimeout"] = timeout.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&host).unwrap()).unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_azure_never_holds_an_invocation_past_the_function_timeout() {
    // 10 s: the handler works for at most 5.3 s and answers within 8 s.
    let bed = with_function_timeout("00:00:10").await;
    let faults = &bed.emulator.shared().faults;
    // Each Key Vault request of the first attempts takes 4 s: three of them in a row (9.7 s with Graph's outage)
    // would run past the host's 10 s, as the per-call retry budget used to let them.
    faults.add(rule("graph.microsoft.com", None, respond(503, 2), 1)).unwrap();
    faults.add(rule("contoso-kv.vault.azure.net", None, FaultAction::Delay { delay_ms: 4000 }, 3)).unwrap();
    // Then ARM throttles the PATCH for ten minutes: no invocation can wait that long, a scheduled retry can.
    faults.add(rule("management.azure.com", Some("PATCH"), respond(429, 600), 1)).unwrap();

    bed.send(&contoso("obd-deadline"), "msg-deadline");
    bed.wait_until("a retry scheduled about ten minutes out (the 429's Retry-After)", |bed| {
        let soon = bed.emulator.shared().clock.now() + time::Duration::minutes(9);
        bed.queue()
            .iter()
            .any(|m| m.state == MessageState::Scheduled && m.scheduled_enqueue_time.is_some_and(|at| at > soon))
    })
    .await;
    assert!(bed.events_of("completed").is_empty(), "not before the throttling is over");
    // Emulated time, not a sleep: the scheduled copy becomes due.
    bed.emulator.shared().clock.advance(Duration::from_secs(11 * 60));
    bed.emulator.shared().bus.clock_advanced();
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;

    let status = bed.host().status();
    assert_eq!(status["invocations"]["timedOut"], 0, "no invocation reached functionTimeout: {status}");
    assert_eq!(status["invocations"]["failed"], 0, "every invocation answered 2xx: {status}");
    assert_eq!(status["restarts"], 0, "the handler was never restarted: {status}");
    let completed = bed.events_of("completed");
    assert_eq!(completed.len(), 1);
    let attempts = completed[0]["data"]["attempts"].as_u64().unwrap();
    assert!(attempts >= 4, "two attempts out of time, one throttled, then success: {attempts}");
    assert!(bed.dead_letters().is_empty());
    assert!(faults.list().iter().all(|f| f.fired == f.rule.times.map(u64::from).unwrap()), "{:#?}", faults.list());
    let output = bed.host().handler_output().join("\n");
    assert!(output.contains("InvocationTimeUp"), "attempts ran out of time and said so");
}
