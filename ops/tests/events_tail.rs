//! `events tail` prints what a subscription receives, stops on `--max` or `--idle-timeout`, and consumes as it goes.

mod support;

use support::OpsBed as _;

use azure_emulator::servicebus::NewMessage;
use serde_json::{Value, json};
use support::{NAMESPACE, TestBed};

fn event(kind: &str, id: &str) -> NewMessage {
    let body = json!({
        "specversion": "1.0",
        "id": id,
        "type": format!("com.cmkonboard.onboarding.{kind}.v1"),
        "source": "/cmk-onboarding/test",
        "time": "2026-11-29T10:00:00Z",
        "data": { "onboardingId": format!("obd-{id}"), "reasonCode": "KeyDisabled", "message": "the key is disabled" }
    });
    let mut message = NewMessage::new(serde_json::to_vec(&body).unwrap());
    message.message_id = Some(id.to_owned());
    message.content_type = Some("application/cloudevents+json".to_owned());
    message.application_properties.insert("eventType".into(), format!("com.cmkonboard.onboarding.{kind}.v1").into());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_subscription() {
    let bed = TestBed::broker_only().await;
    let bus = &bed.emulator.shared().bus;
    for (kind, id) in [("failed", "e1"), ("completed", "e2"), ("failed", "e3")] {
        bus.send(NAMESPACE, "onboarding-events", event(kind, id)).unwrap();
    }

    let failed =
        bed.run(&["--output", "json", "events", "tail", "--subscription", "failed", "--idle-timeout", "1"]).await;
    assert_eq!(failed.status.code(), Some(0));
    let ids: Vec<String> = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["e1", "e3"], "the subscription's filter applies");

    let all = bed.run(&["events", "tail", "--subscription", "all", "--max", "2"]).await;
    assert_eq!(all.status.code(), Some(0));
    let table = String::from_utf8_lossy(&all.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two events: {table}");
    assert!(lines[1].contains("failed") && lines[1].contains("obd-e1") && lines[1].contains("KeyDisabled"), "{table}");
    assert_eq!(bed.peek("onboarding-events/subscriptions/all").len(), 1, "tail consumed the two it printed");
}

/// With filters the tail consumes only what it prints: the events it does not show are held while it runs and go back
/// to the subscription when it ends, for the console and the next tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_tail_consumes_only_what_it_prints() {
    let bed = TestBed::broker_only().await;
    let bus = &bed.emulator.shared().bus;
    for (kind, id) in [("failed", "e1"), ("completed", "e2"), ("failed", "e3"), ("key_access_lost", "e4")] {
        bus.send(NAMESPACE, "onboarding-events", event(kind, id)).unwrap();
    }
    let all = "onboarding-events/subscriptions/all";

    let args = ["--output", "json", "events", "tail", "--subscription", "all", "--idle-timeout", "2"];
    let shown = bed
        .run(&[&args[..], &["--type", "failed", "--type", "key_access_lost", "--onboarding-id", "obd-e3"]].concat())
        .await;
    assert_eq!(shown.status.code(), Some(0), "{}", String::from_utf8_lossy(&shown.stderr));
    let ids: Vec<String> = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["e3"], "type AND onboarding id");
    let left: Vec<String> = bed.peek(all).iter().filter_map(|m| m.message_id.clone()).collect();
    assert_eq!(left, ["e1", "e2", "e4"], "the others are back in the subscription, in order");

    // Full type names work too; a second filtered tail still finds what the first held and released.
    let lost = bed.run(&[&args[..], &["--type", "com.cmkonboard.onboarding.key_access_lost.v1"]].concat()).await;
    assert_eq!(String::from_utf8_lossy(&lost.stdout).lines().count(), 1, "{}", String::from_utf8_lossy(&lost.stdout));
    assert_eq!(bed.peek(all).len(), 2);

    // The hold limit bounds what a tail keeps locked: it stops, releases, and nothing is lost.
    let bounded = bed.run(&[&args[..], &["--type", "offboarded", "--hold-limit", "1"]].concat()).await;
    assert_eq!(bounded.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bounded.stderr).contains("--hold-limit"),
        "{}",
        String::from_utf8_lossy(&bounded.stderr)
    );
    assert_eq!(bed.peek(all).len(), 2, "released");

    // A misspelt type is refused before anything is received.
    let typo = bed.run(&[&args[..], &["--type", "key_revoked"]].concat()).await;
    assert_eq!(typo.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("key_access_lost"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    assert_eq!(bed.peek(all).len(), 2);
}
