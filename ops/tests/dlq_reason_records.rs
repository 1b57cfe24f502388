//! A message too large for any marked copy is dead-lettered by Service Bus itself next to the handler's reason record
//! (ARCHITECTURE.md, decision 1): `dlq list` pairs them, so the original shows the handler's reason, and `dlq replay`
//! never resubmits a record's body as if it were an onboarding.

mod support;

use support::OpsBed as _;

use azure_emulator::servicebus::NewMessage;
use serde_json::Value;
use support::{TestBed, contoso, handler_binary, sample_scenario, stdout_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_record_explains_its_original_and_is_never_replayed() {
    // A Premium-sized queue (1 MB per message) and a message 100 bytes under it: no marked copy fits.
    let mut scenario: Value = serde_json::to_value(sample_scenario()).unwrap();
    scenario["serviceBus"][0]["queues"][0]["maxMessageSizeInKilobytes"] = 1024.into();
    let bed = TestBed::start_with(&handler_binary(), serde_json::from_value(scenario).unwrap(), &[]).await;
    let message_of = |padding: usize| {
        let mut body: Value = serde_json::from_slice(&contoso("obd-huge")).unwrap();
        body["padding"] = "p".repeat(padding).into();
        let mut message = NewMessage::new(serde_json::to_vec(&body).unwrap());
        message.message_id = Some("msg-huge".into());
        message.session_id = Some("contosodata".into());
        message
    };
    let huge = message_of(1024 * 1024 - 100 - message_of(0).size());
    bed.send_message(huge);
    bed.wait_until("the original and its reason record dead-lettered", |bed| bed.dead_letters().len() == 2).await;
    bed.wait_queue_idle().await;
    let dead = bed.dead_letters();
    let original = dead.iter().find(|m| m.message_id.as_deref() == Some("msg-huge")).unwrap().sequence_number;
    let record = dead.iter().find(|m| m.message_id.as_deref() != Some("msg-huge")).unwrap().sequence_number;

    let list = bed.run(&["--output", "json", "dlq", "list"]).await;
    assert_eq!(list.status.code(), Some(0));
    let listed = stdout_json(&list);
    let by_seq = |seq: i64| listed.as_array().unwrap().iter().find(|l| l["sequenceNumber"] == seq).unwrap().clone();
    let (listed_original, listed_record) = (by_seq(original), by_seq(record));
    assert_eq!(listed_original["deadLetterReason"], "MaxDeliveryCountExceeded");
    assert_eq!(listed_original["handlerReason"], "MessageTooLarge", "paired with its record: {listed_original:#}");
    assert_eq!(listed_original["onboardingId"], "obd-huge");
    assert!(listed_original.get("reasonRecordFor").is_none());
    assert_eq!(listed_record["reasonRecordFor"], original, "{listed_record:#}");

    let replay = bed.run(&["--output", "json", "dlq", "replay", "--yes"]).await;
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(stderr.contains("not replayed, reason records") && stderr.contains(&record.to_string()), "{stderr}");
    let summary = stdout_json(&replay);
    assert_eq!(summary["selected"], 1, "only the original is acted on: {summary:#}");
    let outcomes = summary["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["sequenceNumber"], original);
    assert_eq!(summary["report"]["reasonRecords"][0]["sequenceNumber"], record);
    let remaining: Vec<i64> = bed.dead_letters().iter().map(|m| m.sequence_number).collect();
    assert!(remaining.contains(&record), "the record stays until purged: {remaining:?}");
}
