//! Done-when 2: `--dry-run` (and every read) changes nothing in the testbed's state except what the REST API cannot
//! avoid: reading a dead letter peek-locks it, and Service Bus counts each lock as a delivery.

mod support;

use serde_json::Value;
use support::{FABRIKAM_TENANT, TestBed, contoso, fabrikam, stdout_json};

/// The broker's state with each dead letter's `deliveryCount` taken out (and returned separately).
fn state_without_delivery_counts(bed: &TestBed) -> (Value, Vec<u64>) {
    let mut state = bed.emulator.shared().bus.snapshot();
    let mut counts = Vec::new();
    let queue = &mut state["namespaces"]["northwind-onboarding"]["queues"]["onboarding"];
    for letter in queue["deadLettered"].as_array_mut().unwrap() {
        counts.push(letter["deliveryCount"].as_u64().unwrap());
        letter.as_object_mut().unwrap().remove("deliveryCount");
    }
    (state, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_and_reads_change_nothing_but_the_delivery_count() {
    let bed = TestBed::broker_only().await;
    for i in 0..5 {
        bed.seed_dead_letter(&contoso(&format!("obd-c{i}")), &format!("msg-c{i}"), "KeyDisabled").await;
        bed.seed_dead_letter(&fabrikam(&format!("obd-f{i}")), &format!("msg-f{i}"), "ServicePrincipalMissing").await;
    }
    let (before, counts_before) = state_without_delivery_counts(&bed);
    let last_request = bed.emulator.shared().log.list(None).last().map_or(0, |r| r.seq);

    let replay = bed.run(&["dlq", "replay", "--dry-run", "--reason", "ServicePrincipalMissing"]).await;
    assert_eq!(replay.status.code(), Some(0));
    let records: Vec<Value> =
        String::from_utf8_lossy(&replay.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 5, "one audit record per selected message");
    assert!(records.iter().all(|r| r["outcome"] == "would-replay" && r["dryRun"] == true), "{records:#?}");

    let purge = bed.run(&["dlq", "purge", "--dry-run", "--tenant", FABRIKAM_TENANT, "--limit", "2"]).await;
    assert_eq!(purge.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&purge.stdout).lines().count(), 2, "--limit 2");

    let list = bed.run(&["--output", "json", "dlq", "list"]).await;
    assert_eq!(stdout_json(&list).as_array().unwrap().len(), 10);

    let (after, counts_after) = state_without_delivery_counts(&bed);
    assert_eq!(before, after, "the dry runs and the listing changed the broker's state");
    // Two walks over the whole queue, and one (purge --limit 2) that stopped after the first four dead letters, two of
    // them Fabrikam's: each visit locked (delivered) a dead letter once.
    let expected: Vec<u64> = counts_before.iter().enumerate().map(|(i, c)| c + 2 + u64::from(i < 4)).collect();
    assert_eq!(counts_after, expected);
    // And nothing was sent or completed: the only operations were peek-locks and unlocks.
    let log = bed.emulator.shared().log.list(None);
    for record in log.iter().filter(|r| r.seq > last_request) {
        let path = record.path.as_str();
        let unlock = record.method == "PUT" && path.contains("/$DeadLetterQueue/messages/");
        let peek_lock = record.method == "POST" && path.ends_with("/$DeadLetterQueue/messages/head");
        assert!(unlock || peek_lock, "unexpected request {} {}", record.method, path);
    }
}
