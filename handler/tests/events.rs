//! CloudEvents: every event validates against its JSON Schema, serialises to the golden JSON in
//! `tests/data/events/`, and has a stable id that changes exactly when the fact it reports changes.
//!
//! Regenerate the goldens after an intended change with `BLESS_GOLDEN=1 cargo test -p handler --test events`.

use std::path::Path;

use cmk_handler::cloud::Cloud;
use cmk_handler::error::CustomerAction;
use cmk_handler::events::{
    ActionRequiredData, CLOUDEVENTS_CONTENT_TYPE, CompletedData, EventData, EventType, FailedData, KeyWatchData,
    OffboardedData, OnboardingEvent, SupersededData, SupersedingOnboarding, event_source,
};
use cmk_handler::remediation::{RemediationContext, remediation};
use serde_json::{Value, json};
use time::macros::datetime;

const ONBOARDING: &str = "obd-2026-0001";
const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn source() -> String {
    event_source(Some("func-cmk-onboarding"))
}

fn completed_data() -> CompletedData {
    CompletedData {
        onboarding_id: ONBOARDING.into(),
        customer_tenant_id: TENANT.into(),
        storage_account_id: ACCOUNT.into(),
        key_vault_uri: "https://contoso-kv.vault.azure.net/".into(),
        key_name: "cmk".into(),
        key_version: None,
        current_versioned_key_identifier: "https://contoso-kv.vault.azure.net/keys/cmk/0682afdd9c104f4285df20107e956cad".into(),
        last_key_rotation_timestamp: Some(datetime!(2026-11-29 10:00:05 UTC)),
        user_assigned_identity_id: "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami".into(),
        federated_identity_client_id: "aaaaaaaa-0000-0000-0000-000000000001".into(),
        attempts: 1,
        first_attempt_at: datetime!(2026-11-29 10:00:01 UTC),
        completed_at: datetime!(2026-11-29 10:00:06 UTC),
    }
}

fn completed() -> OnboardingEvent {
    OnboardingEvent::completed(&source(), completed_data(), datetime!(2026-11-29 10:00:06 UTC))
        .with_traceparent(Some(TRACEPARENT.into()))
}

fn action_required() -> OnboardingEvent {
    let ctx = RemediationContext {
        cloud: Cloud::Public,
        customer_tenant_id: "44444444-4444-4444-4444-444444444444",
        app_client_id: "aaaaaaaa-0000-0000-0000-000000000001",
        vault_name: "fabrikam-kv",
        managed_hsm: false,
        key_name: "cmk",
        key_version: None,
        vault_resource_id: None,
    };
    let r = remediation(&CustomerAction::InstallApplication, &ctx);
    let data = ActionRequiredData {
        onboarding_id: "obd-2026-0002".into(),
        customer_tenant_id: "44444444-4444-4444-4444-444444444444".into(),
        storage_account_id: ACCOUNT.replace("contosodata", "fabrikamdata"),
        reason_code: "ServicePrincipalMissing".into(),
        missing: r.missing,
        actions: r.actions,
        admin_consent_url: r.admin_consent_url,
        next_attempt_at: datetime!(2026-11-29 10:20:00 UTC),
        deadline: datetime!(2026-12-06 10:05:00 UTC),
    };
    OnboardingEvent::action_required(
        &source(),
        data,
        "ServicePrincipalMissing:3f2a9c0d1e4b5a67",
        datetime!(2026-11-29 10:05:02 UTC),
    )
}

fn failed() -> OnboardingEvent {
    let data = FailedData {
        onboarding_id: "obd-2026-0003".into(),
        customer_tenant_id: Some(TENANT.into()),
        storage_account_id: Some(ACCOUNT.into()),
        reason_code: "InvalidVaultUri".into(),
        message: "invalid onboarding message: key.vaultUri: must start with https://".into(),
        attempts: 1,
        first_attempt_at: None,
        dead_lettered: true,
    };
    OnboardingEvent::failed(&source(), data, "6c1d2e3f-delivered-message-id", datetime!(2026-11-29 10:10:01 UTC))
}

fn offboarded() -> OnboardingEvent {
    let data = OffboardedData {
        onboarding_id: ONBOARDING.into(),
        customer_tenant_id: TENANT.into(),
        storage_account_id: ACCOUNT.into(),
        previous_key_vault_uri: Some("https://contoso-kv.vault.azure.net".into()),
        previous_key_name: Some("cmk".into()),
        removed_tags: vec!["cmk-onboarding-id".into(), "cmk-onboarding-order".into(), "cmk-customer-tenant".into()],
        changed: true,
        offboarded_at: datetime!(2026-12-01 09:00:02 UTC),
    };
    OnboardingEvent::offboarded(&source(), data, datetime!(2026-12-01 09:00:02 UTC))
}

const RECORDED: &str = "v1;k=0682afdd9c104f4285df20107e956cad;a=ok;x=0;c=a6f35f86";

fn key_watch_data(observed: &str) -> KeyWatchData {
    KeyWatchData {
        onboarding_id: ONBOARDING.into(),
        customer_tenant_id: TENANT.into(),
        storage_account_id: ACCOUNT.into(),
        key_vault_uri: Some("https://contoso-kv.vault.azure.net".into()),
        key_name: Some("cmk".into()),
        current_versioned_key_identifier: Some(
            "https://contoso-kv.vault.azure.net/keys/cmk/0682afdd9c104f4285df20107e956cad".into(),
        ),
        previous_key_version: None,
        key_expires_at: None,
        reason_code: None,
        missing: None,
        actions: vec![],
        admin_consent_url: None,
        recorded_state: Some(RECORDED.into()),
        observed_state: observed.into(),
        probed_at: datetime!(2026-12-03 12:00:01 UTC),
    }
}

/// One event of each key-watch type, as a probe of the Contoso account would publish it.
fn key_watch_events() -> Vec<(&'static str, OnboardingEvent)> {
    let run = "2026-12-03T12:00:00Z";
    let at = datetime!(2026-12-03 12:00:01 UTC);
    let event = |t, data| OnboardingEvent::key_watch(&source(), t, data, run, at);
    let lost_state = "v1;k=0682afdd9c104f4285df20107e956cad;a=KeyDisabled;x=0;c=a6f35f86";
    let ctx = RemediationContext {
        cloud: Cloud::Public,
        customer_tenant_id: TENANT,
        app_client_id: "aaaaaaaa-0000-0000-0000-000000000001",
        vault_name: "contoso-kv",
        managed_hsm: false,
        key_name: "cmk",
        key_version: None,
        vault_resource_id: None,
    };
    let fix = remediation(&CustomerAction::KeyDisabled, &ctx);
    vec![
        (
            "key-rotated",
            event(
                EventType::KeyRotated,
                KeyWatchData {
                    previous_key_version: Some("5c1f1e27d6c05759acbe14178e7cf185".into()),
                    recorded_state: Some(
                        RECORDED.replace("0682afdd9c104f4285df20107e956cad", "5c1f1e27d6c05759acbe14178e7cf185"),
                    ),
                    ..key_watch_data(RECORDED)
                },
            ),
        ),
        (
            "key-expiring",
            event(
                EventType::KeyExpiring,
                KeyWatchData {
                    key_expires_at: Some(datetime!(2026-12-20 00:00 UTC)),
                    ..key_watch_data(&RECORDED.replace("x=0", "x=1"))
                },
            ),
        ),
        (
            "key-access-lost",
            event(
                EventType::KeyAccessLost,
                KeyWatchData {
                    reason_code: Some("KeyDisabled".into()),
                    missing: Some(fix.missing),
                    actions: fix.actions,
                    admin_consent_url: Some(fix.admin_consent_url),
                    ..key_watch_data(lost_state)
                },
            ),
        ),
        (
            "key-access-restored",
            event(
                EventType::KeyAccessRestored,
                KeyWatchData {
                    reason_code: Some("KeyDisabled".into()),
                    recorded_state: Some(lost_state.into()),
                    ..key_watch_data(RECORDED)
                },
            ),
        ),
        (
            "configuration-drift",
            event(
                EventType::ConfigurationDrift,
                KeyWatchData {
                    key_vault_uri: None,
                    key_name: None,
                    current_versioned_key_identifier: None,
                    ..key_watch_data("v1;k=-;a=ok;x=0;c=-")
                },
            ),
        ),
    ]
}

fn superseded() -> OnboardingEvent {
    let data = SupersededData {
        onboarding_id: "obd-2026-0001".into(),
        customer_tenant_id: Some(TENANT.into()),
        storage_account_id: ACCOUNT.into(),
        onboarding_order: Some("2026-11-29T10:00:01Z#562949953421313".into()),
        superseded_by: SupersedingOnboarding {
            onboarding_id: "obd-2026-0009".into(),
            onboarding_order: Some("2026-11-29T11:30:00Z#562949953421400".into()),
        },
        superseded_at: datetime!(2026-11-29 11:30:02 UTC),
    };
    OnboardingEvent::superseded(&source(), data, datetime!(2026-11-29 11:30:02 UTC))
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events").join(format!("{name}.v1.schema.json"));
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
}

fn check(name: &str, event: &OnboardingEvent) {
    let json = serde_json::to_value(event).unwrap();
    let validator = schema(name);
    let errors: Vec<String> = validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/events").join(format!("{name}.json"));
    if std::env::var_os("BLESS_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap() + "\n").unwrap();
    }
    let golden: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        json,
        golden,
        "{name}: differs from the golden file; actual:\n{}",
        serde_json::to_string_pretty(&json).unwrap()
    );

    let back: OnboardingEvent = serde_json::from_value(json).unwrap();
    assert_eq!(&back, event, "{name}: round trip");
}

#[test]
fn completed_matches_schema_and_golden() {
    check("completed", &completed());
}

#[test]
fn action_required_matches_schema_and_golden() {
    check("action-required", &action_required());
}

#[test]
fn failed_matches_schema_and_golden() {
    check("failed", &failed());
}

#[test]
fn offboarded_matches_schema_and_golden() {
    check("offboarded", &offboarded());
}

#[test]
fn key_watch_events_match_their_schemas_and_goldens() {
    for (name, event) in key_watch_events() {
        check(name, &event);
        assert!(event.event_type.as_str().ends_with(&format!("{}.v1", name.replace('-', "_"))), "{name}");
    }
    // One event per change seen by one run: the same probe again (a redelivery) repeats the id; another run does not.
    let (_, lost) = key_watch_events().remove(2);
    let EventData::KeyWatch(data) = lost.data.clone() else { panic!() };
    let again = OnboardingEvent::key_watch(
        &source(),
        EventType::KeyAccessLost,
        data.clone(),
        "2026-12-03T12:00:00Z",
        lost.time,
    );
    assert_eq!(again.id, lost.id);
    let next_run =
        OnboardingEvent::key_watch(&source(), EventType::KeyAccessLost, data, "2026-12-03T12:15:00Z", lost.time);
    assert_ne!(next_run.id, lost.id);
    let mut without_fix = serde_json::to_value(&lost).unwrap();
    without_fix["data"].as_object_mut().unwrap().remove("actions");
    assert!(!schema("key-access-lost").is_valid(&without_fix), "a lost key always comes with the customer's fix");
}

#[test]
fn superseded_matches_schema_and_golden() {
    check("superseded", &superseded());
}

#[test]
fn schemas_reject_what_they_should() {
    let mut wrong_type = serde_json::to_value(completed()).unwrap();
    wrong_type["type"] = json!("com.cmkonboard.onboarding.failed.v1");
    assert!(!schema("completed").is_valid(&wrong_type));
    let mut not_dead_lettered = serde_json::to_value(failed()).unwrap();
    not_dead_lettered["data"]["deadLettered"] = json!(false);
    assert!(!schema("failed").is_valid(&not_dead_lettered));
    let mut no_newer = serde_json::to_value(superseded()).unwrap();
    no_newer["data"].as_object_mut().unwrap().remove("supersededBy");
    assert!(!schema("superseded").is_valid(&no_newer));
    let mut text_order = serde_json::to_value(superseded()).unwrap();
    text_order["data"]["onboardingOrder"] = json!("2026-11-29T10:00:01.5Z#1");
    assert!(!schema("superseded").is_valid(&text_order));
    let mut no_actions = serde_json::to_value(action_required()).unwrap();
    no_actions["data"]["actions"] = json!([]);
    assert!(!schema("action-required").is_valid(&no_actions));
    let mut foreign_tag = serde_json::to_value(offboarded()).unwrap();
    foreign_tag["data"]["removedTags"] = json!(["costcenter"]);
    assert!(!schema("offboarded").is_valid(&foreign_tag), "only our tags are ever removed");
}

#[test]
fn ids_change_only_with_the_fact_they_report() {
    // Same fact, another time and trace: same id (duplicate detection drops it).
    let later = OnboardingEvent::completed(&source(), completed_data(), datetime!(2026-11-30 00:00 UTC));
    assert_eq!(later.id, completed().id);
    let elsewhere = OnboardingEvent::completed(&event_source(None), completed_data(), datetime!(2026-11-30 00:00 UTC));
    assert_eq!(elsewhere.id, completed().id);
    assert_eq!(elsewhere.source, "/cmk-onboarding/handler");

    // Another key version: another fact.
    let pinned = CompletedData { key_version: Some("0682afdd9c104f4285df20107e956cad".into()), ..completed_data() };
    assert_ne!(OnboardingEvent::completed(&source(), pinned, later.time).id, completed().id);

    // action_required: per state fingerprint.
    let same = action_required();
    let EventData::ActionRequired(data) = same.data.clone() else { panic!() };
    let next_state =
        OnboardingEvent::action_required(&source(), data.clone(), "KeyAccessDenied:0000000000000000", same.time);
    assert_ne!(next_state.id, same.id);
    let same_state =
        OnboardingEvent::action_required(&source(), data, "ServicePrincipalMissing:3f2a9c0d1e4b5a67", later.time);
    assert_eq!(same_state.id, same.id);

    // failed: a replay (new delivered message id) that fails again is a new event.
    let EventData::Failed(data) = failed().data else { panic!() };
    let replay = OnboardingEvent::failed(&source(), data, "replayed-message-id", later.time);
    assert_ne!(replay.id, failed().id);

    // offboarded: one per onboarding and account, whether or not this delivery changed anything.
    let EventData::Offboarded(data) = offboarded().data else { panic!() };
    let repeated = OffboardedData { changed: false, removed_tags: vec![], ..data.clone() };
    assert_eq!(OnboardingEvent::offboarded(&source(), repeated, later.time).id, offboarded().id);
    let other_account = OffboardedData { storage_account_id: ACCOUNT.replace("contosodata", "other"), ..data };
    assert_ne!(OnboardingEvent::offboarded(&source(), other_account, later.time).id, offboarded().id);
    // superseded: one per (older, newer) pair, whoever publishes it and whenever.
    let EventData::Superseded(data) = superseded().data else { panic!() };
    let without_orders = SupersededData {
        onboarding_order: None,
        superseded_by: SupersedingOnboarding { onboarding_order: None, ..data.superseded_by.clone() },
        ..data.clone()
    };
    assert_eq!(OnboardingEvent::superseded(&source(), without_orders, later.time).id, superseded().id);
    let by_another = SupersedingOnboarding { onboarding_id: "obd-2026-0010".into(), onboarding_order: None };
    let other = SupersededData { superseded_by: by_another, ..data };
    assert_ne!(OnboardingEvent::superseded(&source(), other, later.time).id, superseded().id);

    // Same discriminator, different type or onboarding: different ids.
    let ids = [completed().id, action_required().id, failed().id];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).unwrap().get_version_num() == 5));
}

#[test]
fn service_bus_message_carries_filterable_properties() {
    let event = completed();
    let (body, message_id, properties) = event.to_service_bus();
    assert_eq!(message_id, event.id);
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["type"], "com.cmkonboard.onboarding.completed.v1");
    assert_eq!(parsed["traceparent"], TRACEPARENT);
    assert_eq!(properties["eventtype"], json!(EventType::Completed.as_str()));
    // Service Bus REST carries application properties as HTTP headers: names must be header tokens (no `:`).
    assert!(properties.keys().all(|k| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
    assert_eq!(properties["onboardingid"], json!(ONBOARDING));
    assert_eq!(properties["customertenantid"], json!(TENANT));
    assert_eq!(CLOUDEVENTS_CONTENT_TYPE, "application/cloudevents+json");

    let no_tenant = FailedData {
        customer_tenant_id: None,
        storage_account_id: None,
        ..match failed().data {
            EventData::Failed(d) => d,
            _ => unreachable!(),
        }
    };
    let (_, _, properties) = OnboardingEvent::failed(&source(), no_tenant, "m", event.time).to_service_bus();
    assert!(!properties.contains_key("customertenantid"));
}
