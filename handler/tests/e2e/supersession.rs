//! Issue 15: the account remembers which onboarding configured it (its tags, written in the PATCH that configures
//! encryption), and an older onboarding that comes back later is superseded instead of re-keying the account.

use std::time::Duration;

use azure_emulator::scenario::Change;
use azure_emulator::servicebus::NewMessage;
use cmk_handler::order::OnboardingOrder;
use cmk_testbed::TestBed;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::testbed::{CONTOSO_ACCOUNT, CONTOSO_TENANT, contoso, onboarding, sample_scenario};

const CONTOSO_VAULT: &str = "https://contoso-kv.vault.azure.net/";

fn tags(bed: &TestBed) -> Value {
    bed.storage_account(CONTOSO_ACCOUNT)["tags"].clone()
}

/// The PATCH that configures encryption also records the onboarding, and keeps the tags the account already had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuring_patch_records_the_onboarding_in_the_account_tags() {
    let mut scenario = sample_scenario();
    let account = scenario.storage_accounts.iter_mut().find(|a| a.id.eq_ignore_ascii_case(CONTOSO_ACCOUNT)).unwrap();
    account.tags.insert("costcenter".into(), "42".into());
    let bed = crate::testbed::start_with(scenario, &[]).await;
    bed.send(&contoso("obd-tags-1"), "msg-tags-1");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;

    let tags = tags(&bed);
    assert_eq!(tags["costcenter"], "42", "{tags:#}");
    assert_eq!(tags["cmk-onboarding-id"], "obd-tags-1", "{tags:#}");
    assert_eq!(tags["cmk-customer-tenant"], CONTOSO_TENANT, "{tags:#}");
    let order = tags["cmk-onboarding-order"].as_str().unwrap();
    assert!(OnboardingOrder::parse(order).is_some(), "{order}");
    let patches: Vec<_> = bed.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "one write: encryption and tags together");
}

/// An account whose encryption is already right but whose tags do not name the onboarding gets one PATCH, with the
/// tags only; the same message again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_already_configured_gets_its_tags_in_a_tags_only_patch() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-tags-2"), "msg-tags-2");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    // Someone's tooling replaced the account's tags (ARM replaces the whole object).
    bed.apply(vec![Change::SetStorageAccountTags {
        account: CONTOSO_ACCOUNT.into(),
        tags: [("owner".to_owned(), "ops".to_owned())].into(),
    }]);
    let patches_before = bed.requests().iter().filter(|r| r.method == "PATCH").count();
    let encryption_before = bed.storage_account(CONTOSO_ACCOUNT)["properties"]["encryption"].clone();

    bed.send(&contoso("obd-tags-2"), "msg-tags-2-again");
    bed.wait_until("the tags are back", |bed| tags(bed)["cmk-onboarding-id"] == "obd-tags-2").await;
    bed.wait_queue_idle().await;
    let patches = bed.requests().iter().filter(|r| r.method == "PATCH").count() - patches_before;
    assert_eq!(patches, 1, "one PATCH for the tags");
    // The body's shape (tags only) is pinned by `workflow_storage`; here: the encryption was left as it was.
    assert_eq!(bed.storage_account(CONTOSO_ACCOUNT)["properties"]["encryption"], encryption_before);
    assert_eq!(tags(&bed)["owner"], "ops", "the account's other tags are kept");
}

/// The Contoso account's key name.
fn key_name(bed: &TestBed) -> String {
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    account["properties"]["encryption"]["keyvaultproperties"]["keyname"].as_str().unwrap_or_default().to_owned()
}

/// A Contoso onboarding of `key`, as a producer whose clock reads `requested_at` sends it.
fn contoso_with(id: &str, key: &str, requested_at: OffsetDateTime) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&onboarding(id, CONTOSO_TENANT, CONTOSO_ACCOUNT, CONTOSO_VAULT, key)).unwrap();
    body["requestedAt"] = requested_at.format(&Rfc3339).unwrap().into();
    serde_json::to_vec(&body).unwrap()
}

fn add_key(bed: &TestBed, name: &str) {
    let key = serde_json::from_value(serde_json::json!({ "name": name, "tags": { "cmk-consent": CONTOSO_ACCOUNT } }))
        .unwrap();
    bed.apply(vec![Change::AddKey { vault: "contoso-kv".into(), key }]);
}

/// The `completed` events no `superseded` event contradicts: the onboardings whose outcome is still true.
fn true_completions(bed: &TestBed) -> Vec<String> {
    let superseded: Vec<String> =
        bed.events_of("superseded").iter().map(|e| e["data"]["onboardingId"].as_str().unwrap().to_owned()).collect();
    bed.events_of("completed")
        .iter()
        .map(|e| e["data"]["onboardingId"].as_str().unwrap().to_owned())
        .filter(|id| !superseded.contains(id))
        .collect()
}

/// Onboarding A waits on the customer (its key does not exist yet) with a retry scheduled; B, sent later, completes;
/// the customer then creates A's key. A's retry is superseded: the account keeps B's key, A never completes, nothing
/// is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_onboarding_is_superseded_by_a_newer_one_that_completed() {
    let bed = crate::testbed::start().await;
    let now = OffsetDateTime::now_utc();
    bed.send(&contoso_with("obd-old", "cmk-later", now), "msg-old");
    bed.wait_until("A waits on the customer", |bed| !bed.events_of("action_required").is_empty()).await;
    assert_eq!(bed.events_of("action_required")[0]["data"]["reasonCode"], "KeyNotFound");

    bed.send(&contoso_with("obd-new", "cmk", now), "msg-new");
    bed.wait_until("B completed", |bed| bed.events_of("completed").len() == 1).await;
    add_key(&bed, "cmk-later");
    bed.wait_until("A superseded", |bed| !bed.events_of("superseded").is_empty()).await;
    bed.wait_queue_idle().await;

    let superseded = bed.events_of("superseded");
    assert_eq!(superseded.len(), 1, "{superseded:#?}");
    let data = &superseded[0]["data"];
    assert_eq!(
        (data["onboardingId"].as_str(), data["supersededBy"]["onboardingId"].as_str()),
        (Some("obd-old"), Some("obd-new"))
    );
    let (old, new) =
        (data["onboardingOrder"].as_str().unwrap(), data["supersededBy"]["onboardingOrder"].as_str().unwrap());
    assert!(OnboardingOrder::parse(old).unwrap() < OnboardingOrder::parse(new).unwrap(), "{old} {new}");
    assert_eq!(key_name(&bed), "cmk");
    assert_eq!(true_completions(&bed), ["obd-new"]);
    assert!(bed.dead_letters().is_empty());
    assert_eq!(tags(&bed)["cmk-onboarding-id"], "obd-new");
}

/// Two onboardings of one account sent together: the later one's key, and of the two `completed` events exactly one
/// is still true (the earlier one is superseded by the later one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_onboardings_sent_together_end_with_the_later_key_and_one_true_completion() {
    let bed = crate::testbed::start().await;
    add_key(&bed, "cmk2");
    let now = OffsetDateTime::now_utc();
    bed.send(&contoso_with("obd-first", "cmk", now), "msg-first");
    bed.send(&contoso_with("obd-second", "cmk2", now), "msg-second");
    bed.wait_until("both settled", |bed| {
        bed.events_of("completed").len() == 2 && !bed.events_of("superseded").is_empty()
    })
    .await;
    bed.wait_queue_idle().await;

    assert_eq!(key_name(&bed), "cmk2");
    assert_eq!(true_completions(&bed), ["obd-second"]);
    assert_eq!(bed.events_of("superseded").len(), 1);
}

/// Producer A's clock runs ahead, producer B's behind: A is sent first with a later `requestedAt` than B. The
/// broker's order decides, so B (sent last) wins, and A is the one superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_between_producers_does_not_reorder_their_onboardings() {
    let bed = crate::testbed::start().await;
    add_key(&bed, "cmk2");
    let now = OffsetDateTime::now_utc();
    let ahead = now + Duration::from_secs(4 * 60);
    let behind = now - Duration::from_secs(3 * 3600);
    bed.send(&contoso_with("obd-fast-clock", "cmk", ahead), "msg-fast-clock");
    bed.wait_until("A completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.send(&contoso_with("obd-slow-clock", "cmk2", behind), "msg-slow-clock");
    bed.wait_until("B completed", |bed| bed.events_of("completed").len() == 2).await;
    bed.wait_queue_idle().await;

    assert_eq!(key_name(&bed), "cmk2");
    assert_eq!(true_completions(&bed), ["obd-slow-clock"]);
    let superseded = bed.events_of("superseded");
    assert_eq!(superseded.len(), 1, "{superseded:#?}");
    assert_eq!(superseded[0]["data"]["onboardingId"], "obd-fast-clock");
    // A redelivery of A's message (its order is A's first delivery's) changes nothing now.
    let order = OnboardingOrder::parse(superseded[0]["data"]["onboardingOrder"].as_str().unwrap()).unwrap();
    let mut again = NewMessage::new(contoso_with("obd-fast-clock", "cmk", ahead));
    again.message_id = Some("msg-fast-clock-copy".into());
    again.session_id = Some("contosodata".into());
    again.application_properties.insert("cmk-onboarding-order".into(), order.to_string().into());
    bed.send_message(again);
    bed.wait_queue_idle().await;
    assert_eq!(key_name(&bed), "cmk2");
    assert_eq!(true_completions(&bed), ["obd-slow-clock"]);
}
