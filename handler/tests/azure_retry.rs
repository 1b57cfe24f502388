//! The bounded send loop against stub servers: Retry-After, server errors, dropped connections, the time budget.

mod azure_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_support::{CountingToken, Reply, Stub, json, transport};
use cmk_handler::azure::{ArmClient, RetryOptions, TokenSource};
use cmk_handler::cloud::Cloud;
use cmk_handler::error::{AzureService, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";

fn arm(proxy: &url::Url, retry: RetryOptions) -> (ArmClient, Arc<CountingToken>) {
    let credential = Arc::new(CountingToken::default());
    let transport = transport(proxy);
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, credential.clone(), None);
    (ArmClient::new(&Cloud::Public.arm_endpoint(), transport, tokens, retry).unwrap(), credential)
}

fn account() -> Reply {
    json(200, serde_json::json!({"id": ACCOUNT}))
}

fn azure_error(error: Error) -> cmk_handler::error::AzureError {
    match error {
        Error::Azure(e) => e,
        other => panic!("expected an Azure error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_429_is_retried_no_earlier_than_its_retry_after() {
    let stub = Stub::start(|_, index| match index {
        0 => (
            429,
            vec![("retry-after", "1".to_owned())],
            r#"{"error":{"code":"TooManyRequests","message":"slow"}}"#.to_owned(),
        ),
        _ => account(),
    })
    .await;
    let (arm, credential) = arm(&stub.url, azure_support::fast_retry());

    arm.get_storage_account(ACCOUNT).await.unwrap();

    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(credential.calls(), 2, "a token is asked for per attempt (the credential caches)");
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let stub = Stub::start(|_, index| match index {
        0 => (503, vec![], String::new()),
        1 => (500, vec![], r#"{"error":{"code":"InternalServerError","message":"oops"}}"#.to_owned()),
        _ => account(),
    })
    .await;
    let (arm, _) = arm(&stub.url, azure_support::fast_retry());

    arm.get_storage_account(ACCOUNT).await.unwrap();

    assert_eq!(stub.requests().len(), 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let stub =
        Stub::start(|_, _| json(403, serde_json::json!({"error": {"code": "AuthorizationFailed", "message": "no"}})))
            .await;
    let (arm, _) = arm(&stub.url, azure_support::fast_retry());

    let error = azure_error(arm.get_storage_account(ACCOUNT).await.unwrap_err());

    assert_eq!(
        (error.service, error.status, error.code.as_deref()),
        (AzureService::Arm, 403, Some("AuthorizationFailed"))
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    // A raw server: the first connection is closed right after the request arrives, the next ones get a 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let _ = socket.read(&mut buffer).await;
                if n == 0 {
                    return; // dropping the socket resets the exchange mid-request
                }
                let body = format!(r#"{{"id":"{ACCOUNT}"}}"#);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    let (arm, _) = arm(&proxy, azure_support::fast_retry());

    let account = arm.get_storage_account(ACCOUNT).await.unwrap();

    assert_eq!(account.id(), ACCOUNT);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_wait_beyond_the_budget_returns_the_last_error_at_once() {
    let stub = Stub::start(|_, _| {
        (503, vec![("retry-after", "30".to_owned())], r#"{"error":{"code":"ServerBusy","message":"busy"}}"#.to_owned())
    })
    .await;
    let retry = RetryOptions { budget: Duration::from_secs(5), ..azure_support::fast_retry() };
    let (arm, _) = arm(&stub.url, retry);

    let started = Instant::now();
    let error = azure_error(arm.get_storage_account(ACCOUNT).await.unwrap_err());

    assert!(started.elapsed() < Duration::from_secs(2), "slept {:?}", started.elapsed());
    assert_eq!((error.status, error.code.as_deref()), (503, Some("ServerBusy")));
    assert_eq!(error.retry_after, Some(Duration::from_secs(30)), "the workflow schedules the delayed retry from this");
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn backoff_never_sleeps_past_the_budget_and_returns_the_last_error() {
    let stub =
        Stub::start(|_, index| (500, vec![], format!(r#"{{"error":{{"code":"Attempt{index}","message":"down"}}}}"#)))
            .await;
    let retry = RetryOptions {
        base_delay: Duration::from_millis(300),
        max_delay: Duration::from_millis(300),
        max_attempts: 50,
        budget: Duration::from_secs(1),
    };
    let (arm, _) = arm(&stub.url, retry);

    let started = Instant::now();
    let error = azure_error(arm.get_storage_account(ACCOUNT).await.unwrap_err());
    let elapsed = started.elapsed();

    let attempts = stub.requests().len();
    assert!(elapsed <= Duration::from_millis(1200), "took {elapsed:?}");
    assert!(attempts >= 2, "{attempts} attempts: the loop retried within the budget");
    assert_eq!(error.code, Some(format!("Attempt{}", attempts - 1)), "the last error is returned");
}

#[tokio::test]
async fn no_sleep_follows_the_last_attempt() {
    let stub = Stub::start(|_, _| (503, vec![("retry-after", "3".to_owned())], String::new())).await;
    let retry = RetryOptions { max_attempts: 1, ..azure_support::fast_retry() };
    let (arm, _) = arm(&stub.url, retry);

    let started = Instant::now();
    let error = azure_error(arm.get_storage_account(ACCOUNT).await.unwrap_err());

    assert_eq!(error.status, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "slept {:?}", started.elapsed());
}
