//! What blocks a dead letter now: the app's admin-only `DiagnoseOnboarding` function (`POST /api/diagnose`), which
//! runs the handler's validation and the read-only customer preflight with the CMK identity only the app can use.
//! Shared by `dlq diagnose` and the console.

use serde::Serialize;
use serde_json::Value;
use url::Url;

use cmk_handler::order::OnboardingOrder;
use cmk_handler::workflow::account_tags::{AccountRecord, Standing, standing};

use crate::dead_letter::DeadLetter;

/// Where the diagnose function is and the key it takes.
#[derive(Debug, Clone)]
pub struct DiagnoseFunction {
    pub endpoint: Url,
    pub key: String,
    http: reqwest::Client,
}

impl DiagnoseFunction {
    /// `base` is the Function App's URL (`https://APP.azurewebsites.net`, or the emulator's).
    pub fn new(base: &Url, key: &str) -> Result<Self, String> {
        let endpoint = base.join("api/diagnose").map_err(|e| format!("bad Function App URL: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { endpoint, key: key.to_owned(), http })
    }

    pub async fn diagnose(&self, body: &[u8], letter: &DeadLetter) -> Result<Diagnosed, String> {
        call(&self.http, &self.endpoint, &self.key, body, letter).await
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosed {
    pub sequence_number: i64,
    /// `onboarding`, `offboarding` or `probe`, as the handler read the message (absent when it did not validate).
    pub kind: Option<String>,
    pub onboarding_id: Option<String>,
    pub dead_letter_reason: String,
    pub ready: bool,
    /// The first failing check, `step: reasonCode`, or `superseded by {onboarding id}`.
    pub blocked_by: Option<String>,
    /// A newer onboarding configured the account since: a replay would change nothing (the handler supersedes it),
    /// so `dlq replay` skips it unless `--force`.
    pub superseded_by: Option<String>,
    pub diagnosis: Value,
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
    // Supersession is an onboarding's: an offboarding or a probe of an account that records another onboarding is
    // refused by its own check (ownership, watched).
    let onboarding = diagnosis["kind"].as_str().is_none_or(|kind| kind == "onboarding");
    let superseded_by = onboarding.then(|| superseded_by(&diagnosis, letter)).flatten();
    let blocked_by = superseded_by.as_ref().map(|newer| format!("superseded by {newer}")).or_else(|| {
        first_failing(&diagnosis)
            .map(|c| format!("{}: {}", c["step"].as_str().unwrap_or("?"), c["reasonCode"].as_str().unwrap_or("?")))
    });
    Ok(Diagnosed {
        sequence_number: letter.sequence_number,
        kind: diagnosis["kind"].as_str().map(str::to_owned),
        onboarding_id: letter.onboarding_id.clone(),
        dead_letter_reason: letter.reason().to_owned(),
        ready: diagnosis["ready"].as_bool().unwrap_or(false) && superseded_by.is_none(),
        blocked_by,
        superseded_by,
        diagnosis,
    })
}

/// The newer onboarding the account's tags record (the diagnosis' `recordedOnboarding`), when the dead letter's
/// onboarding is older: the handler's own rule (`account_tags::standing`), applied to the dead letter's order.
fn superseded_by(diagnosis: &Value, letter: &DeadLetter) -> Option<String> {
    let recorded = &diagnosis["recordedOnboarding"];
    let record = AccountRecord {
        onboarding_id: recorded["onboardingId"].as_str()?.to_owned(),
        order: recorded["onboardingOrder"].as_str().and_then(OnboardingOrder::parse),
        customer_tenant_id: None,
    };
    let order = letter.onboarding_order.as_deref().and_then(OnboardingOrder::parse)?;
    match standing(Some(record), letter.onboarding_id.as_deref()?, order) {
        Standing::Superseded { by } => Some(by.onboarding_id),
        Standing::Current { .. } => None,
    }
}

pub fn first_failing(diagnosis: &Value) -> Option<&Value> {
    diagnosis["checks"].as_array()?.iter().find(|c| c["ok"] == false)
}
