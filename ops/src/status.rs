//! The app's `OnboardingStatus` function (`GET /api/status`, function key): what an account records, from Azure
//! (`cmkctl status` shows it; `cmkctl probe` looks up the onboarding and tenant to probe for).

use serde_json::Value;
use url::Url;

/// The status function's answer for `account_id` (and the onboarding asked about), or why there is none (its error
/// code and message).
pub async fn account_status(
    base: &Url,
    key: &str,
    account_id: &str,
    onboarding_id: Option<&str>,
) -> Result<Value, String> {
    let endpoint = base.join("api/status").map_err(|e| format!("bad Function App URL: {e}"))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut query = vec![("storageAccountId", account_id)];
    query.extend(onboarding_id.map(|id| ("onboardingId", id)));
    let response = http
        .get(endpoint.clone())
        .query(&query)
        .header("x-functions-key", key)
        .send()
        .await
        .map_err(|e| format!("cannot reach the status function at {endpoint}: {e}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err("the status function refused the key (401): it needs a function key of OnboardingStatus".into());
    }
    let answer: Value =
        response.json().await.map_err(|e| format!("the status function answered {status} without JSON: {e}"))?;
    if !status.is_success() {
        let error = &answer["error"];
        return Err(format!(
            "the status function answered {status}: {} {}",
            error["code"].as_str().unwrap_or("?"),
            error["message"].as_str().unwrap_or("")
        ));
    }
    Ok(answer)
}
