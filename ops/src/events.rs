//! Receiving events from a subscription of the events topic. The REST API only receives destructively (an abandoned
//! message comes straight back), so each event is completed once read: `events tail` and the console use a
//! subscription of their own (`ops`, deployed by infra).

use std::time::Duration;

use serde_json::Value;

use crate::connect::Connection;

/// `topic/subscriptions/name`.
pub fn subscription_path(topic: &str, subscription: &str) -> String {
    format!("{}/subscriptions/{subscription}", topic.trim_matches('/'))
}

/// Receives (and consumes) the next event, waiting up to `wait`; the body as JSON (or as a string if it is not).
pub async fn next_event(connection: &Connection, entity: &str, wait: Duration) -> Result<Option<Value>, String> {
    let Some(message) = connection.client.peek_lock(entity, wait).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let event: Value = serde_json::from_slice(&message.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
    connection.client.complete(&message).await.map_err(|e| e.to_string())?;
    Ok(Some(event))
}

/// `time  type  onboarding id  reason or key`, for tables.
pub fn summary(event: &Value) -> (String, String, String, String) {
    let kind = event["type"].as_str().unwrap_or("?");
    let short = kind.rsplit('.').nth(1).unwrap_or(kind).to_owned();
    let data = &event["data"];
    let detail = data["reasonCode"]
        .as_str()
        .map(|reason| match data["message"].as_str() {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_owned(),
        })
        .or_else(|| data["currentVersionedKeyIdentifier"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let onboarding = data["onboardingId"].as_str().or(event["onboardingid"].as_str()).unwrap_or("?").to_owned();
    (event["time"].as_str().unwrap_or("?").to_owned(), short, onboarding, detail)
}
