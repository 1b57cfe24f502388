//! Retry, wait or dead-letter: the decision after a failed attempt, from (error, attempt state, clock) (pure).
//!
//! Backoff is exponential with full jitter (so a burst of failures does not come back as a burst), floored at the
//! base delay (a scheduled copy due "now" would only spin) and capped. The jitter is a parameter so tests are exact.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::{Disposition, Error};

/// Where this message is in its life, from the delayed-retry copy's application properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptState {
    /// 1-based number of this attempt.
    pub attempt: u32,
    pub first_attempt_at: OffsetDateTime,
    /// Fingerprint of the last `action_required` event published for this onboarding.
    pub last_action_state: Option<String>,
    /// When an earlier attempt re-registered the storage provider for the preview feature (then later attempts only
    /// poll its state).
    pub provider_registered_at: Option<OffsetDateTime>,
    /// When the retry copy being attempted was sent (`None` on a first delivery, or on a copy that does not say).
    pub copied_at: Option<OffsetDateTime>,
}

/// Delays between scheduled retries, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub transient_base: Duration,
    pub transient_max: Duration,
    pub customer_base: Duration,
    pub customer_max: Duration,
    /// Measured from the first attempt.
    pub deadline: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            transient_base: settings.delayed_retry_base,
            transient_max: settings.delayed_retry_max,
            customer_base: settings.customer_retry_base,
            customer_max: settings.customer_retry_max,
            deadline: settings.deadline,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send a scheduled copy of the message, due at `at`.
    ScheduleRetry {
        at: OffsetDateTime,
        /// True only when the customer-facing state changed since the last `action_required` event.
        publish_action_required: bool,
        /// The state to record on the copy (`cmk-last-action-state`); `None` keeps the previous one.
        state_fingerprint: Option<String>,
    },
    /// Publish `failed` and send the dead-letter copy.
    DeadLetter { reason_code: String, description: String },
}

/// Longest dead-letter description: it travels as a Service Bus application property.
const MAX_DESCRIPTION_CHARS: usize = 1024;

/// How one invocation spends its time, as offsets from when it started (ARCHITECTURE.md, decision 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvocationTimes {
    /// Every Azure call, retry, poll and token fetch of the onboarding steps ends by then; past it the attempt fails
    /// as transient and a delayed retry is scheduled.
    pub work: Duration,
    /// Settling (event and copy) ends by then, and the host gets its answer: well before `functionTimeout`.
    pub answer: Duration,
}

/// Longest safety margin kept before the host's `functionTimeout`, and longest time set aside for settling.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// The invocation's times for the host's `functionTimeout` (`None`: unbounded) and `CMK_RETRY_BUDGET_SECONDS`:
/// answer a fifth of the timeout (at most a minute) before it, keep a third of what remains (at most a minute) for
/// settling, and give the steps the rest, or the retry budget if that is shorter. With the shipped 10-minute timeout
/// and 90-second budget: work 90 s, answer by 9 min. With a 6-second timeout: work 3.2 s, answer by 4.8 s.
pub fn invocation_times(function_timeout: Option<Duration>, retry_budget: Duration) -> InvocationTimes {
    let Some(timeout) = function_timeout else {
        return InvocationTimes { work: retry_budget, answer: retry_budget.saturating_add(MAX_MARGIN) };
    };
    let answer = timeout - (timeout / 5).min(MAX_MARGIN);
    let settling = (answer / 3).min(MAX_MARGIN);
    InvocationTimes { work: retry_budget.min(answer - settling), answer }
}

/// [`decide_with_jitter`] with a random jitter.
pub fn decide(error: &Error, attempt: &AttemptState, now: OffsetDateTime, policy: &RetryPolicy) -> Decision {
    decide_with_jitter(error, attempt, now, policy, fastrand::f64())
}

/// Decides what happens after `error` ended attempt `attempt.attempt`. `jitter` is in `[0, 1)`.
pub fn decide_with_jitter(
    error: &Error,
    attempt: &AttemptState,
    now: OffsetDateTime,
    policy: &RetryPolicy,
    jitter: f64,
) -> Decision {
    let (base, max) = match error.disposition() {
        Disposition::Permanent => {
            return Decision::DeadLetter {
                reason_code: error.reason_code().to_owned(),
                description: describe(&error.to_string()),
            };
        }
        Disposition::Transient => (policy.transient_base, policy.transient_max),
        Disposition::WaitingOnCustomer => (policy.customer_base, policy.customer_max),
    };
    let deadline_at = add_saturating(attempt.first_attempt_at, policy.deadline);
    if now >= deadline_at {
        return Decision::DeadLetter {
            reason_code: "DeadlineExceeded".to_owned(),
            description: describe(&format!(
                "no success within {} hours of the first attempt ({} attempts); last error {}: {error}",
                policy.deadline.as_secs() / 3600,
                attempt.attempt,
                error.reason_code()
            )),
        };
    }

    let mut delay = full_jitter(attempt.attempt, base, max, jitter).max(base);
    if let Some(asked) = error.retry_after() {
        delay = delay.max(asked);
    }
    // One last attempt at the deadline rather than none after it.
    let at = add_saturating(now, delay).min(deadline_at);

    let state_fingerprint = state_fingerprint(error);
    let publish_action_required =
        state_fingerprint.as_ref().is_some_and(|fp| attempt.last_action_state.as_deref() != Some(fp.as_str()));
    Decision::ScheduleRetry { at, publish_action_required, state_fingerprint }
}

/// The backoff before in-invocation retry `attempt` (1-based): full jitter, capped at `max`, but never shorter
/// than what the service asked for with `Retry-After`.
pub fn in_invocation_backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    full_jitter(attempt, base, max, jitter).max(retry_after.unwrap_or(Duration::ZERO))
}

/// `time + duration`, saturating instead of panicking: a service's `Retry-After` is untrusted input.
fn add_saturating(time: OffsetDateTime, duration: Duration) -> OffsetDateTime {
    time::Duration::try_from(duration)
        .ok()
        .and_then(|d| time.checked_add(d))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_offset(time.offset()))
}

/// `jitter × min(max, base × 2^(attempt-1))`.
fn full_jitter(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Identifies what the customer currently has to do, so `action_required` is published once per distinct state.
/// Built from the reason and the parts of the error that change when the customer's state changes — never from
/// free text that carries timestamps or trace ids (Entra messages do).
pub fn state_fingerprint(error: &Error) -> Option<String> {
    if error.disposition() != Disposition::WaitingOnCustomer {
        return None;
    }
    let detail = match error {
        Error::Customer { detail, .. } => detail.clone(),
        Error::Azure(e) => format!(
            "{}|{}|{}|{}|{}",
            e.service,
            e.status,
            e.code.as_deref().unwrap_or(""),
            e.inner_code.as_deref().unwrap_or(""),
            serde_json::to_string(&error.customer_action()).unwrap_or_default()
        ),
        other => other.to_string(),
    };
    let reason = error.reason_code();
    let digest = uuid::Uuid::new_v5(&FINGERPRINT_NAMESPACE, format!("{reason}\n{detail}").as_bytes());
    Some(format!("{reason}:{}", &digest.simple().to_string()[..16]))
}

/// Fixed namespace for state fingerprints (a random UUID of ours; changing it re-announces every waiting state).
const FINGERPRINT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f1c_2a4e_8b7d_4c39_9e61_0d2f_7a3b_c4e5);

/// `text` cut to the longest dead-letter description.
pub fn describe(text: &str) -> String {
    crate::text::truncate(text, MAX_DESCRIPTION_CHARS)
}
