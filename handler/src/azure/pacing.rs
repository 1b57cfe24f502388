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
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use tokio::time::Instant;
use url::Url;

use super::deadline;
use crate::error::Error;

/// How many times faster than "remaining over the window" one instance may go (the module's equilibrium).
const SHARE: f64 = 4.0;

/// The turn-taking of one process, by subscription and kind of request.
#[derive(Debug, Default)]
pub struct Pacer {
    lanes: Mutex<HashMap<Lane, State>>,
}

/// Requests that share a limit: one subscription's reads, or its writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lane {
    pub subscription: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The earliest instant the next request of the lane may go.
    next: Instant,
    /// The spacing after each request, from the last remaining count seen.
    spacing: Duration,
    /// No answer seen yet: the first request goes alone and its answer sets the pace (otherwise every invocation of
    /// a fresh process would rush the subscription at once).
    probing: bool,
}

/// How long the other requests of a fresh lane wait for its first answer at most.
const PROBE_HOLD: Duration = Duration::from_secs(1);

impl State {
    fn new(now: Instant) -> Self {
        State { next: now, spacing: Duration::ZERO, probing: true }
    }
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
    /// Waits for this request's turn in its lane and takes it. When the turn comes after the deadline in scope, the
    /// request is not sent: [`Error::Paced`] says when it could go.
    pub async fn take_turn(&self, lane: &Lane) -> Result<(), Error> {
        let wait = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let state = lanes.entry(lane.clone()).or_insert_with(|| State::new(now));
            let turn = state.next.max(now);
            let wait = turn - now;
            if deadline::remaining().is_some_and(|left| wait >= left) {
                return Err(Error::Paced { subscription: lane.subscription.clone(), kind: lane.kind, wait });
            }
            state.next = turn + if state.probing { PROBE_HOLD } else { state.spacing };
            wait
        };
        if !wait.is_zero() {
            tracing::debug!(subscription = %lane.subscription, kind = lane.kind, ?wait, "waiting for the subscription's turn");
            deadline::sleep(wait).await;
        }
        Ok(())
    }

    /// Learns from a response: the spacing from the remaining counts, and a hold until `Retry-After` on a 429.
    pub fn observe(&self, lane: &Lane, status: u16, headers: &HeaderMap, retry_after: Option<Duration>) {
        let spacing = spacing(headers);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let state = lanes.entry(lane.clone()).or_insert_with(|| State::new(now));
        if let Some(spacing) = spacing {
            state.spacing = spacing;
        }
        if state.probing {
            // The probe's answer is in: the next turn is one spacing from now, not the probe's hold.
            state.probing = false;
            state.next = now + state.spacing;
        }
        // A hold that ends after this invocation's deadline is not kept: the invocations that would wait for it end
        // first, and their retry copies carry the wait (scheduled by `Retry-After`) instead of this process's memory.
        let hold = retry_after.unwrap_or(Duration::from_secs(1));
        if status == 429 && deadline::remaining().is_none_or(|left| hold < left) {
            if let Some(until) = now.checked_add(hold) {
                state.next = state.next.max(until);
            }
            tracing::info!(subscription = %lane.subscription, kind = lane.kind, ?hold, "throttled: holding the subscription's requests");
        }
    }
}

/// The spacing the remaining counts call for: the largest `window / (SHARE × remaining)` over the entries of
/// `x-ms-ratelimit-remaining-resource` that name an observation window; `None` when none does.
pub fn spacing(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("x-ms-ratelimit-remaining-resource")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let (name, remaining) = entry.trim().rsplit_once(';')?;
            let remaining: f64 = remaining.trim().parse().ok()?;
            let window = timespan(name.rsplit_once("ObservationWindow_")?.1)?;
            Some(window.as_secs_f64() / (SHARE * remaining.max(1.0)))
        })
        .max_by(f64::total_cmp)
        .map(Duration::from_secs_f64)
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

    #[test]
    fn the_fewer_remain_the_wider_the_spacing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Storage/Write_ObservationWindow_00:00:01;9,Microsoft.Storage/Write_ObservationWindow_01:00:00;900"
                .parse()
                .unwrap(),
        );
        // max(1 s / (4 × 9), 3600 s / (4 × 900)) = 1 s.
        assert_eq!(spacing(&headers), Some(Duration::from_secs(1)));
        headers.insert(
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Storage/Write_ObservationWindow_01:00:00;0".parse().unwrap(),
        );
        assert_eq!(spacing(&headers), Some(Duration::from_secs(900)));
        headers.insert("x-ms-ratelimit-remaining-resource", "Microsoft.Compute/GetVMScaleSet3Min;197".parse().unwrap());
        assert_eq!(spacing(&HeaderMap::new()), None);
        assert_eq!(spacing(&headers), None);
    }

    #[test]
    fn lanes_are_a_subscriptions_reads_or_writes() {
        let url = Url::parse("https://management.azure.com/subscriptions/ABC/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a").unwrap();
        assert_eq!(Lane::of(&Method::PATCH, &url), Some(Lane { subscription: "abc".into(), kind: "write" }));
        assert_eq!(Lane::of(&Method::GET, &url).unwrap().kind, "read");
        assert_eq!(Lane::of(&Method::GET, &Url::parse("https://management.azure.com/tenants").unwrap()), None);
    }

    #[tokio::test]
    async fn turns_are_spaced_and_a_429_holds_the_lane() {
        let pacer = Pacer::default();
        let lane = Lane { subscription: "s".into(), kind: "write" };
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ms-ratelimit-remaining-resource",
            "Microsoft.Storage/Write_ObservationWindow_00:00:02;10".parse().unwrap(),
        );
        pacer.observe(&lane, 200, &headers, None);
        let started = Instant::now();
        for _ in 0..3 {
            pacer.take_turn(&lane).await.unwrap();
        }
        // Turns at 0, 50 ms and 100 ms (2 s / (4 × 10)).
        assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
        // A hold longer than the invocation's time is left to the retry copy.
        let invocation = Instant::now() + Duration::from_secs(10);
        deadline::within(invocation, async {
            pacer.observe(&lane, 429, &HeaderMap::new(), Some(Duration::from_secs(600)))
        })
        .await;
        deadline::within(invocation, pacer.take_turn(&lane)).await.unwrap();
        pacer.observe(&lane, 429, &HeaderMap::new(), Some(Duration::from_secs(30)));
        let refused = deadline::within(Instant::now() + Duration::from_secs(5), pacer.take_turn(&lane)).await;
        match refused {
            Err(Error::Paced { wait, .. }) => assert!(wait > Duration::from_secs(29), "{wait:?}"),
            other => panic!("expected Paced, got {other:?}"),
        }
        // Another subscription is not held.
        let other = Lane { subscription: "t".into(), kind: "write" };
        deadline::within(Instant::now() + Duration::from_secs(5), pacer.take_turn(&other)).await.unwrap();
    }
}
