//! `cmkctl probe` asks the key watch for one account now (the timer's own probe message, for what the account
//! records, looked up with the status function), `cmkctl status` shows what the status function answers, and
//! `dlq diagnose` explains offboarding and probe dead letters instead of refusing them.

mod support;

use support::OpsBed as _;

use azure_emulator::scenario::Change;
use azure_emulator::servicebus::NewMessage;
use serde_json::Value;
use support::{CONTOSO_ACCOUNT, CONTOSO_TENANT, TestBed, contoso, offboarding, stdout_json};

fn watch_state(bed: &TestBed) -> Option<String> {
    bed.storage_account(CONTOSO_ACCOUNT)["tags"]["cmk-watch-state"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_now_and_diagnose_every_kind() {
    let bed = support::with_handler(&[]).await;
    let settings = bed.settings_file();
    let settings = format!("--settings={}", settings.display());
    let (master_key, function_key) = bed.host().keys();
    bed.send(&contoso("obd-probe-1"), "msg-probe-1");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    assert_eq!(watch_state(&bed), None, "the timer has not run (once a year in the testbed)");

    // Looked up with the status function: the probe records a baseline, publishes nothing.
    let status_key = format!("--function-key={function_key}");
    let sent =
        bed.run(&["--output", "json", "probe", "--storage-account", CONTOSO_ACCOUNT, &status_key, &settings]).await;
    assert_eq!(sent.status.code(), Some(0), "{}", String::from_utf8_lossy(&sent.stderr));
    let sent = stdout_json(&sent);
    assert_eq!((sent["onboardingId"].as_str(), sent["sessionId"].as_str()), (Some("obd-probe-1"), Some("contosodata")));
    bed.wait_until("the baseline", |bed| watch_state(bed).is_some()).await;
    bed.wait_queue_idle().await;
    assert_eq!(bed.events().len(), 1, "{:#?}", bed.events());

    // The key is disabled: only a probe for what the account records may report it. A probe for an onboarding or
    // tenant the account does not record does nothing.
    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: false }]);
    let stranger = "99999999-9999-9999-9999-999999999999";
    for (id, tenant) in [("obd-other", CONTOSO_TENANT), ("obd-probe-1", stranger)] {
        let given = bed
            .run(&["probe", "--storage-account", CONTOSO_ACCOUNT, "--onboarding-id", id, "--tenant", tenant, &settings])
            .await;
        assert_eq!(given.status.code(), Some(0), "{}", String::from_utf8_lossy(&given.stderr));
    }
    bed.wait_queue_idle().await;
    assert!(bed.events_of("key_access_lost").is_empty(), "{:#?}", bed.events());
    assert!(bed.dead_letters().is_empty());

    // Without a key or ids there is nothing to probe for.
    let refused = bed.run(&["probe", "--storage-account", CONTOSO_ACCOUNT, &settings]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--function-key"));

    // Probe now: the revocation is reported at once, not at the next timer run.
    let sent = bed.run(&["probe", "--storage-account", CONTOSO_ACCOUNT, &status_key, &settings]).await;
    assert_eq!(sent.status.code(), Some(0), "{}", String::from_utf8_lossy(&sent.stderr));
    bed.wait_until("key_access_lost", |bed| bed.events_of("key_access_lost").len() == 1).await;
    bed.wait_queue_idle().await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost[0]["data"]["reasonCode"], "KeyDisabled");

    // `status` shows what the status function answers: the lost access and its event.
    let asked = ["status", "--storage-account", CONTOSO_ACCOUNT, "--onboarding-id", "obd-probe-1", &status_key];
    let status = bed.run(&[&["--output", "json"][..], &asked[..]].concat()).await;
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));
    let status = stdout_json(&status);
    assert_eq!(status["requestedOnboarding"]["standing"], "current", "{status:#}");
    assert_eq!(status["watch"]["keyAccess"], "KeyDisabled", "{status:#}");
    assert_eq!(status["watch"]["lastEvent"]["id"], lost[0]["id"]);
    let table = bed.run(&asked).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("KeyDisabled since") && table.contains("obd-probe-1: current"), "{table}");
    let wrong = bed.run(&["status", "--storage-account", CONTOSO_ACCOUNT, "--function-key=not-the-key"]).await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"), "{}", String::from_utf8_lossy(&wrong.stderr));

    // Dead letters of the other kinds are diagnosed, not refused.
    let probe_body = serde_json::json!({
        "schemaVersion": "1.1", "kind": "probe", "onboardingId": "obd-probe-1", "requestedAt": "2026-11-29T10:00:00Z",
        "customer": { "tenantId": CONTOSO_TENANT }, "storageAccount": { "resourceId": CONTOSO_ACCOUNT },
    });
    // Marked as the handler marks its dead-letter copies: the running handler fails them fast into the DLQ.
    for (body, reason) in [
        (probe_body.to_string().into_bytes(), "InvocationTimeUp"),
        (offboarding("obd-other", CONTOSO_TENANT, CONTOSO_ACCOUNT), "StorageAccountNotOurs"),
    ] {
        let mut message = NewMessage::new(body);
        message.session_id = Some("contosodata".into());
        message.application_properties.insert("cmk-dead-letter-reason".into(), Value::from(reason));
        message.application_properties.insert("cmk-dead-letter-description".into(), Value::from("seeded"));
        bed.send_message(message);
    }
    bed.wait_until("both dead-lettered", |bed| bed.dead_letters().len() == 2).await;
    let admin_key = format!("--function-key={master_key}");
    let diagnosed = bed.run(&["--output", "json", "dlq", "diagnose", &admin_key]).await;
    assert_eq!(diagnosed.status.code(), Some(3), "{}", String::from_utf8_lossy(&diagnosed.stderr));
    let diagnosed = stdout_json(&diagnosed);
    let by_kind = |kind: &str| -> Value {
        diagnosed.as_array().unwrap().iter().find(|d| d["kind"] == kind).cloned().unwrap_or(Value::Null)
    };
    let probe = by_kind("probe");
    assert_eq!(probe["ready"], false, "{diagnosed:#}");
    assert_eq!(probe["blockedBy"], "customer_key: KeyDisabled", "{probe:#}");
    assert_eq!(probe["deadLetterReason"], "InvocationTimeUp");
    let off = by_kind("offboarding");
    assert_eq!(off["blockedBy"], "ownership: StorageAccountNotOurs", "{off:#}");
    assert_eq!(off["supersededBy"], Value::Null, "supersession is an onboarding's");
    assert_eq!(off["diagnosis"]["recordedOnboarding"]["onboardingId"], "obd-probe-1");
    let table = bed.run(&["dlq", "diagnose", &admin_key]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("KIND") && table.contains("offboarding") && table.contains("probe"), "{table}");

    // `enqueue` takes the other kinds: the account's own offboarding ends `offboarded`, and the status says so.
    let file = bed.dir.path().join("offboarding.json");
    std::fs::write(&file, offboarding("obd-probe-1", CONTOSO_TENANT, CONTOSO_ACCOUNT)).unwrap();
    let sent = bed.run(&["enqueue", &settings, file.to_str().unwrap()]).await;
    assert_eq!(sent.status.code(), Some(0), "{}", String::from_utf8_lossy(&sent.stderr));
    bed.wait_until("offboarded", |bed| bed.events_of("offboarded").len() == 1).await;
    let after = bed.run(&[&["--output", "json"][..], &asked[..]].concat()).await;
    let after = stdout_json(&after);
    assert_eq!(
        (after["status"].as_str(), after["requestedOnboarding"]["standing"].as_str()),
        (Some("not_onboarded"), Some("no_onboarding_recorded")),
        "{after:#}"
    );
    assert_eq!(after["watch"], Value::Null, "offboarding removes the watch's tag too");
    assert_eq!(after["encryption"]["keySource"], "Microsoft.Storage");
}
