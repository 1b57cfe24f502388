//! One onboarding per storage account at a time (ARCHITECTURE.md, decision 13): the queue requires sessions, the
//! SessionId is the account's name, the trigger runs one message per session at a time, and the handler keeps the
//! session on every copy and refuses a message outside its account's session.

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
use azure_emulator::scenario::Change;
use azure_emulator::servicebus::NewMessage;
use cmk_testbed::TestBed;

use crate::testbed::{
    CONTOSO_ACCOUNT, CONTOSO_TENANT, FABRIKAM_ACCOUNT, contoso, fabrikam, handler, onboarding, sample_message,
    sample_scenario,
};

const BUS_HOST: &str = "northwind-onboarding.servicebus.windows.net";
const CONTOSO_VAULT: &str = "https://contoso-kv.vault.azure.net/";

fn is_event_publish(record: &azure_emulator::reqlog::RequestRecord) -> bool {
    record.method == "POST" && record.host == BUS_HOST && record.path.contains("/onboarding-events/messages")
}

fn is_storage_patch(record: &azure_emulator::reqlog::RequestRecord) -> bool {
    record.method == "PATCH" && record.path.eq_ignore_ascii_case(CONTOSO_ACCOUNT)
}

/// Requests for key `name` of the Contoso vault (`/keys/{name}` and `/keys/{name}/…`).
fn uses_key(record: &azure_emulator::reqlog::RequestRecord, name: &str) -> bool {
    record.host == "contoso-kv.vault.azure.net"
        && (record.path.ends_with(&format!("/keys/{name}")) || record.path.contains(&format!("/keys/{name}/")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_onboardings_of_one_account_run_one_after_the_other_and_the_later_one_wins() {
    let bed = crate::testbed::start().await;
    let second_key =
        serde_json::from_value(serde_json::json!({ "name": "cmk2", "tags": { "cmk-consent": CONTOSO_ACCOUNT } }))
            .unwrap();
    bed.apply(vec![Change::AddKey { vault: "contoso-kv".into(), key: second_key }]);
    // Each PATCH takes 300 ms: run side by side, the second onboarding's key checks would land inside the first's
    // PATCH; serialised, nothing of the second starts before the first has published its outcome.
    let slow_patch = FaultRule {
        matcher: FaultMatch {
            host: Some("management.azure.com".into()),
            method: Some("PATCH".into()),
            path_contains: Some("/storageAccounts/contosodata".into()),
        },
        action: FaultAction::Delay { delay_ms: 300 },
        times: None,
        probability: None,
        seed: None,
    };
    bed.emulator.shared().faults.add(slow_patch).unwrap();
    bed.emulator.shared().log.clear();

    bed.send(&onboarding("obd-first", CONTOSO_TENANT, CONTOSO_ACCOUNT, CONTOSO_VAULT, "cmk"), "msg-first");
    bed.send(&onboarding("obd-second", CONTOSO_TENANT, CONTOSO_ACCOUNT, CONTOSO_VAULT, "cmk2"), "msg-second");
    bed.wait_until("both onboardings completed", |bed| bed.events_of("completed").len() == 2).await;
    bed.wait_queue_idle().await;

    let log = bed.requests();
    let seq = |matches: &dyn Fn(&azure_emulator::reqlog::RequestRecord) -> bool| -> Vec<u64> {
        log.iter().filter(|r| matches(r)).map(|r| r.seq).collect()
    };
    let patches = seq(&is_storage_patch);
    let publishes = seq(&is_event_publish);
    let first_key = seq(&|r| uses_key(r, "cmk"));
    let second_key = seq(&|r| uses_key(r, "cmk2"));
    let lines = cmk_testbed::call_lines(&log).join("\n");
    assert_eq!(patches.len(), 2, "the account is patched once per onboarding, no more:\n{lines}");
    // The second publishes `superseded` for the first (whose `completed` is no longer true), then its `completed`.
    assert_eq!(publishes.len(), 3, "{lines}");
    assert!(!first_key.is_empty() && !second_key.is_empty(), "{lines}");
    // The first onboarding's work, its PATCH and its outcome all come before anything of the second's.
    assert!(first_key.iter().all(|&s| s < patches[0]) && patches[0] < publishes[0], "{lines}");
    assert!(publishes[0] < second_key[0], "the second starts after the first's outcome:\n{lines}");
    assert!(second_key.iter().all(|&s| s < patches[1]) && patches[1] < publishes[1], "{lines}");
    let superseded = bed.events_of("superseded");
    assert_eq!(superseded.len(), 1, "{superseded:#?}");
    assert_eq!(superseded[0]["data"]["onboardingId"], "obd-first");
    assert_eq!(superseded[0]["data"]["supersededBy"]["onboardingId"], "obd-second");

    let completed = bed.events_of("completed");
    let order: Vec<(&str, &str)> = completed
        .iter()
        .map(|e| (e["data"]["onboardingId"].as_str().unwrap(), e["data"]["keyName"].as_str().unwrap()))
        .collect();
    assert_eq!(order, [("obd-first", "cmk"), ("obd-second", "cmk2")]);
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(account["properties"]["encryption"]["keyvaultproperties"]["keyname"], "cmk2", "{account:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_outside_its_accounts_session_is_dead_lettered_with_the_reason() {
    let bed = crate::testbed::start().await;
    let mut message = NewMessage::new(contoso("obd-wrong-session"));
    message.message_id = Some("msg-wrong-session".into());
    message.session_id = Some("fabrikamdata".into());
    bed.send_message(message);
    bed.wait_until("dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    bed.wait_queue_idle().await;

    let letter = &bed.dead_letters()[0];
    assert_eq!(letter.application_properties["cmk-dead-letter-reason"], "SessionIdMismatch");
    let description = letter.application_properties["cmk-dead-letter-description"].as_str().unwrap();
    assert!(description.contains("\"fabrikamdata\"") && description.contains("\"contosodata\""), "{description}");
    assert_eq!(letter.session_id.as_deref(), Some("fabrikamdata"), "the copy stays in the session it came in");
    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["reasonCode"], "SessionIdMismatch");
    assert_eq!(failed[0]["data"]["storageAccountId"], CONTOSO_ACCOUNT);
    // Permanent before any work: nothing but Service Bus was called.
    for record in bed.requests() {
        assert!(
            record.host == BUS_HOST || record.host == "127.0.0.1",
            "{} {}{}",
            record.method,
            record.host,
            record.path
        );
    }
    assert!(bed.events_of("completed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_string_encoding_a_body_member_named_session_id_cannot_pose_as_the_session() {
    let bed = TestBed::start_custom(handler(), sample_scenario(), &[], |app| {
        let path = app.join("ProcessOnboarding/function.json");
        let mut definition: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        definition["bindings"][0].as_object_mut().unwrap().remove("dataType");
        std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    })
    .await;
    // The message sits in Fabrikam's session, but its body claims Contoso's: the host copies the member over the
    // broker's SessionId, so the handler must not trust it.
    let mut body: serde_json::Value = serde_json::from_slice(&contoso("obd-posing")).unwrap();
    body["sessionId"] = "contosodata".into();
    let mut message = NewMessage::new(serde_json::to_vec(&body).unwrap());
    message.message_id = Some("msg-posing".into());
    message.session_id = Some("fabrikamdata".into());
    bed.send_message(message);
    bed.wait_until("dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    assert_eq!(bed.dead_letters()[0].application_properties["cmk-dead-letter-reason"], "SessionIdUnverifiable");
    assert!(bed.events_of("completed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_dead_letter_copies_stay_in_the_accounts_session() {
    let bed = crate::testbed::start().await;
    // Fabrikam has not installed the app: a retry copy is scheduled (1 s in the testbed's settings).
    bed.send(&fabrikam("obd-waiting"), "msg-waiting");
    // The poison sample names Contoso's account and an IMDS vault: dead-lettered without any work.
    bed.send(&sample_message("onboarding-poison.json"), "msg-poison");
    let is_retry = |m: &azure_emulator::servicebus::Message| {
        m.application_properties.contains_key("cmk-attempt")
            && !m.application_properties.contains_key("cmk-dead-letter-reason")
    };
    bed.wait_until("a retry copy scheduled", |bed| bed.queue().iter().any(is_retry)).await;
    let retry = bed.queue().into_iter().find(is_retry).unwrap();
    assert_eq!(retry.session_id.as_deref(), Some("fabrikamdata"));
    assert_eq!(crate::testbed::session_of(&retry.body).as_deref(), Some("fabrikamdata"));
    assert!(FABRIKAM_ACCOUNT.ends_with("/fabrikamdata"));

    bed.wait_until("the poison message dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    let letter = &bed.dead_letters()[0];
    assert_eq!(letter.application_properties["cmk-dead-letter-reason"], "InvalidVaultUri");
    assert_eq!(letter.session_id.as_deref(), Some("contosodata"));
}
