//! Done-when 4: faults on every Azure host (429 with Retry-After, 503, connection resets): the onboarding still
//! completes, and the request log shows Retry-After honoured.

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};

use crate::testbed::contoso;

fn rule(host: &str, action: FaultAction) -> FaultRule {
    FaultRule {
        matcher: FaultMatch { host: Some(host.into()), method: None, path_contains: None },
        action,
        times: Some(1),
        probability: None,
        seed: None,
    }
}

fn throttle(retry_after: u64) -> FaultAction {
    FaultAction::Respond {
        status: 429,
        retry_after: Some(retry_after),
        error_code: Some("TooManyRequests".into()),
        message: None,
    }
}

fn unavailable() -> FaultAction {
    FaultAction::Respond {
        status: 503,
        retry_after: None,
        error_code: Some("ServiceUnavailable".into()),
        message: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_through_throttling_outages_and_resets() {
    let bed = crate::testbed::start().await;
    let faults = &bed.emulator.shared().faults;
    for fault in [
        rule("management.azure.com", throttle(1)),
        rule("management.azure.com", unavailable()),
        rule("graph.microsoft.com", throttle(1)),
        rule("login.microsoftonline.com", unavailable()),
        rule("contoso-kv.vault.azure.net", throttle(1)),
        rule("contoso-kv.vault.azure.net", FaultAction::Reset { reset: true }),
        rule("*.servicebus.windows.net", unavailable()),
        rule("*.servicebus.windows.net", FaultAction::Reset { reset: true }),
    ] {
        faults.add(fault).unwrap();
    }
    bed.send(&contoso("obd-faults"), "msg-faults");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert_eq!(bed.events_of("completed").len(), 1);
    assert!(bed.dead_letters().is_empty());

    // Every fault fired...
    let fired: Vec<_> = faults.list();
    assert!(fired.iter().all(|f| f.fired >= 1), "every fault fired: {fired:#?}");
    // ...and after each 429 the next request to that host came at least Retry-After (1 s) later.
    let log = bed.requests();
    for (i, throttled) in log.iter().enumerate().filter(|(_, r)| r.status == 429) {
        let next = log[i + 1..].iter().find(|r| r.host == throttled.host).expect("a retry followed the 429");
        let gap = next.time - throttled.time;
        assert!(
            gap >= time::Duration::milliseconds(1000) - time::Duration::milliseconds(next.duration_ms as i64),
            "Retry-After honoured on {}: gap {gap}",
            throttled.host
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_even_publishing_fails_the_host_redelivers() {
    let bed = crate::testbed::start().await;
    // A refusal the in-invocation retry does not retry: the handler must answer non-2xx, not lose the message.
    let refuse = FaultRule {
        matcher: FaultMatch {
            host: Some("*.servicebus.windows.net".into()),
            method: Some("POST".into()),
            path_contains: Some("/onboarding-events/messages".into()),
        },
        action: FaultAction::Respond {
            status: 403,
            retry_after: None,
            error_code: Some("Unauthorized".into()),
            message: None,
        },
        times: Some(2),
        probability: None,
        seed: None,
    };
    bed.emulator.shared().faults.add(refuse).unwrap();
    bed.send(&contoso("obd-publish-fails"), "msg-publish-fails");
    bed.wait_until("completed after redeliveries", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    let status = bed.host().status();
    assert_eq!(status["invocations"]["failed"], 2, "two deliveries failed and were redelivered: {status}");
    assert_eq!(bed.events_of("completed").len(), 1);
    assert!(bed.dead_letters().is_empty());
}
