//! Retry decisions: backoff with full jitter (floored, capped), Retry-After, deadlines, dead-lettering, and
//! `action_required` published once per distinct customer-side state.

use std::time::Duration;

use cmk_handler::decide::{
    AttemptState, Decision, InvocationTimes, RetryPolicy, decide, decide_with_jitter, in_invocation_backoff,
    invocation_times, state_fingerprint,
};
use cmk_handler::error::{AzureError, AzureService, CustomerAction, Error, TransportError, TransportErrorKind};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

fn policy() -> RetryPolicy {
    RetryPolicy {
        transient_base: Duration::from_secs(60),
        transient_max: Duration::from_secs(3600),
        customer_base: Duration::from_secs(900),
        customer_max: Duration::from_secs(21_600),
        deadline: Duration::from_secs(168 * 3600),
    }
}

fn attempt(n: u32, last_action_state: Option<String>) -> AttemptState {
    AttemptState {
        attempt: n,
        first_attempt_at: NOW - time::Duration::hours(1),
        last_action_state,
        provider_registered_at: None,
        copied_at: None,
    }
}

fn timeout() -> Error {
    Error::Transport(TransportError {
        service: AzureService::Arm,
        operation: "update storage account",
        kind: TransportErrorKind::Timeout,
        message: "timed out".into(),
    })
}

fn azure(status: u16, code: &str, inner: Option<&str>, retry_after: Option<Duration>) -> Error {
    Error::Azure(AzureError {
        service: AzureService::KeyVault,
        operation: "get key",
        status,
        code: Some(code.into()),
        inner_code: inner.map(Into::into),
        message: "m".into(),
        retry_after,
    })
}

fn waiting(detail: &str) -> Error {
    Error::Customer { action: CustomerAction::KeyDisabled, detail: detail.into() }
}

fn scheduled_at(d: &Decision) -> OffsetDateTime {
    match d {
        Decision::ScheduleRetry { at, .. } => *at,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn transient_backoff_is_exponential_jittered_floored_and_capped() {
    let p = policy();
    let at = |n, jitter| scheduled_at(&decide_with_jitter(&timeout(), &attempt(n, None), NOW, &p, jitter)) - NOW;
    // Attempt 1: the ceiling is the base, and the floor keeps it there.
    assert_eq!(at(1, 0.0), time::Duration::seconds(60));
    assert_eq!(at(1, 0.999), time::Duration::seconds(60));
    // Attempt 4: ceiling 480 s; full jitter spreads over it, floored at the base.
    assert_eq!(at(4, 0.5), time::Duration::seconds(240));
    assert_eq!(at(4, 0.05), time::Duration::seconds(60));
    // Attempt 20: capped at the maximum.
    assert!(at(20, 0.999_999) <= time::Duration::seconds(3600));
    assert!(at(20, 0.999_999) > time::Duration::seconds(3590));
    assert!(at(u32::MAX, 0.5) <= time::Duration::seconds(3600), "no overflow on absurd attempt counts");
}

#[test]
fn retry_after_wins_when_longer() {
    let e = azure(429, "Throttled", None, Some(Duration::from_secs(600)));
    assert_eq!(
        scheduled_at(&decide_with_jitter(&e, &attempt(1, None), NOW, &policy(), 0.0)) - NOW,
        time::Duration::seconds(600)
    );
    let short = azure(429, "Throttled", None, Some(Duration::from_secs(5)));
    assert_eq!(
        scheduled_at(&decide_with_jitter(&short, &attempt(1, None), NOW, &policy(), 0.0)) - NOW,
        time::Duration::seconds(60)
    );
}

#[test]
fn customer_waits_use_the_longer_backoff_and_announce_each_state_once() {
    let p = policy();
    let first = decide_with_jitter(&waiting("key k is disabled"), &attempt(1, None), NOW, &p, 0.3);
    let Decision::ScheduleRetry { at, publish_action_required, state_fingerprint } = first else { panic!("{first:?}") };
    assert_eq!(at - NOW, time::Duration::seconds(900));
    assert!(publish_action_required);
    let fingerprint = state_fingerprint.expect("a customer wait has a fingerprint");
    assert!(fingerprint.starts_with("KeyDisabled:"), "{fingerprint}");

    // Same state on the next attempt: no new event.
    let again = decide_with_jitter(&waiting("key k is disabled"), &attempt(2, Some(fingerprint.clone())), NOW, &p, 0.3);
    assert!(matches!(again, Decision::ScheduleRetry { publish_action_required: false, .. }), "{again:?}");

    // The customer changed something (different detail, or a different action): a new event.
    let changed = decide_with_jitter(
        &waiting("key k version 2 is disabled"),
        &attempt(3, Some(fingerprint.clone())),
        NOW,
        &p,
        0.3,
    );
    assert!(matches!(changed, Decision::ScheduleRetry { publish_action_required: true, .. }), "{changed:?}");
    let other = azure(403, "Forbidden", Some("ForbiddenByRbac"), None);
    let other_decision = decide_with_jitter(&other, &attempt(3, Some(fingerprint)), NOW, &p, 0.3);
    assert!(matches!(other_decision, Decision::ScheduleRetry { publish_action_required: true, .. }));

    // Transient failures neither publish nor replace the recorded state.
    let transient = decide_with_jitter(&timeout(), &attempt(4, Some("KeyDisabled:x".into())), NOW, &p, 0.3);
    assert!(matches!(
        transient,
        Decision::ScheduleRetry { publish_action_required: false, state_fingerprint: None, .. }
    ));
}

#[test]
fn fingerprints_ignore_volatile_message_text() {
    let a = AzureError {
        service: AzureService::Entra,
        operation: "get customer-tenant token",
        status: 400,
        code: Some("unauthorized_client".into()),
        inner_code: Some("AADSTS700016".into()),
        message: "AADSTS700016: … Trace ID: 1 Timestamp: 10:00".into(),
        retry_after: None,
    };
    let b = AzureError { message: "AADSTS700016: … Trace ID: 2 Timestamp: 11:00".into(), ..a.clone() };
    assert_eq!(state_fingerprint(&Error::Azure(a)), state_fingerprint(&Error::Azure(b)));
    assert_eq!(state_fingerprint(&timeout()), None);
}

#[test]
fn permanent_errors_are_dead_lettered_with_their_reason() {
    let e = azure(401, "Unauthorized", None, None);
    let Error::Azure(mut inner) = e else { unreachable!() };
    inner.message = "AKV10032: Invalid issuer.".into();
    let d = decide(&Error::Azure(inner), &attempt(1, None), NOW, &policy());
    match d {
        Decision::DeadLetter { reason_code, description } => {
            assert_eq!(reason_code, "VaultTenantMismatch");
            assert!(description.contains("AKV10032"), "{description}");
        }
        other => panic!("{other:?}"),
    }
    let huge = Error::Verification("x".repeat(5000));
    let deadline = AttemptState { first_attempt_at: NOW - time::Duration::days(30), ..attempt(1, None) };
    let Decision::DeadLetter { description, .. } = decide(&huge, &deadline, NOW, &policy()) else { panic!() };
    assert!(description.chars().count() <= 1025);
}

#[test]
fn the_deadline_ends_retries_and_is_never_overshot() {
    let p = policy();
    let first = NOW - time::Duration::hours(168);
    let past = AttemptState { attempt: 40, first_attempt_at: first, ..attempt(1, None) };
    match decide_with_jitter(&waiting("key k is disabled"), &past, NOW, &p, 0.5) {
        Decision::DeadLetter { reason_code, description } => {
            assert_eq!(reason_code, "DeadlineExceeded");
            assert!(description.contains("KeyDisabled"), "{description}");
            assert!(description.contains("key k is disabled"), "{description}");
        }
        other => panic!("{other:?}"),
    }
    // Ten minutes before the deadline, a six-hour wait is cut to one last attempt at the deadline.
    let almost =
        AttemptState { attempt: 30, first_attempt_at: first + time::Duration::minutes(10), ..attempt(1, None) };
    let at = scheduled_at(&decide_with_jitter(&waiting("d"), &almost, NOW, &p, 0.99));
    assert_eq!(at, almost.first_attempt_at + p.deadline);
}

#[test]
fn in_invocation_backoff_takes_the_longer_of_jitter_and_retry_after() {
    let (base, max) = (Duration::from_millis(500), Duration::from_secs(30));
    assert_eq!(in_invocation_backoff(1, base, max, None, 0.5), Duration::from_millis(250));
    assert_eq!(in_invocation_backoff(3, base, max, None, 0.5), Duration::from_millis(1000));
    assert_eq!(in_invocation_backoff(30, base, max, None, 0.5), Duration::from_secs(15));
    assert_eq!(in_invocation_backoff(3, base, max, Some(Duration::from_secs(7)), 0.5), Duration::from_secs(7));
    assert_eq!(in_invocation_backoff(3, base, max, Some(Duration::from_millis(10)), 0.0), Duration::from_millis(10));
}

#[test]
fn absurd_waits_and_deadlines_do_not_panic() {
    let e = azure(429, "Throttled", None, Some(Duration::from_secs(u64::MAX)));
    let at = scheduled_at(&decide_with_jitter(&e, &attempt(1, None), NOW, &policy(), 0.5));
    assert_eq!(at, attempt(1, None).first_attempt_at + policy().deadline, "capped at the deadline");
    let endless = RetryPolicy { deadline: Duration::from_secs(u64::MAX), ..policy() };
    assert!(matches!(decide_with_jitter(&e, &attempt(1, None), NOW, &endless, 0.5), Decision::ScheduleRetry { .. }));
}

#[test]
fn an_invocation_answers_well_before_the_function_timeout() {
    let secs = Duration::from_secs;
    // The shipped host.json (10 min) and default budget (90 s): the budget binds; answer a minute before the timeout.
    assert_eq!(invocation_times(Some(secs(600)), secs(90)), InvocationTimes { work: secs(90), answer: secs(540) });
    // A short timeout binds instead: a fifth kept as margin, a third of the rest for settling.
    assert_eq!(
        invocation_times(Some(secs(6)), secs(90)),
        InvocationTimes { work: Duration::from_millis(3200), answer: Duration::from_millis(4800) }
    );
    // Margin and settling reserve are capped at a minute each for long timeouts.
    assert_eq!(
        invocation_times(Some(secs(3600)), secs(86_400)),
        InvocationTimes { work: secs(3600 - 60 - 60), answer: secs(3600 - 60) }
    );
    // Unbounded (-1): the budget, plus a minute to settle.
    assert_eq!(invocation_times(None, secs(90)), InvocationTimes { work: secs(90), answer: secs(150) });
    // For every timeout from the 1-second minimum up, work ≤ answer < timeout.
    for timeout in [1, 2, 5, 59, 60, 61, 299, 300, 601, 1800, 86_400] {
        let times = invocation_times(Some(secs(timeout)), secs(90));
        assert!(times.work <= times.answer && times.answer < secs(timeout), "{timeout}: {times:?}");
        assert!(times.work > Duration::ZERO, "{timeout}: {times:?}");
    }
}
