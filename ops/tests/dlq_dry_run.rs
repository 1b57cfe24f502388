//! Done-when 2: `--dry-run` (and every read) changes nothing in the testbed's state except what the REST API cannot
//! avoid: reading a dead letter peek-locks it, and Service Bus counts each lock as a delivery.

mod support;

use serde_json::Value;
use support::OpsBed;
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

    let replay =
        bed.run(&["--output", "json", "dlq", "replay", "--dry-run", "--reason", "ServicePrincipalMissing"]).await;
    assert_eq!(replay.status.code(), Some(0));
    let would: Vec<Value> = stdout_json(&replay).as_array().unwrap().clone();
    assert_eq!(would.len(), 5, "what would be replayed");
    assert!(would.iter().all(|l| l["handlerReason"] == "ServicePrincipalMissing"), "{would:#?}");

    let purge =
        bed.run(&["--output", "json", "dlq", "purge", "--dry-run", "--tenant", FABRIKAM_TENANT, "--limit", "2"]).await;
    assert_eq!(purge.status.code(), Some(0));
    assert_eq!(stdout_json(&purge).as_array().unwrap().len(), 2, "--limit 2");
    assert!(!bed.state_dir().join("audit.jsonl").exists(), "a dry run does nothing, so it audits nothing");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_and_purge_with_and_without_confirmation() {
    let bed = TestBed::broker_only().await;
    bed.seed_dead_letter(&contoso("obd-c0"), "msg-c0", "KeyDisabled").await;
    bed.seed_dead_letter(&fabrikam("obd-f0"), "msg-f0", "ServicePrincipalMissing").await;
    bed.seed_dead_letter(&fabrikam("obd-f1"), "msg-f1", "ServicePrincipalMissing").await;

    let table = bed.run(&["dlq", "list"]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows:\n{table}");
    assert!(lines[0].starts_with("SEQ") && lines[0].contains("HANDLER REASON"), "{table}");
    assert!(
        lines[1].contains("obd-c0") && lines[1].contains("contosodata") && lines[1].contains("KeyDisabled"),
        "{table}"
    );

    let listed = stdout_json(&bed.run(&["--output", "json", "dlq", "list", "--onboarding-id", "obd-f1"]).await);
    let sequence = listed[0]["sequenceNumber"].as_i64().unwrap().to_string();
    let shown = bed.run(&["--output", "json", "dlq", "show", &sequence]).await;
    assert_eq!(shown.status.code(), Some(0));
    let shown = stdout_json(&shown);
    assert_eq!(shown["body"]["onboardingId"], "obd-f1");
    assert_eq!(shown["systemProperties"]["messageId"], "msg-f1");
    assert_eq!(shown["applicationProperties"]["cmk-dead-letter-reason"], "ServicePrincipalMissing");
    let shown = bed.run(&["dlq", "show", &sequence]).await;
    assert!(String::from_utf8_lossy(&shown.stdout).contains("Application properties:"));
    assert_eq!(bed.run(&["dlq", "show", "999999"]).await.status.code(), Some(1), "no such dead letter");

    // No terminal to ask and no --yes: nothing is purged.
    let refused = bed.run(&["dlq", "purge", "--reason", "ServicePrincipalMissing"]).await;
    assert_eq!(refused.status.code(), Some(4));
    assert_eq!(bed.dead_letters().len(), 3);

    let purged = bed.run(&["--output", "json", "dlq", "purge", "--reason", "ServicePrincipalMissing", "--yes"]).await;
    assert_eq!(purged.status.code(), Some(0));
    let summary = stdout_json(&purged);
    let outcomes = summary["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|r| r["outcome"] == "purged" && r["operator"] == "test-operator"), "{summary:#}");
    let left: Vec<_> = bed.dead_letters().into_iter().filter_map(|m| m.message_id).collect();
    assert_eq!(left, ["msg-c0"]);
    let audit = bed.audit();
    assert_eq!(support::records(&audit, "result").len(), 2, "{audit:#?}");
}
