//! When each probe of a key-watch run is due (pure): probes are spread over part of the interval so that one run
//! stays under the Storage RP's read limit (800 per 5 minutes per subscription and region, ARCHITECTURE.md decision
//! 24): each probe reads its account once.
//!
//! Within a subscription, accounts are taken in the order of their lowercase ids, one every `READ_WINDOW /
//! READS_PER_WINDOW` (0.5 s: 600 reads per 5 minutes, three quarters of the limit, the rest for onboardings and
//! other readers); a fleet that would need more than `SPREAD_SHARE` of the interval is squeezed into it (and the
//! handler's pacing then absorbs the excess, decision 24). Subscriptions are spread side by side (their limits are
//! separate). Offsets are whole seconds: a scheduled enqueue time travels with second precision.

use std::collections::BTreeMap;
use std::time::Duration;

/// The Storage RP's read window.
pub const READ_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Probe reads allowed per window and subscription: three quarters of the RP's 800.
pub const READS_PER_WINDOW: u32 = 600;
/// The share of the interval the probes of one run may spread over (the last third leaves room for their retries
/// before the next run): 10 minutes of the shipped 15, enough for 1,200 accounts per subscription at the budget.
pub const SPREAD_SHARE: f64 = 2.0 / 3.0;
/// The interval assumed when the timer does not say (one read window), and the longest one considered.
pub const DEFAULT_INTERVAL: Duration = READ_WINDOW;
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The plan of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Each account's offset from the run's time, in the order given.
    pub offsets: Vec<Duration>,
    /// Subscriptions (lowercase) with more accounts than the read budget allows within the spread: their probes are
    /// squeezed into it.
    pub over_budget: Vec<String>,
}

/// The subscription segment of an ARM id, lowercase (empty when there is none).
fn subscription(account_id: &str) -> String {
    let mut segments = account_id.split('/').filter(|s| !s.is_empty());
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case("subscriptions") {
            return segments.next().unwrap_or_default().to_ascii_lowercase();
        }
    }
    String::new()
}

/// Offsets for `account_ids` (ARM ids) in a run whose next occurrence is `interval` away (`None`: unknown).
pub fn plan(account_ids: &[&str], interval: Option<Duration>) -> Plan {
    let interval = interval.filter(|i| !i.is_zero()).unwrap_or(DEFAULT_INTERVAL).min(MAX_INTERVAL);
    let spread = interval.mul_f64(SPREAD_SHARE);
    let budget_spacing = READ_WINDOW / READS_PER_WINDOW;
    let mut by_subscription: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, id) in account_ids.iter().enumerate() {
        by_subscription.entry(subscription(id)).or_default().push(index);
    }
    let mut offsets = vec![Duration::ZERO; account_ids.len()];
    let mut over_budget = Vec::new();
    for (subscription, mut indices) in by_subscription {
        indices.sort_by_key(|&i| account_ids[i].to_ascii_lowercase());
        let count = u32::try_from(indices.len()).unwrap_or(u32::MAX);
        let spacing = if budget_spacing * count.saturating_sub(1) <= spread {
            budget_spacing
        } else {
            over_budget.push(subscription);
            spread / count
        };
        for (position, index) in (0..count).zip(indices) {
            offsets[index] = Duration::from_secs((spacing * position).as_secs());
        }
    }
    Plan { offsets, over_budget }
}
