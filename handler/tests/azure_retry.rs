//! The bounded send loop against stub servers: Retry-After (of any size), server errors, dropped connections, the
//! time budget, the invocation's deadline (calls, polls and token fetches), and the response size cap.

mod azure_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_support::{CountingToken, Reply, Stub, json, transport};
use cmk_handler::azure::{ArmClient, RetryOptions, TokenSource, deadline};
use cmk_handler::cloud::Cloud;
use cmk_handler::error::{AzureService, Error, TransportErrorKind};
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

/// A hostile `Retry-After` (the largest integer, 10^12 seconds, or an HTTP date in year 9999) neither overflows nor
/// stalls: the wait cannot fit in the budget, so the error comes back at once with the wait it asked for.
#[tokio::test]
async fn a_huge_retry_after_neither_overflows_nor_stalls() {
    for retry_after in ["18446744073709551615", "1000000000000", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        let stub = Stub::start(move |_, _| {
            (429, vec![("retry-after", retry_after.to_owned())], r#"{"error":{"code":"TooManyRequests"}}"#.to_owned())
        })
        .await;
        let (arm, _) = arm(&stub.url, azure_support::fast_retry());

        let outcome = tokio::time::timeout(Duration::from_secs(30), arm.get_storage_account(ACCOUNT)).await;

        let error = azure_error(outcome.expect("returned, not stalled").unwrap_err());
        assert_eq!(error.status, 429, "{retry_after}");
        assert!(error.retry_after.unwrap() > Duration::from_secs(1_000_000), "{retry_after}: {:?}", error.retry_after);
        assert_eq!(stub.requests().len(), 1, "{retry_after}: no retry within the budget");
    }
}

/// The same for an asynchronous PATCH whose operation says to come back in 10^12 seconds.
#[tokio::test]
async fn a_long_running_operation_with_a_huge_retry_after_gives_up_at_once() {
    let stub = Stub::start(|request, _| match request.method.as_str() {
        "PATCH" => (
            202,
            vec![
                ("location", "https://management.azure.com/operations/op1?api-version=2023-05-01".to_owned()),
                ("retry-after", "1000000000000".to_owned()),
            ],
            String::new(),
        ),
        _ => (202, vec![("retry-after", "1000000000000".to_owned())], String::new()),
    })
    .await;
    let (arm, _) = arm(&stub.url, azure_support::fast_retry());

    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        arm.update_storage_account(ACCOUNT, &serde_json::json!({"properties": {}})),
    )
    .await;

    let error = outcome.expect("returned, not stalled").unwrap_err();
    assert!(matches!(&error, Error::Pending { code: "OperationStillRunning", .. }), "{error:?}");
    assert_eq!(error.disposition(), cmk_handler::error::Disposition::Transient);
    assert_eq!(stub.requests().len(), 1, "no poll could fit");
}

/// A server that accepts connections and never answers.
async fn silent_server() -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket);
        }
    });
    url
}

/// Under an invocation's deadline, a call that gets no answer ends when the deadline does, not after the client's
/// HTTP timeout (5 s here) or the call's retry budget (10 s), and is not retried.
#[tokio::test]
async fn the_invocation_deadline_bounds_a_call_that_gets_no_answer() {
    let proxy = silent_server().await;
    let (arm, _) = arm(&proxy, azure_support::fast_retry());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);

    let outcome =
        tokio::time::timeout(Duration::from_secs(4), deadline::within(deadline, arm.get_storage_account(ACCOUNT)))
            .await;

    let error = outcome.expect("ended with the deadline").unwrap_err();
    assert!(matches!(&error, Error::Transport(e) if e.kind == TransportErrorKind::OutOfTime), "{error:?}");
    assert_eq!(error.reason_code(), "InvocationTimeUp");
    // The log says what cut the request short, not reqwest's words for a timeout.
    let text = error.to_string();
    assert!(text.contains("the invocation ran out of time") && !text.contains("timed out"), "{text}");
}

/// A credential that never answers.
#[derive(Debug)]
struct SilentCredential;

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for SilentCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        std::future::pending().await
    }
}

/// Token fetches are bounded by the same deadline.
#[tokio::test]
async fn the_invocation_deadline_bounds_a_token_fetch() {
    let stub = Stub::start(|_, _| account()).await;
    let transport = transport(&stub.url);
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, Arc::new(SilentCredential), None);
    let arm = ArmClient::new(&Cloud::Public.arm_endpoint(), transport, tokens, azure_support::fast_retry()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);

    let outcome =
        tokio::time::timeout(Duration::from_secs(4), deadline::within(deadline, arm.get_storage_account(ACCOUNT)))
            .await;

    let error = outcome.expect("ended with the deadline").unwrap_err();
    assert!(matches!(&error, Error::Transport(e) if e.kind == TransportErrorKind::OutOfTime), "{error:?}");
    assert!(stub.requests().is_empty(), "nothing was sent without a token");
}

/// Response bodies are read up to a cap: past it the call fails with a clear transport error instead of buffering
/// whatever a broken or hostile endpoint sends.
#[tokio::test]
async fn response_bodies_are_capped() {
    let huge = format!(r#"{{"id":"{ACCOUNT}","pad":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let stub =
        Stub::start(move |_, _| (200, vec![("content-type", "application/json".to_owned())], huge.clone())).await;
    let (arm, _) = arm(&stub.url, azure_support::fast_retry());

    let error = arm.get_storage_account(ACCOUNT).await.unwrap_err();

    assert!(matches!(&error, Error::Transport(e) if e.kind == TransportErrorKind::BadResponse), "{error:?}");
    assert!(error.to_string().contains("4194304-byte limit"), "{error}");
    assert_eq!(stub.requests().len(), 1, "not retried");
}
