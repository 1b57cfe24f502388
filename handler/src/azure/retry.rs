//! The bounded send loop every client uses: retry what Azure documents as transient, within the deadline.
//!
//! The deadline is the invocation's ([`super::deadline`]) when one is in scope, shortened to the call's own budget.
//! The loop never sleeps past it: when the next wait would end after it (a `Retry-After` of any size included), the
//! last error is returned at once and the workflow schedules a delayed retry of the whole message instead. A fresh
//! authorization is requested for every attempt (credentials cache tokens, so this costs nothing in steady state and
//! survives token expiry).

use std::time::Duration;

use tokio::time::Instant;

use super::deadline;
use super::pacing::{Lane, Pacer};

use super::retry_after::retry_after;
use super::transport::{AuthorizationValue, HttpResponse, OutgoingRequest, Transport};
use crate::error::classify::parse_error_body;
use crate::error::{AzureError, AzureService, Error, TransportErrorKind};

/// Retry policy of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Backoff before the second attempt; doubles per attempt.
    pub base_delay: Duration,
    /// Cap of the exponential backoff (a longer `Retry-After` still wins).
    pub max_delay: Duration,
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Total time one call may spend, waits included; the invocation's deadline, when one is in scope, can only
    /// shorten it.
    pub budget: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_attempts: 5,
            budget: Duration::from_secs(60),
        }
    }
}

/// Produces the `Authorization` header value of one attempt (a bearer token, a SAS, or none).
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorization(&self, url: &url::Url) -> Result<Option<AuthorizationValue>, Error>;
}

/// For endpoints that take no `Authorization` header.
#[derive(Debug, Clone, Copy)]
pub struct Anonymous;

#[async_trait::async_trait]
impl Authorizer for Anonymous {
    async fn authorization(&self, _url: &url::Url) -> Result<Option<AuthorizationValue>, Error> {
        Ok(None)
    }
}

/// Sends `request` until it succeeds (2xx), fails permanently, or the attempts or the deadline run out; returns the
/// last error. Non-2xx responses become [`Error::Azure`].
pub async fn send(
    transport: &Transport,
    options: &RetryOptions,
    service: AzureService,
    operation: &'static str,
    request: &OutgoingRequest,
    authorizer: &dyn Authorizer,
) -> Result<HttpResponse, Error> {
    send_expecting(transport, options, service, operation, request, authorizer, |status| (200..300).contains(&status))
        .await
}

/// [`send`], for a request whose expected answer is not a 2xx (an unauthenticated Key Vault probe expects its 401
/// challenge): responses whose status `expected` accepts are returned as they are.
pub async fn send_expecting(
    transport: &Transport,
    options: &RetryOptions,
    service: AzureService,
    operation: &'static str,
    request: &OutgoingRequest,
    authorizer: &dyn Authorizer,
    expected: fn(u16) -> bool,
) -> Result<HttpResponse, Error> {
    send_with(transport, options, service, operation, request, authorizer, expected, None).await
}

/// [`send`], each attempt taking its turn in the request's lane of `pacer` and teaching the pacer what the response
/// says about the limits ([`super::pacing`]).
pub async fn send_paced(
    transport: &Transport,
    options: &RetryOptions,
    service: AzureService,
    operation: &'static str,
    request: &OutgoingRequest,
    authorizer: &dyn Authorizer,
    pacer: &Pacer,
) -> Result<HttpResponse, Error> {
    let expected = |status| (200..300).contains(&status);
    let paced = Lane::of(&request.method, &request.url).map(|lane| (pacer, lane));
    send_with(transport, options, service, operation, request, authorizer, expected, paced).await
}

#[allow(clippy::too_many_arguments)]
async fn send_with(
    transport: &Transport,
    options: &RetryOptions,
    service: AzureService,
    operation: &'static str,
    request: &OutgoingRequest,
    authorizer: &dyn Authorizer,
    expected: fn(u16) -> bool,
    paced: Option<(&Pacer, Lane)>,
) -> Result<HttpResponse, Error> {
    // The allow-list comes before any token is requested.
    transport.ensure_allowed(&request.url)?;
    let attempts = async {
        let mut attempt: u32 = 1;
        loop {
            let once = attempt_once(transport, service, operation, request, authorizer, expected, paced.as_ref());
            let error = match once.await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            if !is_retryable(&error) || attempt >= options.max_attempts.max(1) {
                return Err(error);
            }
            let wait = next_wait(options, attempt, error.retry_after());
            tracing::debug!(%service, operation, attempt, ?wait, error = %error, "retrying");
            if !deadline::sleep(wait).await {
                tracing::debug!(%service, operation, attempt, ?wait, "no time left to wait for another attempt");
                return Err(error);
            }
            attempt += 1;
        }
    };
    match Instant::now().checked_add(options.budget) {
        Some(budget_end) => deadline::within(budget_end, attempts).await,
        None => attempts.await,
    }
}

async fn attempt_once(
    transport: &Transport,
    service: AzureService,
    operation: &'static str,
    request: &OutgoingRequest,
    authorizer: &dyn Authorizer,
    expected: fn(u16) -> bool,
    paced: Option<&(&Pacer, Lane)>,
) -> Result<HttpResponse, Error> {
    // The turn is taken after the token: a token fetch is no ARM request, and waiting for one must not hold the lane.
    let authorization = authorizer.authorization(&request.url).await?;
    let turn = match paced {
        Some((pacer, lane)) => Some(pacer.take_turn(lane).await?),
        None => None,
    };
    let response = transport.execute(service, operation, request, authorization.as_ref()).await?;
    let wait = retry_after(&response.headers);
    if let (Some((pacer, lane)), Some(turn)) = (paced, turn) {
        pacer.observe(lane, turn, response.status, &response.headers, wait);
    }
    if expected(response.status) {
        return Ok(response);
    }
    Err(Error::Azure(parse_error_body(service, operation, response.status, wait, &response.body)))
}

/// Transient by the HTTP contract, not by business meaning: throttling, gateway and server errors, timeouts, dropped
/// connections, and ARM's "another operation is in progress" conflicts. A name that does not resolve, a response that
/// is not what the API documents, and a deadline that passed are not retried in the invocation.
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Azure(e) => is_retryable_status(e),
        Error::Transport(e) => {
            matches!(e.kind, TransportErrorKind::Connect | TransportErrorKind::Reset | TransportErrorKind::Timeout)
        }
        _ => false,
    }
}

fn is_retryable_status(e: &AzureError) -> bool {
    match e.status {
        408 | 429 | 500 | 502 | 503 | 504 => true,
        409 => {
            e.service == AzureService::Arm
                && matches!(e.code.as_deref(), Some("StorageAccountOperationInProgress" | "AnotherOperationInProgress"))
        }
        _ => false,
    }
}

/// `max(Retry-After, exponential backoff with full jitter)`; the jitter keeps parallel invocations apart.
fn next_wait(options: &RetryOptions, failed_attempts: u32, requested: Option<Duration>) -> Duration {
    crate::decide::in_invocation_backoff(
        failed_attempts,
        options.base_delay,
        options.max_delay,
        requested,
        fastrand::f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_yields_to_retry_after() {
        let options = RetryOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_attempts: 10,
            budget: Duration::from_secs(60),
        };
        for _ in 0..100 {
            assert!(next_wait(&options, 1, None) <= Duration::from_millis(100));
            assert!(next_wait(&options, 9, None) <= Duration::from_millis(1000));
        }
        assert_eq!(next_wait(&options, 1, Some(Duration::from_secs(5))), Duration::from_secs(5));
    }

    #[test]
    fn arm_conflicts_are_retryable_only_when_an_operation_is_in_progress() {
        let conflict = |service, code: &str| {
            Error::Azure(AzureError {
                service,
                operation: "x",
                status: 409,
                code: Some(code.to_owned()),
                inner_code: None,
                message: String::new(),
                retry_after: None,
            })
        };
        assert!(is_retryable(&conflict(AzureService::Arm, "StorageAccountOperationInProgress")));
        assert!(is_retryable(&conflict(AzureService::Arm, "AnotherOperationInProgress")));
        assert!(!is_retryable(&conflict(AzureService::Arm, "Conflict")));
        assert!(!is_retryable(&conflict(AzureService::KeyVault, "AnotherOperationInProgress")));
    }
}
