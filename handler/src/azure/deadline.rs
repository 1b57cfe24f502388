//! The invocation's deadline: one instant that bounds every retry, poll, token fetch and HTTP attempt under it.
//!
//! The workflow sets it once per phase of an invocation ([`within`]); the clients below read it ([`remaining`],
//! [`sleep`]) instead of taking it as a parameter of every call, because `azure_identity` credentials call our
//! transport with no way to pass one through. Without a deadline in scope (the ops CLI), the clients fall back to
//! their per-call retry budget. ARCHITECTURE.md, decision 14.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `future` under `deadline`. A nested scope can only shorten the deadline, never extend it. The future is
/// boxed: scopes nest (invocation, step, call), and their state inline would overflow a worker thread's stack.
pub async fn within<F: Future>(deadline: Instant, future: F) -> F::Output {
    let effective = current().map_or(deadline, |outer| outer.min(deadline));
    DEADLINE.scope(effective, Box::pin(future)).await
}

/// The deadline in scope, if any.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Time left before the deadline in scope (zero once it passed); `None` without one.
pub fn remaining() -> Option<Duration> {
    current().map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// `timeout`, shortened to what is left of the deadline in scope.
pub fn bounded(timeout: Duration) -> Duration {
    remaining().map_or(timeout, |left| left.min(timeout))
}

/// Sleeps `wait` if that ends before the deadline in scope and returns true; returns false at once otherwise. Any
/// `wait` is safe, however large (a hostile `Retry-After` of 10^12 seconds never overflows or stalls).
pub async fn sleep(wait: Duration) -> bool {
    if remaining().is_some_and(|left| wait >= left) {
        return false;
    }
    match Instant::now().checked_add(wait) {
        Some(until) => {
            tokio::time::sleep_until(until).await;
            true
        }
        None => false,
    }
}

/// Runs `future`, giving up when the deadline in scope passes; `None` then (the future is dropped).
pub async fn run<F: Future>(future: F) -> Option<F::Output> {
    match current() {
        Some(deadline) => tokio::time::timeout_at(deadline, Box::pin(future)).await.ok(),
        None => Some(future.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_in_scope_means_no_bound() {
        assert_eq!(current(), None);
        assert_eq!(bounded(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn nested_scopes_only_shorten() {
        let soon = Instant::now() + Duration::from_secs(10);
        let later = soon + Duration::from_secs(100);
        within(soon, async {
            within(later, async { assert_eq!(current(), Some(soon)) }).await;
            within(soon - Duration::from_secs(5), async { assert_eq!(current(), Some(soon - Duration::from_secs(5))) })
                .await;
            assert!(bounded(Duration::from_secs(3600)) <= Duration::from_secs(10));
        })
        .await;
    }

    #[tokio::test]
    async fn a_wait_past_the_deadline_returns_at_once() {
        let deadline = Instant::now() + Duration::from_secs(30);
        within(deadline, async {
            assert!(!sleep(Duration::from_secs(1_000_000_000_000)).await);
            assert!(!sleep(Duration::MAX).await);
            assert!(!sleep(Duration::from_secs(31)).await);
            assert!(sleep(Duration::from_millis(1)).await);
        })
        .await;
        // Without a deadline an unrepresentable wait is refused rather than overflowing.
        assert!(!sleep(Duration::MAX).await);
    }

    #[tokio::test]
    async fn run_gives_up_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(20);
        let outcome = within(deadline, run(std::future::pending::<()>())).await;
        assert_eq!(outcome, None);
        assert_eq!(run(async { 7 }).await, Some(7));
    }
}
