//! Done-when 3: a replay killed midway loses no message, and re-running it ends in the same state as a replay that
//! was never interrupted. Also checks what a resubmitted message looks like.

mod support;

use support::OpsBed as _;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::{TestBed, WAIT, contoso};

const MESSAGES: usize = 120;

async fn seeded() -> TestBed {
    let bed = TestBed::broker_only().await;
    for i in 0..MESSAGES {
        bed.seed_dead_letter(&contoso(&format!("obd-{i:04}")), &format!("msg-{i:04}"), "KeyDisabled").await;
    }
    bed
}

/// What the queue holds, without what differs between two runs by nature (the time and the sequence numbers).
fn resubmitted(bed: &TestBed) -> BTreeSet<String> {
    bed.queue()
        .into_iter()
        .map(|m| {
            let mut properties = m.application_properties.clone();
            properties.remove("replayed-at");
            // The onboarding's order holds the time its dead letter was first enqueued.
            properties.remove("cmk-onboarding-order");
            format!("{:?} {:?} {:?} {}", m.message_id, m.correlation_id, properties, String::from_utf8_lossy(&m.body))
        })
        .collect()
}

fn property<'a>(message: &'a azure_emulator::servicebus::Message, name: &str) -> Option<&'a str> {
    message.application_properties.get(name).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_loses_nothing_and_a_rerun_converges() {
    // The reference: one uninterrupted replay.
    let reference = seeded().await;
    let run = reference.run(&["dlq", "replay", "--yes", "--rate", "0"]).await;
    assert_eq!(run.status.code(), Some(0));
    assert!(reference.dead_letters().is_empty());
    assert_eq!(reference.queue().len(), MESSAGES);

    let resubmission =
        reference.queue().into_iter().find(|m| property(m, "replayed-message-id") == Some("msg-0007")).unwrap();
    assert_ne!(resubmission.message_id.as_deref(), Some("msg-0007"), "a fresh MessageId");
    assert_eq!(resubmission.correlation_id.as_deref(), Some("corr-msg-0007"), "the original CorrelationId");
    assert_eq!(resubmission.delivery_count, 0);
    assert!(
        resubmission
            .application_properties
            .keys()
            .all(|k| (!k.starts_with("cmk-") || k == "cmk-original-message-id" || k == "cmk-onboarding-order")
                && !k.starts_with("DeadLetter")),
        "the handler's marks and the broker's dead-letter marks are stripped (the onboarding's order stays): {:?}",
        resubmission.application_properties
    );
    assert_eq!(
        property(&resubmission, "cmk-original-message-id"),
        Some("orig-msg-0007"),
        "the producer's MessageId survives the replay"
    );
    assert_eq!(property(&resubmission, "upstream-system"), Some("signup"), "the producer's own properties stay");
    assert_eq!(property(&resubmission, "replayed-from"), Some("onboarding/$DeadLetterQueue"));
    assert_eq!(property(&resubmission, "replayed-by"), Some("test-operator"));
    assert!(property(&resubmission, "replayed-at").is_some());
    let body: Value = serde_json::from_slice(&resubmission.body).unwrap();
    assert_eq!(body["onboardingId"], "obd-0007");

    // The same, killed midway.
    let bed = seeded().await;
    let audit = bed.dir.path().join("audit.jsonl");
    let mut child =
        bed.cmkctl(&["dlq", "replay", "--yes", "--rate", "20", "--audit", audit.to_str().unwrap()]).spawn().unwrap();
    bed.wait_until("a fifth of the replay done", |bed| bed.queue().len() >= MESSAGES / 5).await;
    child.start_kill().unwrap();
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(!status.success(), "the replay was killed before it finished");

    let dead: BTreeSet<String> = bed.dead_letters().iter().filter_map(|m| m.message_id.clone()).collect();
    let replayed: BTreeSet<String> =
        bed.queue().iter().filter_map(|m| property(m, "replayed-message-id").map(str::to_owned)).collect();
    assert!(replayed.len() < MESSAGES, "killed midway: {} of {MESSAGES} replayed", replayed.len());
    for i in 0..MESSAGES {
        let id = format!("msg-{i:04}");
        assert!(dead.contains(&id) || replayed.contains(&id), "{id} was lost");
    }
    // The intent was on disk before the first send: every resubmission is accounted for in the audit trail, even
    // those whose outcome the killed run never recorded.
    let lines = support::json_lines(&audit);
    let intents = support::records(&lines, "intent");
    assert_eq!(intents.len(), 1, "one intent, written before acting");
    let intended: BTreeSet<i64> =
        intents[0]["messages"].as_array().unwrap().iter().map(|m| m["sequenceNumber"].as_i64().unwrap()).collect();
    assert_eq!(intended.len(), MESSAGES, "the whole selection is named up front");
    for message in bed.queue() {
        let seq = message.application_properties["replayed-sequence-number"].as_i64().unwrap();
        assert!(intended.contains(&seq), "resubmission of {seq} is not in the intent");
    }
    assert!(support::records(&lines, "end").is_empty(), "the killed run never ended");
    let recorded = support::records(&lines, "result").len();
    eprintln!("killed after {} resubmissions, {} dead letters left, {recorded} results", replayed.len(), dead.len());

    // A lock the killed process held expires after the queue's lock duration (PT1M); let emulated time pass it.
    bed.emulator.shared().clock.advance(Duration::from_secs(120));
    bed.emulator.shared().bus.clock_advanced();
    let rerun = bed.run(&["dlq", "replay", "--yes", "--rate", "0", "--audit", audit.to_str().unwrap()]).await;
    assert_eq!(rerun.status.code(), Some(0));
    let warning = String::from_utf8_lossy(&rerun.stderr);
    let unknown = MESSAGES - recorded;
    assert!(
        warning.contains("did not finish") && warning.contains(&format!("{unknown} of {MESSAGES} message(s)")),
        "the next run reports the interrupted one: {warning}"
    );
    let lines = support::json_lines(&audit);
    assert_eq!(support::records(&lines, "reported").len(), 1);
    let again = bed.run(&["dlq", "replay", "--yes", "--rate", "0", "--audit", audit.to_str().unwrap()]).await;
    assert!(!String::from_utf8_lossy(&again.stderr).contains("did not finish"), "reported once");
    assert!(bed.dead_letters().is_empty());
    assert_eq!(bed.queue().len(), MESSAGES, "no duplicate: a repeated send has the same MessageId and is dropped");
    assert_eq!(resubmitted(&bed), resubmitted(&reference), "same end state as the uninterrupted replay");
}

/// The narrowest window: killed after the resubmission was sent, before the dead letter was completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_between_send_and_complete_is_finished_by_a_rerun_without_duplicate() {
    use clap::Parser;
    let bed = TestBed::broker_only().await;
    for i in 0..3 {
        bed.seed_dead_letter(&contoso(&format!("obd-{i}")), &format!("msg-{i}"), "KeyDisabled").await;
    }
    let connection_string = support::connection_string();
    let cli = cmkctl::Cli::parse_from([
        "cmkctl",
        "--emulator",
        bed.emulator.url(),
        "--connection-string",
        &connection_string,
        "dlq",
        "list",
    ]);
    let client = cmkctl::connect::connect(&cli.connection).unwrap().client;
    // What the replay does for one message up to the crash: lock it, send its resubmission, and die.
    let locks = cmkctl::walk::LockSet::new(&client, "onboarding");
    let locked = locks.lock_next().await.unwrap().expect("a dead letter");
    let resubmission =
        cmkctl::messages::replay_message(locks.entity(), &locked, "crashed", time::OffsetDateTime::now_utc());
    client.send("onboarding", &resubmission).await.unwrap();
    drop(locks);
    assert_eq!((bed.dead_letters().len(), bed.queue().len()), (3, 1), "both copies exist after the crash");

    bed.emulator.shared().clock.advance(Duration::from_secs(120));
    bed.emulator.shared().bus.clock_advanced();
    let rerun = bed.run(&["dlq", "replay", "--yes", "--rate", "0"]).await;
    assert_eq!(rerun.status.code(), Some(0));
    assert!(bed.dead_letters().is_empty());
    let ids: BTreeSet<Option<String>> = bed.queue().into_iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 3, "one resubmission per dead letter: the repeated send was dropped as a duplicate");
}
