//! Issue 15: a dead letter of an onboarding that a newer onboarding of the same account has since superseded.
//! `dlq diagnose` says so, `dlq replay` skips it unless `--force`, and replayed anyway it changes nothing: the handler
//! supersedes it, and the account keeps the newer onboarding's key.

mod support;

use support::OpsBed as _;

use azure_emulator::scenario::Change;
use azure_emulator::servicebus::NewMessage;
use serde_json::Value;
use support::{CONTOSO_ACCOUNT, CONTOSO_TENANT, contoso, onboarding, stdout_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_dead_letter_is_diagnosed_as_such_and_replayed_only_with_force() {
    let bed = support::with_handler(&[]).await;
    // Onboarding A (a key the customer has not created) has waited eight days: its next failure is past the deadline.
    let body =
        onboarding("obd-old", CONTOSO_TENANT, CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk-later");
    let mut message = NewMessage::new(body);
    message.message_id = Some("msg-old".into());
    message.session_id = support::session_of(&message.body);
    let eight_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(8);
    let first_attempt = eight_days_ago.format(&time::format_description::well_known::Rfc3339).unwrap();
    message.application_properties.insert("cmk-attempt".into(), Value::from(40));
    message.application_properties.insert("cmk-first-attempt-at".into(), Value::from(first_attempt));
    bed.send_message(message);
    bed.wait_until("A is dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    // Onboarding B, sent later, completes; then the customer creates A's key, so only supersession stops A now.
    bed.send(&contoso("obd-new"), "msg-new");
    bed.wait_until("B completed", |bed| bed.events_of("completed").len() == 1).await;
    let key =
        serde_json::from_value(serde_json::json!({ "name": "cmk-later", "tags": { "cmk-consent": CONTOSO_ACCOUNT } }))
            .unwrap();
    bed.apply(vec![Change::AddKey { vault: "contoso-kv".into(), key }]);

    let (master_key, _) = bed.host().keys();
    // `--function-key=KEY`: a random key may begin with `-`.
    let function_key = format!("--function-key={master_key}");
    let diagnosed = bed.run(&["--output", "json", "dlq", "diagnose", &function_key]).await;
    assert_eq!(diagnosed.status.code(), Some(3), "not ready");
    let diagnosed = stdout_json(&diagnosed);
    assert_eq!(diagnosed[0]["supersededBy"], "obd-new", "{diagnosed:#}");
    assert_eq!(diagnosed[0]["blockedBy"], "superseded by obd-new");
    assert_eq!(diagnosed[0]["ready"], false);

    let skipped = bed.run(&["dlq", "replay", "--yes", &function_key]).await;
    assert_eq!(skipped.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("superseded by obd-new; not replayed"));
    assert_eq!(bed.dead_letters().len(), 1, "not replayed without --force");

    let forced = bed.run(&["dlq", "replay", "--yes", "--force", &function_key]).await;
    assert_eq!(forced.status.code(), Some(0));
    bed.wait_until("the replay is superseded", |bed| !bed.events_of("superseded").is_empty()).await;
    bed.wait_queue_idle().await;
    let superseded = &bed.events_of("superseded")[0]["data"];
    assert_eq!(
        (superseded["onboardingId"].as_str(), superseded["supersededBy"]["onboardingId"].as_str()),
        (Some("obd-old"), Some("obd-new"))
    );
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(account["properties"]["encryption"]["keyvaultproperties"]["keyname"], "cmk", "B's key stays");
    assert_eq!(bed.events_of("completed").len(), 1, "A never completes");
    assert!(bed.dead_letters().is_empty());
}
