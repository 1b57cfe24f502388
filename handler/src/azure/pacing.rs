//! Pacing per subscription: ARM requests of one subscription take turns, spaced by what Azure says is left of its
//! limits, so that several handler instances together stay under them instead of thrashing into 429s.
//!
//! Each response's `x-ms-ratelimit-remaining-resource` entries (`Microsoft.Storage/Write_ObservationWindow_01:00:00;
//! 1187`: the resource provider's window and what is left of it) set the spacing of the next requests of that
//! subscription and kind (read or write) to `window / (SHARE × remaining)`: the fewer are left, the slower every
//! instance goes. Instances do not talk to each other; they read the same remaining count, so with `N` instances the
//! remaining settles where their rates add up to the limit: at `limit / (1 + N × SHARE)` left, which is
//! `N×SHARE / (1 + N×SHARE)` of the limit (94% for 4 instances, 80% for one). A 429's `Retry-After` holds the
//! subscription's requests until then, when that ends within the invocation's deadline. A fresh lane sends one
//! request first and lets its answer set the pace. Waits end within the invocation's deadline; a turn after it is
//! [`Error::Paced`], a transient error whose retry copy is scheduled for that turn (ARCHITECTURE.md, decision 24).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;
use url::Url;

use super::deadline;
use crate::error::Error;

/// How many times faster than "remaining over the window" one instance may go (the module's equilibrium).
const SHARE: f64 = 4.0;

/// How long the other requests of a fresh lane wait for its first answer at most.
const PROBE_HOLD: Duration = Duration::from_secs(1);

/// The turn-taking of one process, by subscription and kind of request.
#[derive(Debug, Default)]
pub struct Pacer {
    lanes: Mutex<HashMap<Lane, Arc<LaneGate>>>,
}

/// Requests that share a limit: one subscription's reads, or its writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lane {
    pub subscription: String,
    pub kind: &'static str,
}

/// One lane's queue and what its answers taught.
#[derive(Debug, Default)]
struct LaneGate {
    /// Requests wait here in arrival order (tokio's mutex is fair); only the head of the queue watches the clock, so
    /// the spacing it waits for is the one in force when its turn comes, not the one known when it queued.
    queue: tokio::sync::Mutex<()>,
    /// Wakes the head of the queue when an answer changes the spacing or a hold.
    changed: Notify,
    state: Mutex<State>,
}

/// One of Azure's windows, as its answers describe it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    length: Duration,
    remaining: f64,
    /// The window's limit as far as seen: the most ever reported remaining, plus the request that reported it.
    limit: f64,
}

/// The least share of a window's limit the spacing assumes is left (decision 24): 2.5%, so that one instance waits
/// at most `window / (SHARE × 2.5% × limit)`, a tenth of the fleet's steady spacing with four instances.
const FLOOR: f64 = 0.025;

/// A 429's hold on a lane.
#[derive(Debug, Clone, Copy)]
struct Hold {
    until: Instant,
    since: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// What Azure last reported of each of the lane's windows.
    windows: Vec<Window>,
    /// Requests sent and not answered yet: the remaining counts above do not know them.
    in_flight: u32,
    /// Requests queued or waiting for their turn.
    waiting: u32,
    last_sent: Option<Instant>,
    /// Nothing goes before `until` (a 429's `Retry-After`); `since`: when the last 429 set or renewed it, so a retry
    /// copy made before then has not seen it.
    hold: Option<Hold>,
    /// An answer has been seen: until then the first request goes alone and its answer sets the pace (otherwise
    /// every invocation of a fresh process would rush the subscription at once).
    answered: bool,
}

impl State {
    /// `window / (SHARE × remaining)` of the tightest window, counting what is in flight as spent. The remaining count
    /// is taken as at least [`FLOOR`] of the window's limit: a count near zero is soon stale (a sliding window frees
    /// what it admitted a window ago, possibly in bulk), and below the floor the spacing would outlast that.
    fn spacing(&self) -> Duration {
        let in_flight = f64::from(self.in_flight);
        self.windows
            .iter()
            .map(|w| w.length.as_secs_f64() / (SHARE * (w.remaining - in_flight).max(w.limit * FLOOR).max(1.0)))
            .max_by(f64::total_cmp)
            .map_or(Duration::ZERO, Duration::from_secs_f64)
    }

    /// Takes in what an answer reported; a window's limit is remembered across answers.
    fn learn(&mut self, reported: Vec<(Duration, f64)>) {
        let known = std::mem::take(&mut self.windows);
        self.windows = reported
            .into_iter()
            .map(|(length, remaining)| {
                let seen = known.iter().find(|w| w.length == length).map_or(0.0, |w| w.limit);
                Window { length, remaining, limit: seen.max(remaining + 1.0) }
            })
            .collect();
    }

    /// How long a request joining the queue now would wait: the head's turn, then one spacing per request ahead.
    fn expected_wait(&self, now: Instant) -> Duration {
        (self.turn(now) - now) + self.spacing() * self.waiting
    }

    /// The earliest instant the next request may go.
    fn turn(&self, now: Instant) -> Instant {
        let mut turn = now;
        if let Some(last) = self.last_sent {
            let after = if self.answered { self.spacing() } else { PROBE_HOLD };
            turn = turn.max(last.checked_add(after).unwrap_or(last));
        }
        match self.hold {
            Some(hold) if hold_applies(hold, now) => turn.max(hold.until),
            _ => turn,
        }
    }
}

/// A request that took its turn; dropping it without an answer (the request failed to send) frees its place.
#[derive(Debug)]
pub struct Turn {
    gate: Arc<LaneGate>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

/// Counts a request as waiting for as long as it does.
struct Waiting<'a>(&'a LaneGate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting = state.waiting.saturating_sub(1);
    }
}

tokio::task_local! {
    /// When the retry copy being attempted was made, on this process's clock.
    static SCHEDULED_COPY: Instant;
}

/// Runs `future` as the attempt of a retry copy made at `copied_at` (on this process's clock; the copy's
/// `cmk-copied-at` says when by the wall clock), which the broker delivered when the wait it was scheduled for was over
/// by the broker's clock. A remembered hold that would outlast the deadline in scope paces it only if a 429 set or
/// renewed the hold after the copy was made: the copy was scheduled without knowing of that one.
pub async fn as_scheduled_copy<F: std::future::Future>(copied_at: Instant, future: F) -> F::Output {
    SCHEDULED_COPY.scope(copied_at, Box::pin(future)).await
}

/// Whether `hold` still holds a request now: always within the deadline in scope; past it, for a first attempt, and
/// for a retry copy made before the hold was last set or renewed (see [`Pacer::observe`]).
fn hold_applies(hold: Hold, now: Instant) -> bool {
    if hold.until <= now {
        return false;
    }
    let within_deadline = deadline::remaining().is_none_or(|left| hold.until - now < left);
    within_deadline || SCHEDULED_COPY.try_with(|copied_at| *copied_at < hold.since).unwrap_or(true)
}

impl Lane {
    /// The lane of an ARM request: its subscription (lowercase) and whether it reads or writes; `None` for requests
    /// outside a subscription.
    pub fn of(method: &Method, url: &Url) -> Option<Lane> {
        let mut segments = url.path_segments()?;
        if !segments.next()?.eq_ignore_ascii_case("subscriptions") {
            return None;
        }
        let subscription = segments.next().filter(|s| !s.is_empty())?.to_ascii_lowercase();
        let kind = if matches!(*method, Method::GET | Method::HEAD) { "read" } else { "write" };
        Some(Lane { subscription, kind })
    }
}

impl Pacer {
    fn gate(&self, lane: &Lane) -> Arc<LaneGate> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.entry(lane.clone()).or_default().clone()
    }

    /// Waits for this request's turn in its lane and takes it. When the turn would come after the deadline in scope
    /// (judged on joining the queue, and again at its head), the request is not sent: [`Error::Paced`] says when it
    /// could go.
    pub async fn take_turn(&self, lane: &Lane) -> Result<Turn, Error> {
        let gate = self.gate(lane);
        let paced = |wait| Error::Paced { subscription: lane.subscription.clone(), kind: lane.kind, wait };
        let estimate = {
            let mut state = gate.state.lock().unwrap_or_else(|p| p.into_inner());
            let estimate = state.expected_wait(Instant::now());
            state.waiting += 1;
            estimate
        };
        let _waiting = Waiting(&gate);
        if deadline::remaining().is_some_and(|left| estimate >= left) {
            return Err(paced(estimate));
        }
        let Some(_head) = deadline::run(gate.queue.lock()).await else {
            return Err(paced(estimate));
        };
        loop {
            // Registered before the state is read, so an answer arriving in between still wakes this request.
            let changed = gate.changed.notified();
            let wait = {
                let mut state = gate.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let turn = state.turn(now);
                if turn <= now {
                    state.last_sent = Some(now);
                    state.in_flight += 1;
                    return Ok(Turn { gate: gate.clone() });
                }
                turn - now
            };
            if deadline::remaining().is_some_and(|left| wait >= left) {
                return Err(paced(wait));
            }
            tracing::debug!(subscription = %lane.subscription, kind = lane.kind, ?wait, "waiting for the subscription's turn");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changed => {}
            }
        }
    }

    /// [`Error::Paced`] when a request joining `lane` now would wait `left` or longer for its turn.
    pub fn expect_turn(&self, lane: &Lane, left: Duration) -> Result<(), Error> {
        let gate = self.gate(lane);
        let wait = gate.state.lock().unwrap_or_else(|p| p.into_inner()).expected_wait(Instant::now());
        if wait >= left {
            return Err(Error::Paced { subscription: lane.subscription.clone(), kind: lane.kind, wait });
        }
        Ok(())
    }

    /// Learns from the answer to a request that took `turn`: the remaining counts, and a hold until `Retry-After` on a
    /// 429. A hold is remembered even when it ends after this invocation's deadline: a first attempt that would wait
    /// past its deadline for it is paced at once, without spending a 429 to learn what Azure already said. A retry copy
    /// made after the hold's last 429 ignores it ([`as_scheduled_copy`]): it was scheduled for the end of that wait on
    /// the broker's clock, which decides when a wait is over, so a disagreement between the clocks costs a message
    /// one deferral, never a loop of copies; a copy made before it is deferred, since it could not know.
    pub fn observe(&self, lane: &Lane, turn: Turn, status: u16, headers: &HeaderMap, retry_after: Option<Duration>) {
        let windows = remaining_counts(headers);
        let gate = turn.gate.clone();
        drop(turn);
        {
            let mut state = gate.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if !windows.is_empty() {
                state.learn(windows);
            }
            state.answered = true;
            if status == 429 {
                let hold = retry_after.unwrap_or(Duration::from_secs(1));
                if let Some(until) = now.checked_add(hold) {
                    let until = state.hold.map_or(until, |held| held.until.max(until));
                    state.hold = Some(Hold { until, since: now });
                }
                tracing::info!(subscription = %lane.subscription, kind = lane.kind, ?hold, "throttled: holding the subscription's requests");
            }
        }
        gate.changed.notify_waiters();
    }
}

/// The windows named in `x-ms-ratelimit-remaining-resource` (`Microsoft.Storage/Write_ObservationWindow_01:00:00;
/// 1187`) with what is left of each.
fn remaining_counts(headers: &HeaderMap) -> Vec<(Duration, f64)> {
    headers
        .get_all("x-ms-ratelimit-remaining-resource")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let (name, remaining) = entry.trim().rsplit_once(';')?;
            let remaining: f64 = remaining.trim().parse().ok()?;
            let window = timespan(name.rsplit_once("ObservationWindow_")?.1)?;
            Some((window, remaining))
        })
        .collect()
}

/// A .NET `TimeSpan` in its "c" format, `[d.]hh:mm:ss[.fffffff]`, as the Storage RP names its windows.
fn timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let (clock, fraction) = match rest.split_once('.') {
        Some((clock, fraction)) => (clock, format!("0.{fraction}").parse::<f64>().ok()?),
        None => (rest, 0.0),
    };
    let parts: Vec<u64> = clock.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else { return None };
    Some(Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s) + Duration::from_secs_f64(fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans_parse_in_the_c_format() {
        assert_eq!(timespan("01:00:00"), Some(Duration::from_secs(3600)));
        assert_eq!(timespan("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(timespan("1.01:00:00"), Some(Duration::from_secs(90_000)));
        let fraction = timespan("00:00:00.0033333").unwrap().as_secs_f64();
        assert!((fraction - 0.0033333).abs() < 1e-9, "{fraction}");
        assert_eq!(timespan("3Min"), None);
    }

    fn remaining(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-ms-ratelimit-remaining-resource", value.parse().unwrap());
        headers
    }

    fn state_after(value: &str) -> State {
        let mut state = State { answered: true, ..State::default() };
        state.learn(remaining_counts(&remaining(value)));
        state
    }

    #[test]
    fn the_fewer_remain_the_wider_the_spacing() {
        let state = state_after(
            "Microsoft.Storage/Write_ObservationWindow_00:00:01;9,Microsoft.Storage/Write_ObservationWindow_01:00:00;900",
        );
        // max(1 s / (4 × 9), 3600 s / (4 × 900)) = 1 s.
        assert_eq!(state.spacing(), Duration::from_secs(1));
        // Nothing left and no larger count ever seen: the limit is unknown, so the floor is one request.
        assert_eq!(
            state_after("Microsoft.Storage/Write_ObservationWindow_01:00:00;0").spacing(),
            Duration::from_secs(900)
        );
        assert_eq!(state_after("Microsoft.Compute/GetVMScaleSet3Min;197").spacing(), Duration::ZERO);
        assert_eq!(State::default().spacing(), Duration::ZERO);
    }

    #[test]
    fn requests_in_flight_count_as_spent() {
        let mut state = state_after("Microsoft.Storage/Write_ObservationWindow_01:00:00;100");
        assert_eq!(state.spacing(), Duration::from_secs(9));
        state.in_flight = 10;
        assert_eq!(state.spacing(), Duration::from_secs(10));
    }

    #[test]
    fn the_spacing_assumes_a_floor_of_the_limit_is_left() {
        let mut state = state_after("Microsoft.Storage/Write_ObservationWindow_01:00:00;1199");
        state.learn(remaining_counts(&remaining("Microsoft.Storage/Write_ObservationWindow_01:00:00;0")));
        // The limit seen is 1,200: at most 3600 s / (4 × 30) = 30 s, not 3600 s / 4.
        assert_eq!(state.spacing(), Duration::from_secs(30));
        state.learn(remaining_counts(&remaining("Microsoft.Storage/Write_ObservationWindow_01:00:00;600")));
        assert_eq!(state.spacing(), Duration::from_millis(1500));
    }

    #[test]
    fn lanes_are_a_subscriptions_reads_or_writes() {
        let url = Url::parse("https://management.azure.com/subscriptions/ABC/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a").unwrap();
        assert_eq!(Lane::of(&Method::PATCH, &url), Some(Lane { subscription: "abc".into(), kind: "write" }));
        assert_eq!(Lane::of(&Method::GET, &url).unwrap().kind, "read");
        assert_eq!(Lane::of(&Method::GET, &Url::parse("https://management.azure.com/tenants").unwrap()), None);
    }

    /// Takes a turn and answers it at once with `value` as the remaining count.
    async fn answered(pacer: &Pacer, lane: &Lane, status: u16, value: &str, retry_after: Option<Duration>) {
        let turn = pacer.take_turn(lane).await.unwrap();
        pacer.observe(lane, turn, status, &remaining(value), retry_after);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_what_is_left_when_they_come() {
        let pacer = Pacer::default();
        let lane = Lane { subscription: "s".into(), kind: "write" };
        let window = "Microsoft.Storage/Write_ObservationWindow_00:00:02";
        answered(&pacer, &lane, 200, &format!("{window};10"), None).await;
        let started = Instant::now();
        for _ in 0..3 {
            answered(&pacer, &lane, 200, &format!("{window};10"), None).await;
        }
        // Turns 50 ms apart (2 s / (4 × 10)), the first one 50 ms after the first answer's request.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
        // A request waits; an answer that says far fewer are left stretches its wait.
        let pacer = std::sync::Arc::new(pacer);
        let slow = pacer.take_turn(&lane).await.unwrap();
        let waiting = tokio::spawn({
            let (pacer, lane) = (pacer.clone(), lane.clone());
            async move {
                let started = Instant::now();
                pacer.take_turn(&lane).await.map(|_| started.elapsed())
            }
        });
        tokio::task::yield_now().await;
        pacer.observe(&lane, slow, 200, &remaining(&format!("{window};1")), None);
        // 2 s / (4 × 1) = 500 ms after the last request went, not the 50 ms known when this one queued.
        assert_eq!(waiting.await.unwrap().unwrap(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_the_lane_and_a_turn_after_the_deadline_is_paced() {
        let pacer = Pacer::default();
        let lane = Lane { subscription: "s".into(), kind: "write" };
        answered(&pacer, &lane, 200, "Microsoft.Storage/Write_ObservationWindow_00:00:02;10", None).await;
        // A hold beyond the deadline is remembered: a first attempt learns at once, without a 429; a retry copy made
        // before the 429 is deferred too (it could not know); one made after it, due by the broker's clock, is not
        // deferred again by this process's.
        let invocation = Instant::now() + Duration::from_secs(10);
        let made_before = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        let turn = pacer.take_turn(&lane).await.unwrap();
        pacer.observe(&lane, turn, 429, &HeaderMap::new(), Some(Duration::from_secs(600)));
        let early = deadline::within(invocation, as_scheduled_copy(made_before, pacer.take_turn(&lane))).await;
        assert!(matches!(early, Err(Error::Paced { .. })), "{early:?}");
        tokio::time::advance(Duration::from_millis(1)).await;
        match deadline::within(invocation, pacer.take_turn(&lane)).await {
            Err(Error::Paced { wait, .. }) => assert!(wait > Duration::from_secs(599), "{wait:?}"),
            other => panic!("expected Paced, got {other:?}"),
        }
        assert!(matches!(
            deadline::within(invocation, async { pacer.expect_turn(&lane, Duration::from_secs(10)) }).await,
            Err(Error::Paced { .. })
        ));
        let copy =
            deadline::within(invocation, as_scheduled_copy(Instant::now(), pacer.take_turn(&lane))).await.unwrap();
        pacer.observe(&lane, copy, 200, &HeaderMap::new(), None);
        // One request taken does not make room for all: first attempts keep to what Azure said.
        assert!(matches!(deadline::within(invocation, pacer.take_turn(&lane)).await, Err(Error::Paced { .. })));
        // One within it holds the lane: a request with less time left is told at once, one with more waits it out.
        let turn = pacer.take_turn(&lane).await.unwrap();
        pacer.observe(&lane, turn, 429, &HeaderMap::new(), Some(Duration::from_secs(30)));
        let refused = deadline::within(Instant::now() + Duration::from_secs(10), pacer.take_turn(&lane)).await;
        match refused {
            Err(Error::Paced { wait, .. }) => assert!(wait > Duration::from_secs(29), "{wait:?}"),
            other => panic!("expected Paced, got {other:?}"),
        }
        let started = Instant::now();
        deadline::within(Instant::now() + Duration::from_secs(60), pacer.take_turn(&lane)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(29), "{:?}", started.elapsed());
        // Another subscription is not held.
        let other = Lane { subscription: "t".into(), kind: "write" };
        deadline::within(Instant::now() + Duration::from_secs(5), pacer.take_turn(&other)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_longer_than_the_deadline_is_paced_on_joining() {
        let pacer = Pacer::default();
        let lane = Lane { subscription: "s".into(), kind: "write" };
        // 1 s between turns.
        answered(&pacer, &lane, 200, "Microsoft.Storage/Write_ObservationWindow_00:00:04;1", None).await;
        let pacer = std::sync::Arc::new(pacer);
        let mut queued = Vec::new();
        for _ in 0..5 {
            let (pacer, lane) = (pacer.clone(), lane.clone());
            queued.push(tokio::spawn(async move { pacer.take_turn(&lane).await.map(drop) }));
            tokio::task::yield_now().await;
        }
        // Five wait ahead at 1 s each: a request with 3 s left is told at once, with the estimate.
        let started = Instant::now();
        match deadline::within(Instant::now() + Duration::from_secs(3), pacer.take_turn(&lane)).await {
            Err(Error::Paced { wait, .. }) => assert!(wait >= Duration::from_secs(5), "{wait:?}"),
            other => panic!("expected Paced, got {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        // The same estimate, asked before any work: a write that would wait past what a call may is not started.
        assert!(matches!(pacer.expect_turn(&lane, Duration::from_secs(3)), Err(Error::Paced { .. })));
        assert!(pacer.expect_turn(&lane, Duration::from_secs(60)).is_ok());
        for waiting in queued {
            waiting.await.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_lane_sends_one_request_first() {
        let pacer = std::sync::Arc::new(Pacer::default());
        let lane = Lane { subscription: "s".into(), kind: "read" };
        let first = pacer.take_turn(&lane).await.unwrap();
        let second = tokio::spawn({
            let (pacer, lane) = (pacer.clone(), lane.clone());
            async move {
                let started = Instant::now();
                pacer.take_turn(&lane).await.map(|_| started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        pacer.observe(&lane, first, 200, &HeaderMap::new(), None);
        // The second went when the first answer came, not a whole probe hold later.
        assert_eq!(second.await.unwrap().unwrap(), Duration::from_millis(100));
    }
}
