//! `dlq diagnose`: what blocks each selected dead letter now, from the app's admin-only `DiagnoseOnboarding` function
//! (validation plus the read-only customer preflight, which needs the CMK identity only the app can use).

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::cli::{ConnectionArgs, DiagnoseArgs, OutputFormat};
use crate::connect::Connection;
use crate::dead_letter::{DeadLetter, Filter};
use crate::exit::Exit;
use crate::output::{clip, or_dash, print};
use crate::selection::{self, Bounds};

/// Diagnoses in flight at once: each one costs the app a preflight against the customer's tenant.
const CONCURRENCY: usize = 4;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Diagnosed {
    sequence_number: i64,
    onboarding_id: Option<String>,
    dead_letter_reason: String,
    ready: bool,
    /// The first failing check, `step: reasonCode`.
    blocked_by: Option<String>,
    diagnosis: Value,
}

pub async fn diagnose(
    connection: &Connection,
    args: &ConnectionArgs,
    diagnose: &DiagnoseArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let base = diagnose
        .function_app
        .clone()
        .or_else(|| args.emulator.clone())
        .ok_or("no Function App: pass --function-app https://APP.azurewebsites.net (or CMK_FUNCTION_APP_URL)")?;
    let endpoint = base.join("api/diagnose").map_err(|e| format!("bad --function-app URL: {e}"))?;
    let filter = Filter::new(diagnose.filter.clone());
    let bounds = Bounds { limit: diagnose.limit, ..Bounds::default() };
    let (selected, _) = selection::read(&connection.client, &args.queue, &filter, bounds).await?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let results: Vec<Result<Diagnosed, String>> = futures::stream::iter(selected.iter())
        .map(|(message, letter)| call(&http, &endpoint, &diagnose.function_key, &message.body, letter))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let diagnosed = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let rows = diagnosed
        .iter()
        .map(|d| {
            let failing = first_failing(&d.diagnosis);
            vec![
                d.sequence_number.to_string(),
                or_dash(d.onboarding_id.as_deref()),
                d.dead_letter_reason.clone(),
                if d.ready { "yes" } else { "no" }.to_owned(),
                or_dash(d.blocked_by.as_deref()),
                or_dash(failing.and_then(|c| c["disposition"].as_str())),
                clip(failing.and_then(|c| c["message"].as_str()).unwrap_or("-"), 80),
            ]
        })
        .collect();
    print(
        format,
        &diagnosed,
        &["SEQ", "ONBOARDING ID", "FAILED WITH", "READY", "BLOCKED BY", "DISPOSITION", "MESSAGE"],
        rows,
    );
    Ok(if diagnosed.iter().all(|d| d.ready) { Exit::Ok } else { Exit::Rejected })
}

async fn call(
    http: &reqwest::Client,
    endpoint: &Url,
    key: &str,
    body: &[u8],
    letter: &DeadLetter,
) -> Result<Diagnosed, String> {
    let response = http
        .post(endpoint.clone())
        .header("x-functions-key", key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("cannot reach the diagnose function at {endpoint}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(format!("the diagnose function refused the key ({status}); it needs the host master key"));
    }
    let diagnosis: Value =
        response.json().await.map_err(|e| format!("the diagnose function answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!("the diagnose function answered {status}: {diagnosis}"));
    }
    let blocked_by = first_failing(&diagnosis)
        .map(|c| format!("{}: {}", c["step"].as_str().unwrap_or("?"), c["reasonCode"].as_str().unwrap_or("?")));
    Ok(Diagnosed {
        sequence_number: letter.sequence_number,
        onboarding_id: letter.onboarding_id.clone(),
        dead_letter_reason: letter.reason().to_owned(),
        ready: diagnosis["ready"].as_bool().unwrap_or(false),
        blocked_by,
        diagnosis,
    })
}

fn first_failing(diagnosis: &Value) -> Option<&Value> {
    diagnosis["checks"].as_array()?.iter().find(|c| c["ok"] == false)
}
