//! The default trigger encoding still works end to end: without `"dataType": "binary"` the host double-encodes the
//! body and copies its top-level properties into `Metadata`; the handler completes the onboarding all the same, and
//! never takes a body member for a broker property.

use cmk_testbed::TestBed;

use crate::testbed::{CONTOSO_ACCOUNT, contoso, handler, sample_scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_string_encoding_is_accepted() {
    let bed = TestBed::start_custom(handler(), sample_scenario(), &[], |app| {
        let path = app.join("ProcessOnboarding/function.json");
        let mut definition: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let trigger = definition["bindings"][0].as_object_mut().unwrap();
        assert_eq!(trigger.remove("dataType"), Some("binary".into()), "the shipped trigger declares binary");
        std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    })
    .await;
    bed.send(&contoso("obd-string-form"), "msg-string-form");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    let account = bed.storage_account(CONTOSO_ACCOUNT);
    assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
}

/// The shipped app with the trigger's `dataType` removed (the host's default string encoding).
async fn string_encoded() -> TestBed {
    TestBed::start_custom(handler(), sample_scenario(), &[], |app| {
        let path = app.join("ProcessOnboarding/function.json");
        let mut definition: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        definition["bindings"][0].as_object_mut().unwrap().remove("dataType");
        std::fs::write(&path, serde_json::to_vec(&definition).unwrap()).unwrap();
    })
    .await
}

/// The host copies a body member named `ApplicationProperties` over the broker's: a forged dead-letter mark in the
/// body must not be taken for one (it would send the message to the DLQ without a reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_member_never_poses_as_a_broker_property() {
    let bed = string_encoded().await;
    let mut body: serde_json::Value = serde_json::from_slice(&contoso("obd-forged-mark")).unwrap();
    body["ApplicationProperties"] = serde_json::json!({ "cmk-dead-letter-reason": "Forged" });
    body["messageId"] = "not-the-broker-message-id".into();
    bed.send(&serde_json::to_vec(&body).unwrap(), "msg-forged-mark");

    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert!(bed.dead_letters().is_empty());
    assert_eq!(bed.host().status()["invocations"]["failed"], 0);
}

/// When the body hides both copies of the application properties, no copy could carry a readable mark: the message
/// is dead-lettered as it is, next to a reason record, instead of looping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_hiding_every_property_is_dead_lettered_as_it_is_with_a_reason_record() {
    let bed = string_encoded().await;
    let mut body: serde_json::Value = serde_json::from_slice(&contoso("obd-hidden")).unwrap();
    body["ApplicationProperties"] = serde_json::json!({});
    body["UserProperties"] = serde_json::json!({});
    body["requestedAt"] = "9999-01-01T00:00:00Z".into();
    let bytes = serde_json::to_vec(&body).unwrap();
    bed.send(&bytes, "msg-hidden");

    bed.wait_until("the original and its reason record dead-lettered", |bed| bed.dead_letters().len() == 2).await;
    bed.wait_queue_idle().await;
    let dead = bed.dead_letters();
    let original = dead.iter().find(|m| m.message_id.as_deref() == Some("msg-hidden")).expect("the original");
    assert_eq!(original.body, bytes);
    let record = dead.iter().find(|m| m.message_id.as_deref() != Some("msg-hidden")).expect("the record");
    assert_eq!(record.application_properties["cmk-dead-letter-reason"], "InvalidRequestedAt");
    assert_eq!(record.application_properties["cmk-reason-for-sequence-number"], original.sequence_number);
    assert_eq!(bed.events_of("failed").len(), 1);
}
