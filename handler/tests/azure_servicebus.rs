//! The Service Bus REST client: send with broker and application properties, SAS signing, peek-lock and settlement.

mod azure_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use azure_support::{CountingToken, Recorded, Stub, transport};
use base64::Engine;
use cmk_handler::azure::servicebus::{OutgoingMessage, SasKey};
use cmk_handler::azure::{ServiceBusAuth, ServiceBusClient, TokenSource};
use cmk_handler::cloud::Cloud;
use cmk_handler::error::Error;
use hmac::Mac;

const NAMESPACE: &str = "myns.servicebus.windows.net";
const KEY: &str = "c2VjcmV0LWtleS1ub3QtYmFzZTY0LWRlY29kZWQ=";
const BIG_SEQUENCE: i64 = 56_294_995_342_131_201;

fn sas_client(stub: &Stub) -> ServiceBusClient {
    let auth =
        ServiceBusAuth::SharedAccessKey { key_name: "RootManageSharedAccessKey".to_owned(), key: SasKey::new(KEY) };
    ServiceBusClient::new(NAMESPACE, transport(&stub.url), auth, azure_support::fast_retry()).unwrap()
}

/// Verifies a SAS the way Service Bus does: HMAC-SHA256 over `{sr}\n{se}` with the key's text, for the expected resource.
fn assert_valid_sas(request: &Recorded, expected_resource: &str) {
    let header = request.header("authorization").expect("a SAS is sent");
    let fields = header.strip_prefix("SharedAccessSignature ").expect("SAS scheme");
    let parts: HashMap<&str, &str> = fields.split('&').filter_map(|p| p.split_once('=')).collect();
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned();
    assert_eq!(decode(parts["sr"]), expected_resource);
    assert_eq!(parts["skn"], "RootManageSharedAccessKey");
    let expiry: i64 = parts["se"].parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(expiry > now && expiry <= now + 3600, "expiry {expiry}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{}\n{}", parts["sr"], parts["se"]).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(decode(parts["sig"]), expected, "signature");
}

#[tokio::test]
async fn send_carries_broker_and_application_properties_with_a_valid_sas() {
    let stub = Stub::start(|_, _| (201, vec![], String::new())).await;
    let client = sas_client(&stub);
    let scheduled = time::macros::datetime!(2026-11-30 08:49:37 UTC);
    let message = OutgoingMessage {
        body: br#"{"hello":"world"}"#.to_vec(),
        content_type: Some("application/json".to_owned()),
        message_id: Some("msg-1".to_owned()),
        correlation_id: Some("corr-1".to_owned()),
        label: Some("onboarding".to_owned()),
        session_id: None,
        time_to_live: Some(Duration::from_secs(3600)),
        scheduled_enqueue_time: Some(scheduled),
        application_properties: BTreeMap::from([
            ("cmk-attempt".to_owned(), serde_json::json!(2)),
            ("cmk-dead-letter-reason".to_owned(), serde_json::json!("KeyNotFound")),
        ]),
    };

    client.send("onboarding", &message).await.unwrap();

    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/onboarding/messages"));
    assert_eq!(request.header("x-recording-upstream-base-uri"), Some("https://myns.servicebus.windows.net"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.body, message.body);
    let broker: serde_json::Value = serde_json::from_str(request.header("brokerproperties").unwrap()).unwrap();
    assert_eq!(
        broker,
        serde_json::json!({"MessageId": "msg-1", "CorrelationId": "corr-1", "Label": "onboarding", "TimeToLive": 3600.0,
                           "ScheduledEnqueueTimeUtc": "Mon, 30 Nov 2026 08:49:37 GMT"})
    );
    assert_eq!(request.header("cmk-attempt"), Some("2"));
    assert_eq!(request.header("cmk-dead-letter-reason"), Some("\"KeyNotFound\""));
    assert_valid_sas(request, "https://myns.servicebus.windows.net/onboarding/messages");
}

/// A batch send: one request, the REST API's JSON array with each message's body as text, its broker properties
/// (session, schedule) and its application properties; a body that is not UTF-8 is refused before anything is sent.
#[tokio::test]
async fn a_batch_is_one_request_with_each_message_s_properties() {
    let stub = Stub::start(|_, _| (201, vec![], String::new())).await;
    let client = sas_client(&stub);
    let message = |n: u32| OutgoingMessage {
        body: format!(r#"{{"n":{n}}}"#).into_bytes(),
        message_id: Some(format!("probe-{n}")),
        session_id: Some(format!("acct{n}")),
        scheduled_enqueue_time: (n > 0).then_some(time::macros::datetime!(2026-11-30 08:49:37 UTC)),
        application_properties: BTreeMap::from([("cmk-kind".to_owned(), serde_json::json!("probe"))]),
        ..OutgoingMessage::default()
    };
    client.send_batch("onboarding", &[message(0), message(1)]).await.unwrap();

    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/onboarding/messages"));
    assert_eq!(request.header("content-type"), Some("application/vnd.microsoft.servicebus.json"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([
            { "Body": "{\"n\":0}", "BrokerProperties": { "MessageId": "probe-0", "SessionId": "acct0" },
              "UserProperties": { "cmk-kind": "probe" } },
            { "Body": "{\"n\":1}",
              "BrokerProperties": { "MessageId": "probe-1", "SessionId": "acct1",
                                    "ScheduledEnqueueTimeUtc": "Mon, 30 Nov 2026 08:49:37 GMT" },
              "UserProperties": { "cmk-kind": "probe" } },
        ])
    );
    assert_valid_sas(request, "https://myns.servicebus.windows.net/onboarding/messages");

    let binary = OutgoingMessage { body: vec![0xff, 0xfe], ..OutgoingMessage::default() };
    assert!(client.send_batch("onboarding", &[binary]).await.is_err());
    assert_eq!(stub.requests().len(), 1, "nothing sent");
}

#[tokio::test]
async fn peek_lock_parses_64_bit_sequence_numbers_and_settles_through_the_lock_url() {
    let lock_path = format!("/onboarding/$DeadLetterQueue/messages/{BIG_SEQUENCE}/7da9cfd5-lock");
    let location = format!("https://{NAMESPACE}{lock_path}");
    let stub = Stub::start(move |request, _| {
        if request.path.ends_with("/messages/head") {
            let broker = serde_json::json!({
                "DeliveryCount": 3, "SequenceNumber": BIG_SEQUENCE, "EnqueuedSequenceNumber": BIG_SEQUENCE,
                "LockToken": "7da9cfd5-lock", "MessageId": "msg-1", "CorrelationId": "corr-1", "Label": "onboarding",
                "State": "Active", "TimeToLive": 922_337_203_685.477_6, "DeadLetterSource": "onboarding"
            });
            (
                201,
                vec![
                    ("brokerproperties", broker.to_string()),
                    ("location", location.clone()),
                    ("content-type", "application/json".to_owned()),
                    ("cmk-dead-letter-reason", "\"KeyNotFound\"".to_owned()),
                    ("cmk-attempt", "4".to_owned()),
                ],
                r#"{"hello":"world"}"#.to_owned(),
            )
        } else {
            (200, vec![], String::new())
        }
    })
    .await;
    let client = sas_client(&stub);

    let message =
        client.peek_lock("onboarding/$DeadLetterQueue", Duration::from_secs(5)).await.unwrap().expect("a message");
    client.renew_lock(&message).await.unwrap();
    client.abandon(&message).await.unwrap();
    client.complete(&message).await.unwrap();

    assert_eq!(message.broker_properties.sequence_number, Some(BIG_SEQUENCE));
    assert_eq!(message.broker_properties.enqueued_sequence_number, Some(BIG_SEQUENCE));
    assert_eq!(message.broker_properties.delivery_count, Some(3));
    assert_eq!(message.broker_properties.message_id.as_deref(), Some("msg-1"));
    assert_eq!(message.body, br#"{"hello":"world"}"#);
    assert_eq!(message.application_properties.get("cmk-dead-letter-reason"), Some(&serde_json::json!("KeyNotFound")));
    assert_eq!(message.application_properties.get("cmk-attempt"), Some(&serde_json::json!(4)));
    let requests = stub.requests();
    let calls: Vec<(String, String)> = requests.iter().map(|r| (r.method.to_string(), r.path.clone())).collect();
    assert_eq!(
        calls,
        vec![
            ("POST".to_owned(), "/onboarding/$DeadLetterQueue/messages/head".to_owned()),
            ("POST".to_owned(), lock_path.clone()),
            ("PUT".to_owned(), lock_path.clone()),
            ("DELETE".to_owned(), lock_path.clone()),
        ]
    );
    assert_eq!(requests[0].query.get("timeout").map(String::as_str), Some("5"));
    assert_valid_sas(&requests[0], "https://myns.servicebus.windows.net/onboarding/$DeadLetterQueue/messages/head");
    assert_valid_sas(&requests[3], &format!("https://myns.servicebus.windows.net{lock_path}"));
}

#[tokio::test]
async fn an_empty_entity_is_none_and_an_error_status_is_an_error() {
    let stub = Stub::start(|request, _| match request.path.as_str() {
        "/empty/messages/head" => (204, vec![], String::new()),
        _ => (401, vec![], "<Error><Code>401</Code><Detail>InvalidSignature</Detail></Error>".to_owned()),
    })
    .await;
    let client = sas_client(&stub);

    assert_eq!(client.peek_lock("empty", Duration::from_secs(1)).await.unwrap(), None);
    assert_eq!(client.receive_and_delete("empty", Duration::from_secs(1)).await.unwrap(), None);
    let error = client.peek_lock("forbidden", Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(&error, Error::Azure(e) if e.status == 401), "{error:?}");
    let error = client.send("forbidden", &OutgoingMessage::default()).await.unwrap_err();
    assert!(matches!(&error, Error::Azure(e) if e.status == 401), "{error:?}");
}

#[tokio::test]
async fn bearer_mode_sends_the_app_token() {
    let stub = Stub::start(|_, _| (201, vec![], String::new())).await;
    let transport = transport(&stub.url);
    let credential = Arc::new(CountingToken::default());
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, credential.clone(), None);
    let client =
        ServiceBusClient::new(NAMESPACE, transport, ServiceBusAuth::Bearer(tokens), azure_support::fast_retry())
            .unwrap();

    client.send("onboarding-events", &OutgoingMessage::default()).await.unwrap();

    assert_eq!(stub.requests()[0].header("authorization"), Some("Bearer static-token"));
    assert_eq!(credential.calls(), 1);
}
