//! One invocation over the custom-handler protocol: `POST /{FunctionName}` with the host's headers, and the host's
//! reading of the answer (reference §1.1, §2.1): non-2xx, a non-JSON content type or invalid JSON fail; an empty or
//! `null` 2xx body never completes, so the invocation runs into the function timeout.

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::json::Json;
use super::process::Worker;

/// `X-Azure-Functions-HostVersion` and the `User-Agent` version.
pub const HOST_VERSION: &str = "4.1037.0.0";

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// 2xx with a JSON object: `{"Outputs":…,"Logs":…,"ReturnValue":…}` (keys matched case-insensitively).
    Success(Json),
    Failure(String),
    /// `functionTimeout` passed; the caller restarts the handler.
    TimedOut,
}

/// Sends one invocation and classifies the answer.
pub async fn invoke(
    client: &reqwest::Client,
    worker: &Worker,
    hold: Duration,
    function_name: &str,
    invocation_id: Uuid,
    body: String,
    timeout: Option<Duration>,
) -> Outcome {
    // Effectively unbounded when `functionTimeout` is -1.
    let deadline = Instant::now() + timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let port = match worker.wait_ready(hold).await {
        Ok(port) => port,
        Err(message) => return Outcome::Failure(message),
    };
    let request = client
        .post(format!("http://127.0.0.1:{port}/{function_name}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Azure-Functions-InvocationId", invocation_id.to_string())
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .body(body);
    let exchange = async {
        let response = request.send().await.map_err(|e| format!("request to the handler failed: {e}"))?;
        let status = response.status();
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| format!("reading the handler's response failed: {e}"))?;
        Ok::<_, String>((status, content_type, bytes))
    };
    let (status, content_type, bytes) = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => return Outcome::TimedOut,
        Ok(Err(message)) => return Outcome::Failure(message),
        Ok(Ok(answer)) => answer,
    };
    if !status.is_success() {
        return Outcome::Failure(format!("Response status code does not indicate success: {status}"));
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() || text.trim() == "null" {
        // The formatter yields null, `SetResult` is never called, and only the function timeout ends the wait.
        tracing::warn!(function_name, %invocation_id, "the handler answered 2xx with an empty or null body; the invocation hangs until the function timeout");
        tokio::time::sleep_until(deadline).await;
        return Outcome::TimedOut;
    }
    if !content_type.as_deref().is_some_and(is_json_media_type) {
        return Outcome::Failure(format!(
            "Invalid HttpResponseMessage: no JSON formatter for content type {}",
            content_type.as_deref().unwrap_or("(none: application/octet-stream)")
        ));
    }
    let parsed = match Json::parse(&text) {
        Ok(parsed @ Json::Object(_)) => parsed,
        Ok(_) => return Outcome::Failure("Invalid HttpResponseMessage: the body is not a JSON object".into()),
        Err(e) => return Outcome::Failure(format!("Invalid HttpResponseMessage: {e}")),
    };
    match parsed.get_ignore_case("Logs") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.iter().all(|i| matches!(i, Json::String(_) | Json::Null)) => {}
        Some(_) => return Outcome::Failure("Invalid HttpResponseMessage: Logs must be an array of strings".into()),
    }
    Outcome::Success(parsed)
}

/// What `JsonMediaTypeFormatter` reads.
fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/json")
}

/// `Logs` entries of a successful answer.
pub fn logs(answer: &Json) -> Vec<String> {
    match answer.get_ignore_case("Logs") {
        Some(Json::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// The value for one output binding: `Outputs[name]` (ordinal), or `ReturnValue` for `$return`.
pub fn output_value<'a>(answer: &'a Json, binding: &str) -> Option<&'a Json> {
    if binding == "$return" {
        return answer.get_ignore_case("ReturnValue");
    }
    answer.get_ignore_case("Outputs").and_then(|outputs| outputs.get(binding))
}
