//! Service Bus through its REST data plane: send, peek-lock, settle, redelivery, dead-lettering, scheduling,
//! duplicate detection, topic filters and authorisation, against a running emulator.

use std::collections::BTreeSet;
use std::time::Duration;

use azure_emulator::cloud::Cloud;
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::servicebus::{NewMessage, format_date, sas_token};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NS: &str = "cmk-ns";
const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const ROOT_KEY: &str = "cm9vdC1rZXktZm9yLXRlc3Rz";
/// The default `firstSequenceNumber`: (2 << 48) + 1, far above 2^31.
const FIRST_SEQUENCE: i64 = (2_i64 << 48) + 1;

struct Bus {
    emulator: Emulator,
    http: reqwest::Client,
}

impl Bus {
    async fn start() -> Self {
        let scenario: Scenario =
            serde_json::from_str(include_str!("data/servicebus/scenario.json")).expect("scenario parses");
        let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
        let emulator = Emulator::start(options).await.expect("emulator starts");
        Self { emulator, http: reqwest::Client::new() }
    }

    fn now_unix(&self) -> i64 {
        self.emulator.shared().clock.now().unix_timestamp()
    }

    fn sas(&self, key_name: &str, key: &str) -> String {
        sas_token(&format!("https://{NS}.servicebus.windows.net/"), key_name, key, self.now_unix() + 3600)
    }

    fn root(&self) -> String {
        self.sas("RootManageSharedAccessKey", ROOT_KEY)
    }

    fn advance(&self, by: Duration) {
        let shared = self.emulator.shared();
        shared.clock.advance(by);
        shared.bus.clock_advanced();
    }

    /// A request to `https://{ns}.servicebus.windows.net{path}` routed through the emulator.
    fn request(&self, method: reqwest::Method, ns: &str, path: &str, auth: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.emulator.url()))
            .header("x-recording-upstream-base-uri", format!("https://{ns}.servicebus.windows.net"))
            .header("authorization", auth)
    }

    async fn send(&self, entity: &str, body: &str, broker: Value, props: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .request(reqwest::Method::POST, NS, &format!("/{entity}/messages"), &self.root())
            .header("content-type", "application/json")
            .header("brokerproperties", broker.to_string())
            .body(body.to_owned());
        for (name, value) in props {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn send_ok(&self, entity: &str, body: &str, broker: Value, props: &[(&str, &str)]) {
        let response = self.send(entity, body, broker, props).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    }

    async fn peek_lock(&self, entity: &str, timeout: u64) -> reqwest::Response {
        self.request(reqwest::Method::POST, NS, &format!("/{entity}/messages/head?timeout={timeout}"), &self.root())
            .send()
            .await
            .unwrap()
    }

    /// Peek-locks and expects a message: its body, `BrokerProperties` and `Location`.
    async fn locked(&self, entity: &str) -> Received {
        let response = self.peek_lock(entity, 0).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        Received::from(response).await
    }

    async fn settle(&self, method: reqwest::Method, location: &str) -> StatusCode {
        let path =
            location.strip_prefix(&format!("https://{NS}.servicebus.windows.net")).expect("lock URL on the namespace");
        self.request(method, NS, path, &self.root()).send().await.unwrap().status()
    }

    /// Receive-and-delete until empty; the `MessageId`s.
    async fn drain(&self, entity: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        loop {
            let response = self
                .request(reqwest::Method::DELETE, NS, &format!("/{entity}/messages/head?timeout=0"), &self.root())
                .send()
                .await
                .unwrap();
            if response.status() == StatusCode::NO_CONTENT {
                return ids;
            }
            assert_eq!(response.status(), StatusCode::OK);
            ids.insert(Received::from(response).await.broker["MessageId"].as_str().unwrap().to_owned());
        }
    }
}

struct Received {
    headers: reqwest::header::HeaderMap,
    broker: Value,
    location: String,
    body: String,
}

impl Received {
    async fn from(response: reqwest::Response) -> Self {
        let headers = response.headers().clone();
        let broker = serde_json::from_str(headers["brokerproperties"].to_str().unwrap()).unwrap();
        let location = headers.get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        Self { headers, broker, location, body: response.text().await.unwrap() }
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

#[tokio::test]
async fn send_peek_lock_complete_with_64_bit_sequence_numbers() {
    let bus = Bus::start().await;
    bus.send_ok(
        "orders",
        r#"{"orderId":42}"#,
        json!({"MessageId": "order-42", "CorrelationId": "corr-1", "Label": "order-created", "TimeToLive": 3600.0}),
        &[("priority", "\"High\""), ("attempt", "3"), ("urgent", "true")],
    )
    .await;
    let received = bus.locked("orders").await;
    assert_eq!(received.body, r#"{"orderId":42}"#);
    assert_eq!(received.header("content-type"), "application/json");
    assert_eq!(received.broker["MessageId"], "order-42");
    assert_eq!(received.broker["CorrelationId"], "corr-1");
    assert_eq!(received.broker["Label"], "order-created");
    assert_eq!(received.broker["DeliveryCount"], 1);
    assert_eq!(received.broker["State"], "Active");
    assert_eq!(received.broker["TimeToLive"], 3600.0);
    assert_eq!(received.broker["SequenceNumber"].as_i64(), Some(FIRST_SEQUENCE));
    assert_eq!(received.broker["EnqueuedSequenceNumber"].as_i64(), Some(FIRST_SEQUENCE));
    assert!(received.broker["EnqueuedTimeUtc"].as_str().unwrap().ends_with(" GMT"));
    assert_eq!(received.header("priority"), "\"High\"");
    assert_eq!(received.header("attempt"), "3");
    assert_eq!(received.header("urgent"), "true");
    let token = received.broker["LockToken"].as_str().unwrap();
    assert_eq!(
        received.location,
        format!("https://{NS}.servicebus.windows.net/orders/messages/{FIRST_SEQUENCE}/{token}")
    );

    assert_eq!(
        bus.peek_lock("orders", 0).await.status(),
        StatusCode::NO_CONTENT,
        "a locked message is not redelivered"
    );
    assert_eq!(bus.settle(reqwest::Method::POST, &received.location).await, StatusCode::OK, "renew");
    assert_eq!(bus.settle(reqwest::Method::DELETE, &received.location).await, StatusCode::OK, "complete");
    assert_eq!(bus.settle(reqwest::Method::DELETE, &received.location).await, StatusCode::NOT_FOUND, "lock is gone");
    assert_eq!(bus.peek_lock("orders", 0).await.status(), StatusCode::NO_CONTENT);

    bus.send_ok("orders", "second", json!({"MessageId": "order-43"}), &[]).await;
    let second = bus.locked("orders").await;
    assert_eq!(second.broker["SequenceNumber"].as_i64(), Some(FIRST_SEQUENCE + 1));
}

#[tokio::test]
async fn lock_expiry_redelivers_with_the_next_delivery_count() {
    let bus = Bus::start().await;
    bus.send_ok("orders", "x", json!({"MessageId": "m1"}), &[]).await;
    let first = bus.locked("orders").await;
    assert_eq!(first.broker["DeliveryCount"], 1);
    bus.advance(Duration::from_secs(31));
    let second = bus.locked("orders").await;
    assert_eq!(second.broker["DeliveryCount"], 2);
    assert_ne!(first.broker["LockToken"], second.broker["LockToken"]);
    assert_eq!(bus.settle(reqwest::Method::DELETE, &first.location).await, StatusCode::NOT_FOUND, "expired lock");
    assert_eq!(bus.settle(reqwest::Method::DELETE, &second.location).await, StatusCode::OK);
}

#[tokio::test]
async fn abandoning_past_max_delivery_count_dead_letters_with_the_reason() {
    let bus = Bus::start().await;
    bus.send_ok("orders", "poison", json!({"MessageId": "poison-1"}), &[("cmk-attempt", "1")]).await;
    for delivery in 1..=3 {
        let received = bus.locked("orders").await;
        assert_eq!(received.broker["DeliveryCount"], delivery);
        assert_eq!(bus.settle(reqwest::Method::PUT, &received.location).await, StatusCode::OK, "unlock");
    }
    assert_eq!(bus.peek_lock("orders", 0).await.status(), StatusCode::NO_CONTENT);
    let dead = bus.locked("orders/$DeadLetterQueue").await;
    assert_eq!(dead.body, "poison");
    assert_eq!(dead.header("deadletterreason"), "\"MaxDeliveryCountExceeded\"");
    assert_eq!(
        dead.header("deadlettererrordescription"),
        "\"Message could not be consumed after 3 delivery attempts.\""
    );
    assert_eq!(dead.header("cmk-attempt"), "1");
    assert_eq!(dead.broker["DeadLetterSource"], "orders");
    assert!(dead.location.contains("/orders/$DeadLetterQueue/messages/"), "{}", dead.location);
    assert_eq!(bus.settle(reqwest::Method::DELETE, &dead.location).await, StatusCode::OK);
    assert_eq!(bus.peek_lock("orders/$DeadLetterQueue", 0).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn expired_messages_dead_letter_or_vanish() {
    let bus = Bus::start().await;
    bus.send_ok("orders", "short-lived", json!({"MessageId": "ttl-1", "TimeToLive": 5}), &[]).await;
    bus.send_ok("ttl-drop", "entity default ttl", json!({}), &[]).await;
    bus.advance(Duration::from_secs(61));
    assert_eq!(bus.peek_lock("orders", 0).await.status(), StatusCode::NO_CONTENT);
    let dead = bus.locked("orders/$DeadLetterQueue").await;
    assert_eq!(dead.broker["MessageId"], "ttl-1");
    assert_eq!(dead.header("deadletterreason"), "\"TTLExpiredException\"");
    assert_eq!(bus.peek_lock("ttl-drop", 0).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(bus.peek_lock("ttl-drop/$DeadLetterQueue", 0).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn scheduled_messages_wake_a_waiting_receiver_when_due() {
    let bus = Bus::start().await;
    let due = bus.emulator.shared().clock.now() + time::Duration::seconds(120);
    bus.send_ok("orders", "later", json!({"MessageId": "s1", "ScheduledEnqueueTimeUtc": format_date(due)}), &[]).await;
    assert_eq!(bus.peek_lock("orders", 0).await.status(), StatusCode::NO_CONTENT, "not before it is due");
    let peeked = bus.emulator.shared().bus.peek(NS, "orders", 0, 10).unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].sequence_number, FIRST_SEQUENCE, "numbered when scheduled");

    // Park a receiver first (one poll registers it), then jump the clock: it must wake without waiting out its timeout.
    let engine = &bus.emulator.shared().bus;
    let waiting = engine.receive(NS, "orders", Duration::from_secs(60));
    tokio::pin!(waiting);
    assert!(futures::poll!(&mut waiting).is_pending(), "nothing is due yet");
    bus.advance(Duration::from_secs(121));
    let delivered = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("woken by the clock").unwrap();
    let delivered = delivered.expect("the scheduled message");
    assert_eq!(delivered.message.enqueued_time, due.replace_nanosecond(0).unwrap(), "RFC 1123 carries whole seconds");
    engine.abandon(NS, "orders", delivered.lock_token).unwrap();

    let received = bus.locked("orders").await;
    assert_eq!(received.broker["EnqueuedTimeUtc"], format_date(due));
    assert_eq!(received.broker["ScheduledEnqueueTimeUtc"], format_date(due));
    assert_eq!(received.broker["SequenceNumber"].as_i64(), Some(FIRST_SEQUENCE));
    assert_eq!(received.broker["DeliveryCount"], 2);
}

#[tokio::test]
async fn a_waiting_receiver_wakes_when_a_message_arrives() {
    let bus = Bus::start().await;
    let engine = &bus.emulator.shared().bus;
    let started = std::time::Instant::now();
    let receive = engine.receive(NS, "events/subscriptions/all", Duration::from_secs(60));
    let send = async {
        tokio::task::yield_now().await;
        engine.send(NS, "events", NewMessage::new("hello")).unwrap()
    };
    let (delivered, sequence) = tokio::join!(receive, send);
    let delivered = delivered.unwrap().expect("a message");
    assert_eq!(Some(delivered.message.sequence_number), sequence);
    assert_eq!(delivered.message.body, b"hello");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn duplicates_within_the_window_are_accepted_and_dropped() {
    let bus = Bus::start().await;
    bus.send_ok("orders", "one", json!({"MessageId": "dup"}), &[]).await;
    bus.send_ok("orders", "two", json!({"MessageId": "dup"}), &[]).await;
    assert_eq!(bus.drain("orders").await, BTreeSet::from(["dup".to_owned()]));
    bus.advance(Duration::from_secs(11 * 60));
    bus.send_ok("orders", "three", json!({"MessageId": "dup"}), &[]).await;
    assert_eq!(bus.drain("orders").await.len(), 1, "accepted again after the window");
}

#[tokio::test]
async fn topic_rules_route_to_subscriptions() {
    let bus = Bus::start().await;
    bus.send_ok("events", "{}", json!({"MessageId": "eu"}), &[("region", "\"eu\"")]).await;
    bus.send_ok("events", "{}", json!({"MessageId": "eu-test"}), &[("region", "\"eu\""), ("test", "true")]).await;
    bus.send_ok("events", "{}", json!({"MessageId": "done", "Label": "completed"}), &[]).await;
    bus.send_ok("events", "{}", json!({"MessageId": "onboard", "Label": "onboarding"}), &[("region", "\"us\"")]).await;
    bus.send_ok("events", "{}", json!({"MessageId": "big"}), &[("amount", "250.5")]).await;
    bus.send_ok("events", "{}", json!({"MessageId": "gold"}), &[("tier", "\"gold\"")]).await;
    let set = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(bus.drain("events/subscriptions/all").await, set(&["eu", "eu-test", "done", "onboard", "big", "gold"]));
    assert_eq!(bus.drain("events/subscriptions/eu").await, set(&["eu"]));
    assert_eq!(bus.drain("events/subscriptions/completed").await, set(&["done"]));
    assert_eq!(bus.drain("events/subscriptions/mixed").await, set(&["onboard", "big", "gold"]));
}

#[tokio::test]
async fn batch_send_carries_broker_and_user_properties() {
    let bus = Bus::start().await;
    let batch = json!([
        {"Body": "first", "BrokerProperties": {"MessageId": "b1", "Label": "completed"}, "UserProperties": {"region": "eu"}},
        {"Body": "second", "BrokerProperties": {"MessageId": "b2"}, "UserProperties": {"amount": 500}}
    ]);
    let response = bus
        .request(reqwest::Method::POST, NS, "/events/messages", &bus.root())
        .header("content-type", "application/vnd.microsoft.servicebus.json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let set = |ids: &[&str]| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(bus.drain("events/subscriptions/eu").await, set(&["b1"]));
    assert_eq!(bus.drain("events/subscriptions/completed").await, set(&["b1"]));
    assert_eq!(bus.drain("events/subscriptions/mixed").await, set(&["b2"]));
}

#[tokio::test]
async fn sas_tokens_are_verified() {
    let bus = Bus::start().await;
    let send = |auth: String| {
        bus.request(reqwest::Method::POST, NS, "/orders/messages", &auth)
            .header("brokerproperties", "{}")
            .body("x")
            .send()
    };
    let status_and_body = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.text().await.unwrap())
    };
    assert_eq!(send(bus.root()).await.unwrap().status(), StatusCode::CREATED);

    let forged = bus.sas("RootManageSharedAccessKey", "not-the-key");
    let (status, body) = status_and_body(send(forged).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("<Error><Code>401</Code><Detail>InvalidSignature"), "{body}");

    let expired = sas_token(
        &format!("https://{NS}.servicebus.windows.net/"),
        "RootManageSharedAccessKey",
        ROOT_KEY,
        bus.now_unix() - 1,
    );
    let (status, body) = status_and_body(send(expired).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("ExpiredToken"), "{body}");

    let other_entity = sas_token(
        &format!("https://{NS}.servicebus.windows.net/ttl-drop"),
        "RootManageSharedAccessKey",
        ROOT_KEY,
        bus.now_unix() + 60,
    );
    assert_eq!(send(other_entity).await.unwrap().status(), StatusCode::UNAUTHORIZED, "sr must cover the resource");

    let sender = bus.sas("sender", "c2VuZC1vbmx5");
    assert_eq!(send(sender.clone()).await.unwrap().status(), StatusCode::CREATED);
    let receive =
        bus.request(reqwest::Method::POST, NS, "/orders/messages/head?timeout=0", &sender).send().await.unwrap();
    let (status, body) = status_and_body(receive).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("'Listen' claim(s) are required"), "{body}");
    let listener = bus.sas("listener", "bGlzdGVuLW9ubHk=");
    assert_eq!(send(listener).await.unwrap().status(), StatusCode::FORBIDDEN);

    let missing = bus.http.post(format!("{}/orders/messages", bus.emulator.url()));
    let missing = missing.header("x-recording-upstream-base-uri", format!("https://{NS}.servicebus.windows.net"));
    assert_eq!(missing.body("x").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let no_sas = sas_token(
        "https://no-sas.servicebus.windows.net/",
        "RootManageSharedAccessKey",
        "dW51c2Vk",
        bus.now_unix() + 60,
    );
    let refused = bus.request(reqwest::Method::POST, "no-sas", "/q/messages", &no_sas).body("x").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "local auth disabled");
}

#[tokio::test]
async fn bearer_tokens_need_the_audience_and_the_namespace_tenant() {
    let bus = Bus::start().await;
    let tokens = &bus.emulator.shared().tokens;
    let mint = |tenant: &str, audience: &str| {
        let subject =
            Subject { tenant_id: tenant, object_id: "app-object", client_id: "app-client", mi_resource_id: None };
        format!("Bearer {}", tokens.mint(Claims::issue(Cloud::Public, &subject, audience, tokens.now(), 3600)))
    };
    let send = |auth: String| bus.request(reqwest::Method::POST, NS, "/orders/messages", &auth).body("x").send();
    assert_eq!(
        send(mint(TENANT, "https://servicebus.azure.net/.default")).await.unwrap().status(),
        StatusCode::CREATED
    );
    let other_tenant = mint("22222222-2222-2222-2222-222222222222", "https://servicebus.azure.net");
    assert_eq!(send(other_tenant).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(mint(TENANT, "https://vault.azure.net")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send("Bearer not.a.token".into()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let bearer = mint(TENANT, "https://servicebus.azure.net");
    let sas_off = bus.request(reqwest::Method::POST, "no-sas", "/q/messages", &bearer).body("x").send().await.unwrap();
    assert_eq!(sas_off.status(), StatusCode::CREATED, "Entra auth works with local auth disabled");
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_service_status() {
    let bus = Bus::start().await;
    let big = "x".repeat(2048);
    assert_eq!(bus.send("small", &big, json!({}), &[]).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_broker = bus
        .request(reqwest::Method::POST, NS, "/orders/messages", &bus.root())
        .header("brokerproperties", "{\"TimeToLive\": \"soon\"}")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_broker.status(), StatusCode::BAD_REQUEST);
    let bad_lock = format!("https://{NS}.servicebus.windows.net/orders/messages/1/{}", uuid::Uuid::new_v4());
    assert_eq!(bus.settle(reqwest::Method::DELETE, &bad_lock).await, StatusCode::NOT_FOUND);
}

/// The REST reference lists 410 "Specified queue or topic does not exist" (send) and "Specified queue or
/// subscription does not exist" (peek-lock, receive-and-delete, unlock, renew, delete) for a missing entity.
#[tokio::test]
async fn a_missing_entity_is_gone_for_every_operation() {
    let bus = Bus::start().await;
    assert_eq!(bus.send("nope", "x", json!({}), &[]).await.status(), StatusCode::GONE, "send");
    assert_eq!(bus.peek_lock("events/subscriptions/nope", 0).await.status(), StatusCode::GONE, "peek-lock");
    let receive_and_delete =
        bus.request(reqwest::Method::DELETE, NS, "/nope/messages/head?timeout=0", &bus.root()).send().await.unwrap();
    assert_eq!(receive_and_delete.status(), StatusCode::GONE, "receive and delete");
    let lock = format!("https://{NS}.servicebus.windows.net/nope/messages/1/{}", uuid::Uuid::new_v4());
    for (method, operation) in
        [(reqwest::Method::DELETE, "delete"), (reqwest::Method::PUT, "unlock"), (reqwest::Method::POST, "renew")]
    {
        assert_eq!(bus.settle(method, &lock).await, StatusCode::GONE, "{operation}");
    }
}

/// The Send Message reference's example sends `Priority: High` and `Customer: 12345,ABC` unquoted; the receive
/// examples return them as JSON strings. Header names arrive lower-cased through hyper and are kept that way.
#[tokio::test]
async fn the_documentation_example_send_round_trips() {
    let bus = Bus::start().await;
    let sent = bus
        .request(reqwest::Method::POST, NS, "/orders/messages?timeout=60", &bus.root())
        .header("BrokerProperties", r#"{"Label":"M1","State":"Active","TimeToLive":10}"#)
        .header("Priority", "High")
        .header("Customer", "12345,ABC")
        .header("Content-Type", "application/atom+xml;type=entry;charset=utf-8")
        .body("This is a message.")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    let received = bus.locked("orders").await;
    assert_eq!(received.broker["Label"], "M1");
    assert_eq!(received.header("priority"), "\"High\"");
    assert_eq!(received.header("customer"), "\"12345,ABC\"");
    let stored = bus.emulator.shared().bus.peek(NS, "orders", 0, 1).unwrap();
    let names: Vec<&String> = stored[0].application_properties.keys().collect();
    assert_eq!(names, ["customer", "priority"], "stored under the names that reached the service");
}

/// Headers that are not Service Bus's own become properties, as in Azure: a `traceparent` on the HTTP request is
/// stored on the message (a client that sends one makes it every message's property).
#[tokio::test]
async fn request_headers_that_are_not_the_protocols_become_properties() {
    let bus = Bus::start().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    bus.send_ok("orders", "x", json!({}), &[("traceparent", traceparent), ("x-ms-client-request-id", "req-1")]).await;
    let received = bus.locked("orders").await;
    assert_eq!(received.header("traceparent"), format!("\"{traceparent}\""));
    assert_eq!(received.header("x-ms-client-request-id"), "\"req-1\"");
    let stored = bus.emulator.shared().bus.peek(NS, "orders", 0, 1).unwrap();
    assert_eq!(stored[0].application_properties.get("traceparent"), Some(&json!(traceparent)));
}

#[tokio::test]
async fn a_bad_filter_fails_the_scenario_load_with_the_rule_named() {
    let mut scenario: Value = serde_json::from_str(include_str!("data/servicebus/scenario.json")).unwrap();
    scenario["serviceBus"][0]["topics"][0]["subscriptions"][1]["rules"][0]["sqlFilter"] = json!("region = 'eu' AND");
    let scenario: Scenario = serde_json::from_value(scenario).unwrap();
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let error = Emulator::start(options).await.expect_err("the load fails").to_string();
    assert!(error.contains("subscription eu: rule eu-only: invalid SQL filter"), "{error}");
}
