//! The key watch's fan-out schedule (`workflow::fan_out`), from the cases in `tests/data/fan-out/cases.json`: how far
//! each subscription's probes spread, which subscriptions exceed the read budget, and, for every case, that no
//! five-minute window of a subscription within budget holds more probes than the budget, that offsets stay within
//! two thirds of the interval, and that the plan does not depend on the order the accounts were listed in.

use std::collections::BTreeMap;
use std::time::Duration;

use cmk_handler::workflow::fan_out::{READ_WINDOW, READS_PER_WINDOW, plan};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    accounts: BTreeMap<String, usize>,
    interval_seconds: Option<u64>,
    spread_seconds: BTreeMap<String, u64>,
    over_budget: Vec<String>,
}

fn account(subscription: &str, n: usize) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct{n:06}")
}

#[test]
fn probes_are_spread_under_the_read_budget() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fan-out/cases.json");
    let cases: Vec<Case> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    for case in cases {
        let ids: Vec<String> = case.accounts.iter().flat_map(|(s, n)| (0..*n).map(move |i| account(s, i))).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let interval = case.interval_seconds.map(Duration::from_secs);
        let planned = plan(&refs, interval);
        assert_eq!(planned.offsets.len(), ids.len(), "{}", case.name);
        assert_eq!(planned.over_budget, case.over_budget, "{}", case.name);

        let mut by_subscription: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (id, offset) in ids.iter().zip(&planned.offsets) {
            by_subscription.entry(id.split('/').nth(2).unwrap()).or_default().push(offset.as_secs());
        }
        let limit = interval.unwrap_or(READ_WINDOW).min(Duration::from_secs(86_400)).as_secs() * 2 / 3;
        for (subscription, mut offsets) in by_subscription {
            offsets.sort_unstable();
            assert_eq!(offsets.last().copied(), case.spread_seconds.get(subscription).copied(), "{}", case.name);
            assert!(offsets.iter().all(|o| *o <= limit), "{}: within two thirds of the interval", case.name);
            if !case.over_budget.iter().any(|s| s == subscription) {
                let window = READ_WINDOW.as_secs();
                let busiest = (0..offsets.len())
                    .map(|i| offsets[i..].iter().take_while(|o| **o < offsets[i] + window).count())
                    .max()
                    .unwrap_or(0);
                assert!(busiest <= READS_PER_WINDOW as usize, "{}: {busiest} probes in one window", case.name);
            }
        }

        let reversed: Vec<&str> = refs.iter().rev().copied().collect();
        let mut again = plan(&reversed, interval).offsets;
        again.reverse();
        assert_eq!(again, planned.offsets, "{}: the order of the listing does not matter", case.name);
    }
}
