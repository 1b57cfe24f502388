//! One invocation over the custom-handler protocol: `POST /{FunctionName}` with the host's headers, and the host's
//! reading of the answer (reference §1.1, §2.1): non-2xx, a non-JSON content type, invalid JSON or members of the
//! wrong type fail; an empty or `null` 2xx body never completes, so the invocation runs into the function timeout.

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
    match read_answer(content_type.as_deref(), &text) {
        Ok(answer) => Outcome::Success(answer),
        Err(message) => Outcome::Failure(message),
    }
}

/// The host's `ReadAsAsync<HttpScriptInvocationResult>()` of a non-empty 2xx body: the JSON formatter only reads
/// `application/json` or `text/json`, and Json.NET must be able to fill `{IDictionary<string, object> Outputs;
/// IList<string> Logs; object ReturnValue}` (members matched case-insensitively, others ignored). Anything it
/// cannot deserialise fails the invocation (reference §2.1).
pub fn read_answer(content_type: Option<&str>, text: &str) -> Result<Json, String> {
    if !content_type.is_some_and(is_json_media_type) {
        return Err(format!(
            "Invalid HttpResponseMessage: no JSON formatter for content type {}",
            content_type.unwrap_or("(none: application/octet-stream)")
        ));
    }
    let parsed = match Json::parse(text) {
        Ok(parsed @ Json::Object(_)) => parsed,
        Ok(_) => return Err("Invalid HttpResponseMessage: the body is not a JSON object".into()),
        Err(e) => return Err(format!("Invalid HttpResponseMessage: {e}")),
    };
    match parsed.get_ignore_case("Outputs") {
        None | Some(Json::Null | Json::Object(_)) => {}
        Some(other) => {
            return Err(format!(
                "Invalid HttpResponseMessage: cannot deserialize {} into IDictionary<string, object>. Path 'Outputs'",
                other.kind()
            ));
        }
    }
    match parsed.get_ignore_case("Logs") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.iter().all(|i| matches!(i, Json::String(_) | Json::Null)) => {}
        Some(_) => return Err("Invalid HttpResponseMessage: Logs must be an array of strings".into()),
    }
    Ok(parsed)
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

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn well_formed_answers_are_read() {
        assert!(read_answer(JSON, "{}").is_ok());
        assert!(read_answer(Some("text/json"), r#"{"outputs":{"res":1},"logs":["a",null],"ReturnValue":[1]}"#).is_ok());
        assert!(read_answer(JSON, r#"{"Outputs":null,"Logs":null,"Unknown":5}"#).is_ok());
    }

    #[test]
    fn what_json_net_cannot_deserialise_fails() {
        for (content_type, body) in [
            (Some("text/plain"), "{}"),
            (None, "{}"),
            (JSON, "not json"),
            (JSON, "[]"),
            (JSON, r#"{"Outputs":[{"res":1}]}"#),
            (JSON, r#"{"Outputs":"res"}"#),
            (JSON, r#"{"outputs":5}"#),
            (JSON, r#"{"Logs":"one line"}"#),
            (JSON, r#"{"Logs":[{"line":1}]}"#),
        ] {
            assert!(read_answer(content_type, body).is_err(), "{content_type:?} {body}");
        }
    }
}
