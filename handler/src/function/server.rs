//! The HTTP surface the Functions host calls: readiness on `GET /`, one route per function.
//!
//! This layer only translates the host's protocol: it decodes the invocation, hands the message to the workflow and
//! turns the result into the answer the host expects. A 2xx JSON object means "complete the message"; anything else
//! makes Service Bus redeliver it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tracing::Instrument;

use super::invocation;
use crate::delivery::IncomingMessage;
use crate::workflow::{self, App, Settlement, settle};

/// Function names: the folder names under `function-definitions/`, which the host uses as the request path.
pub const PROCESS_ONBOARDING: &str = "ProcessOnboarding";
/// The trigger binding's `name` in `ProcessOnboarding/function.json`.
pub const TRIGGER_BINDING: &str = "onboardingMessage";
/// HTTP-triggered, admin-only: what blocks a message now (for `cmkctl dlq diagnose`).
pub const DIAGNOSE_ONBOARDING: &str = "DiagnoseOnboarding";

/// HTTP-triggered, function key: the current state of an account from Azure itself, for upstream systems.
pub const ONBOARDING_STATUS: &str = "OnboardingStatus";

/// Timer-triggered: the key watch's run (`WatchKeys/function.json`, schedule `%CMK_WATCH_SCHEDULE%`).
pub const WATCH_KEYS: &str = "WatchKeys";

/// Every function the handler serves: `function-definitions/` has exactly these folders (the infra test checks).
pub const FUNCTIONS: [&str; 4] = [PROCESS_ONBOARDING, DIAGNOSE_ONBOARDING, WATCH_KEYS, ONBOARDING_STATUS];

pub fn router(app: Arc<App>) -> Router {
    // The invocation carries the body base64-encoded (+33 %) or JSON-escaped twice (up to 6x for quote-heavy text),
    // plus metadata; allow that for the largest message we accept. Bigger messages are rejected by the workflow as a
    // permanent error, so they are dead-lettered with a reason instead of bouncing off a 413.
    let limit = app.max_message_bytes().saturating_mul(8).saturating_add(1 << 20);
    Router::new()
        .route("/", get(ready))
        .route(&format!("/{PROCESS_ONBOARDING}"), post(process_onboarding))
        .route(&format!("/{DIAGNOSE_ONBOARDING}"), post(diagnose_onboarding))
        .route(&format!("/{WATCH_KEYS}"), post(watch_keys))
        .route(&format!("/{ONBOARDING_STATUS}"), post(onboarding_status))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// The host polls this until it answers anything; it also pings it for health.
async fn ready() -> impl IntoResponse {
    axum::Json(json!({ "status": "ready" }))
}

async fn process_onboarding(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let invocation_id = headers.get("x-azure-functions-invocationid").and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = match invocation::decode(&body, TRIGGER_BINDING) {
        Ok(message) => message,
        Err(error) => {
            tracing::error!(invocation_id, %error, "undecodable invocation; asking the host to redeliver");
            return failure(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    let span = tracing::info_span!(
        "invocation",
        function = PROCESS_ONBOARDING,
        invocation_id,
        message_id = message.message_id.as_deref().unwrap_or(""),
        delivery_count = message.delivery_count,
        onboarding_id = tracing::field::Empty,
    );
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(crate::telemetry::parent_context(&message.application_properties));
    }
    handle(app, message).instrument(span).await
}

async fn handle(app: Arc<App>, message: IncomingMessage) -> Response {
    if let Some(reason) = dead_letter_mark(&message) {
        // A marked copy: fail it without any work so Service Bus moves it to the dead-letter queue after
        // MaxDeliveryCount instant redeliveries (ARCHITECTURE.md, decision 1).
        tracing::info!(reason, "dead-letter copy: failing fast");
        return failure(StatusCode::INTERNAL_SERVER_ERROR, &format!("dead-lettering: {reason}"));
    }
    // Boxed: the whole workflow future is too large to move around on a worker thread's stack (debug builds).
    match Box::pin(workflow::process(&app, &message)).await {
        Ok(Settlement::DeadLetteredNatively { onboarding_id, reason }) => {
            // Failing the delivery is the point: after MaxDeliveryCount redeliveries the original lands in the DLQ.
            tracing::warn!(onboarding_id, reason, "dead-lettering the message itself: failing the delivery");
            failure(StatusCode::INTERNAL_SERVER_ERROR, &format!("dead-lettering natively: {reason}"))
        }
        Ok(settlement) => {
            let log = match &settlement {
                Settlement::Completed { onboarding_id } => format!("onboarding {onboarding_id} completed"),
                Settlement::RetryScheduled { onboarding_id, at, reason } => {
                    format!("onboarding {onboarding_id}: {reason}; retry scheduled at {at}")
                }
                Settlement::Superseded { onboarding_id, by } => {
                    format!("onboarding {onboarding_id} superseded by {by}; nothing changed")
                }
                Settlement::DeadLettered { onboarding_id, reason }
                | Settlement::DeadLetteredNatively { onboarding_id, reason } => {
                    format!("onboarding {onboarding_id} failed permanently: {reason}; dead-lettered")
                }
            };
            (StatusCode::OK, axum::Json(invocation::response_body(&[log]))).into_response()
        }
        Err(error) => {
            tracing::error!(error = %error, "could not settle the message; asking the host to redeliver");
            failure(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string())
        }
    }
}

fn dead_letter_mark(message: &IncomingMessage) -> Option<&str> {
    message
        .application_properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(settle::DEAD_LETTER_REASON))
        .and_then(|(_, v)| v.as_str())
}

/// A non-2xx answer the host treats as a failed invocation (abandon, redeliver). Still a JSON object, so the host
/// logs something readable.
fn failure(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "Outputs": {}, "Logs": [], "ReturnValue": null, "error": message }))).into_response()
}

/// `POST /DiagnoseOnboarding`: the HTTP trigger's request body is the onboarding message to diagnose; the answer goes
/// out through the `res` binding as JSON. Read-only: nothing is created, patched or published.
async fn diagnose_onboarding(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let message = match invocation::http_request_body(&body, "req") {
        Ok(message) => message,
        Err(error) => return failure(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let diagnosis = workflow::diagnose(&app, &message).instrument(tracing::info_span!("diagnose")).await;
    http_output(200, &serde_json::to_value(&diagnosis).unwrap_or_default(), None)
}

/// The answer of an HTTP-triggered function: the response goes out through the `res` binding, a JSON body.
fn http_output(status: u16, body: &serde_json::Value, retry_after: Option<u64>) -> Response {
    let mut headers = json!({ "Content-Type": "application/json" });
    if let Some(seconds) = retry_after {
        headers["Retry-After"] = json!(seconds.to_string());
    }
    let answer = json!({
        "Outputs": { "res": { "statusCode": status, "headers": headers, "body": body.to_string() } },
        "Logs": [],
        "ReturnValue": null,
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `POST /OnboardingStatus` (`GET /api/status?storageAccountId=…[&onboardingId=…]` at the host, function key): the
/// account's state from Azure, or an error status (`workflow::status::failure`). The query may hold the function
/// key (`code`), so neither it nor the URL is logged.
async fn onboarding_status(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let invocation_id = headers.get("x-azure-functions-invocationid").and_then(|v| v.to_str().ok()).unwrap_or("");
    let parameters = match invocation::http_request_query(&body, "req") {
        Ok(parameters) => parameters,
        Err(error) => return failure(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let span = tracing::info_span!("invocation", function = ONBOARDING_STATUS, invocation_id);
    let result = match crate::contract::parse_status_query(&parameters, &app.policy.allowed_scopes) {
        Ok(query) => workflow::status::account_status(&app, &query).instrument(span.clone()).await,
        Err(invalid) => Err(crate::error::Error::Invalid(invalid)),
    };
    let (status, body, retry_after) = match result {
        Ok(report) => (200, serde_json::to_value(&report).unwrap_or_default(), None),
        Err(error) => workflow::status::failure(&error),
    };
    span.in_scope(|| tracing::info!(status, "status answered"));
    http_output(status, &body, retry_after)
}

/// `POST /WatchKeys`: the host's invocation id names the run; the payload gives the run's time and the next
/// occurrence (`invocation::timer_run`), which the probes are spread by. A failed run answers 500 (the host logs
/// it); the next occurrence runs again.
async fn watch_keys(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let invocation_id = headers.get("x-azure-functions-invocationid").and_then(|v| v.to_str().ok()).unwrap_or("");
    // Without an invocation id (not the host calling) every run is its own.
    let run_id = if invocation_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { invocation_id.to_owned() };
    let span = tracing::info_span!("invocation", function = WATCH_KEYS, invocation_id);
    let timer = invocation::timer_run(&body);
    let run = workflow::watch_keys(&app, &run_id, timer).instrument(span).await;
    match run {
        Ok(summary) => {
            tracing::info!(?summary, "key watch run done");
            let log = format!(
                "key watch: {} accounts listed, {} probes sent, {} skipped, spread over {} s",
                summary.listed,
                summary.probes_sent,
                summary.skipped,
                summary.spread.as_secs()
            );
            (StatusCode::OK, axum::Json(invocation::response_body(&[log]))).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "key watch run failed");
            failure(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string())
        }
    }
}
