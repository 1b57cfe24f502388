//! Service Bus message sessions: SessionId on send, session locks (one holder per session, expiry, renewal, close),
//! FIFO inside a session, abandon, scheduled messages, dead-lettering, and what the REST API (which has no session
//! receiver) answers on a session-enabled entity.

use std::time::Duration;

use azure_emulator::servicebus::{Bus, BusError, MAX_DELIVERY_REASON, NewMessage, sas_token};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::StatusCode;
use serde_json::json;

const NS: &str = "cmk-ns";
const QUEUE: &str = "orders";
const DLQ: &str = "orders/$DeadLetterQueue";
const ROOT_KEY: &str = "cm9vdC1rZXktZm9yLXRlc3Rz";
/// The session queue's `lockDuration`.
const LOCK: Duration = Duration::from_secs(30);

async fn start() -> Emulator {
    let scenario: Scenario = serde_json::from_value(json!({
        "tenants": [{ "id": "11111111-1111-1111-1111-111111111111", "name": "isv" }],
        "serviceBus": [{
            "name": NS,
            "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-bus/providers/Microsoft.ServiceBus/namespaces/cmk-ns",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "sasKeys": [{ "name": "RootManageSharedAccessKey", "key": ROOT_KEY }],
            "queues": [
                { "name": QUEUE, "lockDuration": "PT30S", "maxDeliveryCount": 3, "requiresSession": true },
                { "name": "plain" }
            ],
            "topics": [{
                "name": "events",
                "subscriptions": [{ "name": "all" }, { "name": "by-session", "requiresSession": true }]
            }]
        }]
    }))
    .expect("scenario parses");
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    Emulator::start(options).await.expect("emulator starts")
}

fn message(session: Option<&str>, id: &str) -> NewMessage {
    let mut message = NewMessage::new(id.as_bytes().to_vec());
    message.message_id = Some(id.to_owned());
    message.session_id = session.map(str::to_owned);
    message
}

fn send(bus: &Bus, entity: &str, session: &str, id: &str) {
    bus.send(NS, entity, message(Some(session), id)).expect("send");
}

fn advance(emulator: &Emulator, by: Duration) {
    emulator.shared().clock.advance(by);
    emulator.shared().bus.clock_advanced();
}

const NOW: Duration = Duration::ZERO;

/// A REST request to `https://cmk-ns.servicebus.windows.net{path}` with the root SAS key.
fn rest(emulator: &Emulator, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let expiry = emulator.shared().clock.now().unix_timestamp() + 3600;
    let sas =
        sas_token(&format!("https://{NS}.servicebus.windows.net/"), "RootManageSharedAccessKey", ROOT_KEY, expiry);
    reqwest::Client::new()
        .request(method, format!("{}{path}", emulator.url()))
        .header("x-recording-upstream-base-uri", format!("https://{NS}.servicebus.windows.net"))
        .header("authorization", sas)
}

#[tokio::test]
async fn a_session_entity_refuses_a_message_without_session_id_with_the_services_sentence() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    assert_eq!(bus.send(NS, QUEUE, message(None, "m1")), Err(BusError::SessionIdRequired));

    let response = rest(&emulator, reqwest::Method::POST, "/orders/messages").body("hi").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.unwrap();
    assert!(body.contains("The SessionId was not set on a message, and it cannot be sent to the entity."), "{body}");

    let with_session = rest(&emulator, reqwest::Method::POST, "/orders/messages")
        .header("brokerproperties", json!({ "SessionId": "acct-1", "MessageId": "m2" }).to_string())
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(with_session.status(), StatusCode::CREATED);
    assert_eq!(bus.peek(NS, QUEUE, 0, 10).unwrap()[0].session_id.as_deref(), Some("acct-1"));

    // 128 characters at most, on every entity.
    let long = "a".repeat(129);
    assert!(matches!(bus.send(NS, "plain", message(Some(&long), "m3")), Err(BusError::BadRequest(_))));
    assert!(bus.send(NS, "plain", message(Some(&long[..128]), "m4")).is_ok());
}

#[tokio::test]
async fn rest_cannot_receive_from_a_session_entity_but_can_from_its_dead_letter_queue() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "acct-1", "m1");
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let response = rest(&emulator, method, "/orders/messages/head?timeout=0").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body = response.text().await.unwrap();
        assert!(body.contains("requires sessions to create a non-sessionful message receiver"), "{body}");
    }
    assert_eq!(bus.receive(NS, QUEUE, NOW).await, Err(BusError::SessionRequired));

    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("a session");
    let delivered = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().expect("a message");
    bus.dead_letter(NS, QUEUE, delivered.lock_token, "Bad", "bad message").unwrap();
    // The dead-letter queue has no sessions: a plain receiver gets the message, SessionId kept.
    let response = rest(&emulator, reqwest::Method::DELETE, "/orders/$DeadLetterQueue/messages/head?timeout=0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let broker: serde_json::Value =
        serde_json::from_str(response.headers()["brokerproperties"].to_str().unwrap()).unwrap();
    assert_eq!(broker["SessionId"], "acct-1");
    assert_eq!(bus.accept_next_session(NS, DLQ, NOW).await, Err(BusError::SessionsNotEnabled));
    assert_eq!(bus.accept_next_session(NS, "plain", NOW).await, Err(BusError::SessionsNotEnabled));
}

#[tokio::test]
async fn one_receiver_per_session_and_fifo_inside_it() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    for (session, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")] {
        send(bus, QUEUE, session, id);
    }
    let first = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("session a");
    let second = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("session b");
    assert_eq!((first.session_id.as_str(), second.session_id.as_str()), ("a", "b"));
    // Both sessions are held: nobody else gets either, although both have messages waiting.
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None);

    let mut order = Vec::new();
    while let Some(delivered) = bus.receive_from_session(NS, QUEUE, first.token, NOW).await.unwrap() {
        assert_eq!(delivered.message.session_id.as_deref(), Some("a"));
        assert_eq!(delivered.locked_until, first.locked_until, "a message lock is the session lock");
        order.push(delivered.message.message_id.clone().unwrap());
        bus.complete(NS, QUEUE, delivered.lock_token).unwrap();
    }
    assert_eq!(order, ["a1", "a2", "a3"]);

    // A receiver may have several in flight; they still come in order.
    let b1 = bus.receive_from_session(NS, QUEUE, second.token, NOW).await.unwrap().unwrap();
    let b2 = bus.receive_from_session(NS, QUEUE, second.token, NOW).await.unwrap().unwrap();
    assert_eq!((b1.message.message_id.as_deref(), b2.message.message_id.as_deref()), (Some("b1"), Some("b2")));

    // A message that arrives later for a held session goes to its holder only.
    send(bus, QUEUE, "a", "a4");
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None);
    let a4 = bus.receive_from_session(NS, QUEUE, first.token, NOW).await.unwrap().unwrap();
    assert_eq!(a4.message.message_id.as_deref(), Some("a4"));
}

#[tokio::test]
async fn a_receive_in_a_session_waits_for_the_next_message_of_that_session() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    let a1 = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    bus.complete(NS, QUEUE, a1.lock_token).unwrap();
    let waiting = bus.receive_from_session(NS, QUEUE, session.token, Duration::from_secs(30));
    let sender = async {
        tokio::task::yield_now().await;
        send(bus, QUEUE, "b", "b1");
        send(bus, QUEUE, "a", "a2");
    };
    let (received, ()) = tokio::join!(waiting, sender);
    assert_eq!(received.unwrap().unwrap().message.message_id.as_deref(), Some("a2"));
}

#[tokio::test]
async fn abandon_serves_the_same_message_again_with_delivery_count_plus_one() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    send(bus, QUEUE, "a", "a2");
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    for expected_count in 1..=3 {
        let delivered = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
        assert_eq!(delivered.message.message_id.as_deref(), Some("a1"));
        assert_eq!(delivered.message.delivery_count, expected_count);
        bus.abandon(NS, QUEUE, delivered.lock_token).unwrap();
    }
    // maxDeliveryCount 3 is spent: the third abandon dead-lettered it, and the session moves on to a2.
    let dead = bus.peek(NS, DLQ, 0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_letter_reason.as_deref(), Some(MAX_DELIVERY_REASON));
    assert_eq!(dead[0].session_id.as_deref(), Some("a"));
    let next = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    assert_eq!(next.message.message_id.as_deref(), Some("a2"));
}

#[tokio::test]
async fn an_expired_session_lock_frees_the_session_and_counts_a_delivery() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    let old = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    let delivered = bus.receive_from_session(NS, QUEUE, old.token, NOW).await.unwrap().unwrap();
    assert_eq!(delivered.message.delivery_count, 1);

    advance(&emulator, LOCK - Duration::from_secs(1));
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None, "still locked");
    advance(&emulator, Duration::from_secs(1));

    // The session and its unsettled message are available again; the old holder has lost everything.
    let new = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("the session is free");
    assert_eq!(new.session_id, "a");
    assert_eq!(bus.complete(NS, QUEUE, delivered.lock_token), Err(BusError::SessionLockLost));
    assert_eq!(bus.receive_from_session(NS, QUEUE, old.token, NOW).await, Err(BusError::SessionLockLost));
    assert_eq!(bus.renew_session_lock(NS, QUEUE, old.token), Err(BusError::SessionLockLost));
    let again = bus.receive_from_session(NS, QUEUE, new.token, NOW).await.unwrap().unwrap();
    assert_eq!((again.message.message_id.as_deref(), again.message.delivery_count), (Some("a1"), 2));
}

#[tokio::test]
async fn expiry_past_max_delivery_count_dead_letters() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    for _ in 0..3 {
        let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("session a");
        bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().expect("a1");
        advance(&emulator, LOCK);
    }
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None, "nothing left in the session");
    let dead = bus.peek(NS, DLQ, 0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].dead_letter_reason.as_deref(), Some(MAX_DELIVERY_REASON));
    // The dead-letter queue is not session-enabled: a plain receiver takes it.
    let taken = bus.receive(NS, DLQ, NOW).await.unwrap().expect("the dead letter");
    assert_eq!(taken.message.session_id.as_deref(), Some("a"));
}

#[tokio::test]
async fn closing_a_session_returns_its_messages_without_counting_a_delivery() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    let delivered = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    bus.release_session(NS, QUEUE, session.token).unwrap();
    assert_eq!(bus.complete(NS, QUEUE, delivered.lock_token), Err(BusError::SessionLockLost));
    assert_eq!(bus.release_session(NS, QUEUE, session.token), Err(BusError::SessionLockLost));

    let again = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("the session is free again");
    let redelivered = bus.receive_from_session(NS, QUEUE, again.token, NOW).await.unwrap().unwrap();
    assert_eq!(redelivered.message.delivery_count, 1, "closing is not an abandon");
}

#[tokio::test]
async fn renewing_the_session_lock_keeps_the_session_and_its_message_locks() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    send(bus, QUEUE, "a", "a1");
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    let delivered = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    // A message in a session has no lock of its own to renew.
    assert!(matches!(bus.renew_lock(NS, QUEUE, delivered.lock_token), Err(BusError::BadRequest(_))));
    for _ in 0..3 {
        advance(&emulator, LOCK - Duration::from_secs(5));
        let before = emulator.shared().clock.now();
        let until = bus.renew_session_lock(NS, QUEUE, session.token).unwrap();
        let after = emulator.shared().clock.now();
        assert!(before + time::Duration::seconds(30) <= until && until <= after + time::Duration::seconds(30));
    }
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None);
    bus.complete(NS, QUEUE, delivered.lock_token).unwrap();
    assert!(bus.peek(NS, QUEUE, 0, 10).unwrap().is_empty());
}

#[tokio::test]
async fn a_scheduled_message_joins_its_session_when_due_and_does_not_block_it_before() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    let mut later = message(Some("a"), "a-retry");
    later.scheduled_enqueue_time = Some(emulator.shared().clock.now() + time::Duration::minutes(5));
    bus.send(NS, QUEUE, later).unwrap();
    assert_eq!(bus.accept_next_session(NS, QUEUE, NOW).await.unwrap(), None, "nothing active yet");

    // Another message of the same session is served at once: the scheduled one is not in the way.
    send(bus, QUEUE, "a", "a-new");
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().unwrap();
    let new = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    assert_eq!(new.message.message_id.as_deref(), Some("a-new"));
    bus.complete(NS, QUEUE, new.lock_token).unwrap();
    assert_eq!(bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap(), None);
    bus.release_session(NS, QUEUE, session.token).unwrap();

    advance(&emulator, Duration::from_secs(5 * 60));
    let session = bus.accept_next_session(NS, QUEUE, NOW).await.unwrap().expect("due now");
    let retry = bus.receive_from_session(NS, QUEUE, session.token, NOW).await.unwrap().unwrap();
    assert_eq!(retry.message.message_id.as_deref(), Some("a-retry"));
}

#[tokio::test]
async fn a_session_subscription_dead_letters_a_message_without_session_id() {
    let emulator = start().await;
    let bus = &emulator.shared().bus;
    let subscription = "events/subscriptions/by-session";
    bus.send(NS, "events", message(None, "e1")).expect("topics take it; the subscription dead-letters it");
    bus.send(NS, "events", message(Some("s"), "e2")).unwrap();
    assert_eq!(bus.peek(NS, "events/subscriptions/all", 0, 10).unwrap().len(), 2);
    let dead = bus.peek(NS, &format!("{subscription}/$DeadLetterQueue"), 0, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id.as_deref(), Some("e1"));
    assert_eq!(dead[0].dead_letter_reason.as_deref(), Some("Session ID is null."));
    let session = bus.accept_next_session(NS, subscription, NOW).await.unwrap().expect("session s");
    let e2 = bus.receive_from_session(NS, subscription, session.token, NOW).await.unwrap().unwrap();
    assert_eq!(e2.message.message_id.as_deref(), Some("e2"));
}
