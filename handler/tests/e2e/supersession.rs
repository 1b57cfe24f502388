//! Issue 15: the account remembers which onboarding configured it (its tags, written in the PATCH that configures
//! encryption), and an older onboarding that comes back later is superseded instead of re-keying the account.

use azure_emulator::scenario::Change;
use cmk_handler::order::OnboardingOrder;
use serde_json::Value;

use crate::testbed::{CONTOSO_ACCOUNT, CONTOSO_TENANT, contoso, sample_scenario};

fn tags(bed: &crate::testbed::TestBed) -> Value {
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
