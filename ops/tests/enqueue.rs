//! Done-when 4: `enqueue` rejects an invalid message with the reason the handler gives it, and sends nothing;
//! `validate` checks alone; a valid message is sent and completes.

mod support;

use support::OpsBed as _;

use std::process::Stdio;

use support::{CONTOSO_ACCOUNT, CONTOSO_TENANT, contoso, onboarding, stdout_json};
use tokio::io::AsyncWriteExt;

fn invalid_cases() -> Vec<(&'static str, Vec<u8>)> {
    let with_vault = |vault: &str| onboarding("obd-bad", CONTOSO_TENANT, CONTOSO_ACCOUNT, vault, "cmk");
    let mut unknown_version: serde_json::Value = serde_json::from_slice(&contoso("obd-v2")).unwrap();
    unknown_version["schemaVersion"] = "2.0".into();
    // The create option (decision 29) with a region's display name: refused, never guessed.
    let mut create_display_name: serde_json::Value = serde_json::from_slice(&contoso("obd-create")).unwrap();
    create_display_name["create"] =
        serde_json::json!({ "location": "West Europe", "sku": "Standard_LRS", "kind": "StorageV2" });
    vec![
        ("create-display-name", serde_json::to_vec(&create_display_name).unwrap()),
        ("invalid-json", b"{ this is not json".to_vec()),
        ("missing-field", br#"{"schemaVersion":"1.0","onboardingId":"obd-x"}"#.to_vec()),
        ("unknown-schema", serde_json::to_vec(&unknown_version).unwrap()),
        (
            "bad-guid",
            onboarding("obd-guid", "not-a-guid", CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk"),
        ),
        (
            "outside-allow-list",
            onboarding(
                "obd-outside",
                CONTOSO_TENANT,
                "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/elsewhere",
                "https://contoso-kv.vault.azure.net/",
                "cmk",
            ),
        ),
        ("imds", with_vault("http://169.254.169.254/")),
        ("lookalike", with_vault("https://x.vault.azure.net.evil.com/")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_rejects_what_the_handler_would_reject_and_sends_nothing() {
    let bed = support::with_handler(&[]).await;
    let settings = bed.settings_file();
    let settings = settings.to_str().unwrap();
    let mut expected = Vec::new();
    for (name, body) in invalid_cases() {
        let file = bed.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, &body).unwrap();
        let file = file.to_str().unwrap();

        let validate = bed.run(&["--output", "json", "validate", "--settings", settings, file]).await;
        assert_eq!(validate.status.code(), Some(3), "{name}");
        let code = stdout_json(&validate)["reasonCode"].as_str().unwrap().to_owned();

        let last_request = bed.emulator.shared().log.list(None).last().map_or(0, |r| r.seq);
        let enqueue = bed.run(&["--output", "json", "enqueue", "--settings", settings, file]).await;
        assert_eq!(enqueue.status.code(), Some(3), "{name}");
        assert_eq!(stdout_json(&enqueue)["reasonCode"], code.as_str(), "{name}");
        let sent: Vec<_> = bed
            .emulator
            .shared()
            .log
            .list(None)
            .into_iter()
            .filter(|r| r.seq > last_request && r.path.ends_with("/onboarding/messages"))
            .collect();
        assert!(sent.is_empty(), "{name}: enqueue sent {} message(s)", sent.len());
        expected.push((name, body, code));
    }

    // The handler, given the same messages, dead-letters each with the same reason.
    for (name, body, _) in &expected {
        bed.send(body, &format!("msg-{name}"));
    }
    bed.wait_until("every invalid message dead-lettered", |bed| bed.dead_letters().len() == expected.len()).await;
    for (name, _, code) in &expected {
        let letter = bed
            .dead_letters()
            .into_iter()
            .find(|m| m.application_properties["cmk-original-message-id"] == format!("msg-{name}"))
            .unwrap();
        assert_eq!(letter.application_properties["cmk-dead-letter-reason"], code.as_str(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_message_from_stdin_is_sent_and_completes() {
    let bed = support::with_handler(&[]).await;
    let settings = bed.settings_file();
    let mut child = bed
        .cmkctl(&["--output", "json", "enqueue", "--settings", settings.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&contoso("obd-enqueued")).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let sent = stdout_json(&output);
    let message_id = sent["messageId"].as_str().unwrap();
    assert!(message_id.starts_with("obd-enqueued."), "onboarding id and content hash: {message_id}");
    assert_eq!(sent["sessionId"], "contosodata", "the storage account's name is the SessionId");
    bed.wait_until("the enqueued onboarding completes", |bed| !bed.events_of("completed").is_empty()).await;
    assert_eq!(bed.events_of("completed")[0]["data"]["onboardingId"], "obd-enqueued");

    // Another session would be dead-lettered by the handler: enqueue refuses it and sends nothing.
    let file = bed.dir.path().join("contoso.json");
    std::fs::write(&file, contoso("obd-other-session")).unwrap();
    let args = ["enqueue", "--settings", settings.to_str().unwrap(), "--session-id", "fabrikamdata"];
    let before = bed.emulator.shared().log.list(None).last().map_or(0, |r| r.seq);
    let refused = bed.run(&[&args[..], &[file.to_str().unwrap()]].concat()).await;
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("\"contosodata\""));
    let log = bed.emulator.shared().log.list(None);
    assert!(!log.iter().any(|r| r.seq > before && r.path.ends_with("/onboarding/messages")), "nothing sent");
}

/// Found by an operator: a corrected message (same onboarding id, new content) was dropped by the queue's duplicate
/// detection while `enqueue` printed "sent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_is_sent_and_a_repeat_is_reported_not_swallowed() {
    let bed = support::TestBed::broker_only().await;
    let settings = bed.settings_file();
    let settings = settings.to_str().unwrap();
    let write = |name: &str, body: &[u8]| {
        let path = bed.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let original = write("original.json", &contoso("obd-fix"));
    let mut fixed: serde_json::Value = serde_json::from_slice(&contoso("obd-fix")).unwrap();
    fixed["key"]["name"] = "cmk2".into();
    let corrected = write("corrected.json", &serde_json::to_vec(&fixed).unwrap());

    let first = bed.run(&["--output", "json", "enqueue", "--settings", settings, &original]).await;
    assert_eq!(first.status.code(), Some(0));
    let repeat = bed.run(&["--output", "json", "enqueue", "--settings", settings, &original]).await;
    assert_eq!(repeat.status.code(), Some(5), "Service Bus would drop it: reported, not 'sent'");
    assert_eq!(stdout_json(&repeat)["duplicate"], "repeat");
    let correction = bed.run(&["--output", "json", "enqueue", "--settings", settings, &corrected]).await;
    assert_eq!(correction.status.code(), Some(0));
    assert_ne!(stdout_json(&correction)["messageId"], stdout_json(&first)["messageId"]);

    let queued = bed.queue();
    assert_eq!(queued.len(), 2, "the original and the correction, both on the queue");
    let keys: Vec<String> = queued
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).unwrap()["key"]["name"].as_str().unwrap().into())
        .collect();
    assert_eq!(keys, ["cmk", "cmk2"]);

    // An explicit MessageId reused for other content would swallow the correction: refused, nothing sent.
    let reused = stdout_json(&first)["messageId"].as_str().unwrap().to_owned();
    let swallowed =
        bed.run(&["--output", "json", "enqueue", "--settings", settings, "--message-id", &reused, &corrected]).await;
    assert_eq!(swallowed.status.code(), Some(5));
    assert_eq!(stdout_json(&swallowed)["duplicate"], "swallowed");
    assert_eq!(bed.queue().len(), 2);
}
