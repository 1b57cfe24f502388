//! Issue 11: bulk actions work on the set they selected at the start and on nothing else; a confirmation binds what
//! is acted on to what was shown; a purge keeps a copy of what it deletes.

mod support;

use std::collections::BTreeSet;

use support::OpsBed;

use serde_json::Value;
use support::{CONTOSO_ACCOUNT, CONTOSO_TENANT, TestBed, contoso, fabrikam, onboarding, stdout_json};

fn message_ids(messages: Vec<azure_emulator::servicebus::Message>) -> BTreeSet<String> {
    messages.into_iter().filter_map(|m| m.message_id).collect()
}

/// Found by an operator: replaying one dead letter that fails permanently again never stopped (the resubmission came
/// back to the dead-letter queue, matched the walk, and was resubmitted again: 1,151 times in 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_that_fails_again_stays_out_of_the_same_run() {
    let bed = support::with_handler(&[]).await;
    let poison = onboarding("obd-poison", CONTOSO_TENANT, CONTOSO_ACCOUNT, "http://169.254.169.254/", "cmk");
    bed.send(&poison, "producer-poison");
    bed.wait_until("the handler dead-letters the poison message", |bed| bed.dead_letters().len() == 1).await;
    let first = bed.dead_letters()[0].sequence_number;

    let replay = bed.run(&["--output", "json", "dlq", "replay", "--yes", "--rate", "0"]).await;
    assert_eq!(replay.status.code(), Some(0));
    let summary = stdout_json(&replay);
    assert_eq!(summary["selected"], 1, "{summary:#}");
    assert_eq!(summary["outcomes"][0]["outcome"], "replayed");

    // The resubmission fails again and is dead-lettered again: exactly once, and the run had ended anyway.
    bed.wait_until("the resubmission is dead-lettered again", |bed| {
        bed.dead_letters().iter().any(|m| m.sequence_number != first) && bed.queue().is_empty()
    })
    .await;
    assert_eq!(bed.dead_letters().len(), 1, "the original was completed, its resubmission is the one dead letter");
    assert_eq!(bed.events_of("failed").len(), 2, "one failure of the original, one of its single resubmission");
    let again = &bed.dead_letters()[0];
    assert_eq!(
        again.application_properties["cmk-original-message-id"], "producer-poison",
        "the producer's MessageId survives the replay and the handler's dead-letter copy"
    );
    let results = bed.audit().into_iter().filter(|r| r["record"] == "result").count();
    assert_eq!(results, 1, "one message acted on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_binds_a_non_interactive_run_to_the_count_that_was_shown() {
    let bed = TestBed::broker_only().await;
    for i in 0..3 {
        bed.seed_dead_letter(&contoso(&format!("obd-{i}")), &format!("msg-{i}"), "KeyDisabled").await;
    }
    let refused = bed.run(&["dlq", "purge", "--reason", "KeyDisabled", "--yes", "--expect", "2"]).await;
    assert_eq!(refused.status.code(), Some(4), "three match now, two were confirmed");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expected 2"));
    assert_eq!(bed.dead_letters().len(), 3, "nothing purged");
    let done = bed.run(&["dlq", "purge", "--reason", "KeyDisabled", "--yes", "--expect", "3", "--no-archive"]).await;
    assert_eq!(done.status.code(), Some(0));
    assert!(bed.dead_letters().is_empty());
}

/// Found by an operator: the tool listed and confirmed N messages, released them, walked again and acted on whatever
/// matched then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_selection_is_acted_on_exactly_and_what_changed_is_reported() {
    let bed = TestBed::broker_only().await;
    for i in 0..3 {
        bed.seed_dead_letter(&contoso(&format!("obd-{i}")), &format!("msg-{i}"), "KeyDisabled").await;
    }
    bed.seed_dead_letter(&fabrikam("obd-f"), "msg-f", "ServicePrincipalMissing").await;
    let selection = bed.dir.path().join("selection.json");
    let listed = bed.run(&["dlq", "list", "--reason", "KeyDisabled", "--save", selection.to_str().unwrap()]).await;
    assert_eq!(listed.status.code(), Some(0));

    // Meanwhile: one listed dead letter is purged by someone else, and a new one with the same reason arrives.
    let gone = bed.dead_letters().into_iter().find(|m| m.message_id.as_deref() == Some("msg-1")).unwrap();
    let sequence = gone.sequence_number.to_string();
    let other = bed.run(&["dlq", "purge", "--sequence", &sequence, "--yes", "--no-archive"]).await;
    assert_eq!(other.status.code(), Some(0));
    bed.seed_dead_letter(&contoso("obd-new"), "msg-new", "KeyDisabled").await;

    let purged = bed.run(&["dlq", "purge", "--selection", selection.to_str().unwrap(), "--yes"]).await;
    assert_eq!(purged.status.code(), Some(0));
    assert_eq!(message_ids(bed.dead_letters()), BTreeSet::from(["msg-f".to_owned(), "msg-new".to_owned()]));
    let report = String::from_utf8_lossy(&purged.stderr);
    assert!(
        report.contains("gone since the listing") && report.contains(&gone.sequence_number.to_string()),
        "{report}"
    );
    assert!(report.contains("new since the listing"), "{report}");
}

/// The binding itself, in the library the CLI prompt and the console share: what is locked when the operator is
/// shown the selection is what is acted on, whatever arrives before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmed_selection_stays_locked_until_it_is_acted_on() {
    use clap::Parser;
    use cmkctl::actions::{Action, Actor, execute};
    use cmkctl::selection::{Bounds, Expected, lock};
    let bed = TestBed::broker_only().await;
    for i in 0..2 {
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
    let connection = cmkctl::connect::connect(&cli.connection).unwrap();
    let filter = cmkctl::dead_letter::Filter::new(cmkctl::cli::FilterArgs {
        reason: vec!["KeyDisabled".into()],
        ..Default::default()
    });
    let locked =
        lock(&connection.client, "onboarding", &filter, &Expected::Matching, Bounds::default(), |_| {}).await.unwrap();
    assert_eq!(locked.chosen.len(), 2, "shown to the operator");

    // While the operator reads: a third matching dead letter arrives, and another client tries to take the two.
    bed.seed_dead_letter(&contoso("obd-late"), "msg-late", "KeyDisabled").await;
    let other = cmkctl::selection::read(&connection.client, "onboarding", &filter, Bounds::default()).await.unwrap();
    assert_eq!(other.0.len(), 1, "the shown ones are locked: another run only sees the newcomer");

    let (audit, _) = cmkctl::audit::AuditLog::open(&bed.state_dir().join("audit.jsonl")).unwrap();
    let actor = Actor { connection, queue: "onboarding".into(), operator: "test".into(), audit };
    let summary = execute(locked, Action::Purge { archive: None }, &actor, |_| {}).await.unwrap();
    assert_eq!(summary.succeeded, 2);
    assert_eq!(message_ids(bed.dead_letters()), BTreeSet::from(["msg-late".to_owned()]), "only what was confirmed");
}

/// Found by an operator: `purge` kept no copy of what it deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_archives_what_it_deletes_unless_told_not_to() {
    let bed = TestBed::broker_only().await;
    bed.seed_dead_letter(&contoso("obd-a"), "msg-a", "KeyDisabled").await;
    bed.seed_dead_letter(&contoso("obd-b"), "msg-b", "InvalidVaultUri").await;
    let purged = bed.run(&["--output", "json", "dlq", "purge", "--reason", "KeyDisabled", "--yes"]).await;
    assert_eq!(purged.status.code(), Some(0));
    let archive = stdout_json(&purged)["archive"].as_str().expect("an archive by default").to_owned();
    let archived = support::json_lines(std::path::Path::new(&archive));
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0]["messageId"], "msg-a");
    let body: Value = serde_json::from_str(archived[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["onboardingId"], "obd-a");
    assert_eq!(archived[0]["applicationProperties"]["cmk-dead-letter-reason"], "KeyDisabled");
    let intent = bed.audit().into_iter().find(|r| r["record"] == "intent").unwrap();
    assert_eq!(intent["archive"], archive.as_str(), "the audit trail says where the copy is");

    let bare = bed.run(&["--output", "json", "dlq", "purge", "--yes", "--no-archive"]).await;
    assert_eq!(bare.status.code(), Some(0));
    assert!(stdout_json(&bare).get("archive").is_none());
    assert!(bed.dead_letters().is_empty());
}
