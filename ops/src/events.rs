//! Receiving events from a subscription of the events topic. The REST API only receives destructively (an abandoned
//! message comes straight back), so each event is completed once read: `events tail` and the console use a
//! subscription of their own (`ops`, deployed by infra). [`EventFilter`] picks the events a filtered tail shows
//! (pure); the tail holds the others locked and releases them at its end.

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
    let short = short_type(kind).to_owned();
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

/// What a filtered `events tail` shows: AND between criteria, OR between the values of one. Matching is on the
/// CloudEvent itself (`type`, `onboardingid`/`data.onboardingId`, `customertenantid`/`data.customerTenantId`,
/// `data.storageAccountId`), case-insensitively for ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Short (`key_access_lost`) or full (`com.cmkonboard.onboarding.key_access_lost.v1`) event types.
    pub types: Vec<String>,
    pub onboarding_ids: Vec<String>,
    pub tenants: Vec<String>,
    /// Storage account names or resource ids.
    pub storage_accounts: Vec<String>,
}

impl EventFilter {
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
            && self.onboarding_ids.is_empty()
            && self.tenants.is_empty()
            && self.storage_accounts.is_empty()
    }

    pub fn matches(&self, event: &Value) -> bool {
        let any = |wanted: &[String], have: Option<&str>, same: &dyn Fn(&str, &str) -> bool| {
            wanted.is_empty() || have.is_some_and(|have| wanted.iter().any(|w| same(w, have)))
        };
        let data = &event["data"];
        let text = |a: &Value, b: &Value| a.as_str().or_else(|| b.as_str()).map(str::to_owned);
        let kind = event["type"].as_str();
        let onboarding = text(&event["onboardingid"], &data["onboardingId"]);
        let tenant = text(&event["customertenantid"], &data["customerTenantId"]);
        let account = data["storageAccountId"].as_str();
        any(&self.types, kind, &|wanted, have| have == wanted || short_type(have) == wanted)
            && any(&self.onboarding_ids, onboarding.as_deref(), &|w, h| w == h)
            && any(&self.tenants, tenant.as_deref(), &|w, h| w.eq_ignore_ascii_case(h))
            && any(&self.storage_accounts, account, &|wanted, have| {
                let have = have.trim_end_matches('/');
                if wanted.contains('/') {
                    wanted.trim_end_matches('/').eq_ignore_ascii_case(have)
                } else {
                    have.rsplit('/').next().is_some_and(|name| name.eq_ignore_ascii_case(wanted))
                }
            })
    }
}

/// Every event type starts with it.
const TYPE_PREFIX: &str = "com.cmkonboard.onboarding.";

/// `key_access_lost` for `com.cmkonboard.onboarding.key_access_lost.v1` (anything else unchanged).
pub fn short_type(full: &str) -> &str {
    full.strip_prefix(TYPE_PREFIX).and_then(|t| t.strip_suffix(".v1")).unwrap_or(full)
}

/// True for an event type the handler publishes, short or full.
pub fn is_event_type(name: &str) -> bool {
    cmk_handler::events::EventType::ALL.iter().any(|t| t.as_str() == name || short_type(t.as_str()) == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, onboarding: &str, account: &str) -> Value {
        json!({
            "type": format!("com.cmkonboard.onboarding.{kind}.v1"),
            "onboardingid": onboarding,
            "customertenantid": "22222222-2222-2222-2222-222222222222",
            "data": { "onboardingId": onboarding, "storageAccountId": format!("/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{account}") },
        })
    }

    #[test]
    fn filters_and_between_criteria_or_within_one() {
        let lost = event("key_access_lost", "obd-1", "contosodata");
        let done = event("completed", "obd-2", "fabrikamdata");
        assert!(EventFilter::default().matches(&lost) && EventFilter::default().is_empty());
        let types = EventFilter { types: vec!["key_access_lost".into(), "failed".into()], ..Default::default() };
        assert!(types.matches(&lost) && !types.matches(&done));
        let full = EventFilter { types: vec!["com.cmkonboard.onboarding.completed.v1".into()], ..Default::default() };
        assert!(full.matches(&done) && !full.matches(&lost));
        let account = EventFilter { storage_accounts: vec!["FABRIKAMDATA".into()], ..Default::default() };
        assert!(account.matches(&done) && !account.matches(&lost));
        let by_id = EventFilter {
            storage_accounts: vec![
                "/subscriptions/s/resourceGroups/G/providers/Microsoft.Storage/storageAccounts/contosodata".into(),
            ],
            ..Default::default()
        };
        assert!(by_id.matches(&lost) && !by_id.matches(&done));
        let both = EventFilter {
            onboarding_ids: vec!["obd-2".into()],
            types: vec!["key_access_lost".into()],
            ..Default::default()
        };
        assert!(!both.matches(&lost) && !both.matches(&done), "AND between criteria");
        let tenant = EventFilter { tenants: vec!["22222222-2222-2222-2222-22222222222A".into()], ..Default::default() };
        assert!(!tenant.matches(&lost));
        let tenant = EventFilter { tenants: vec!["22222222-2222-2222-2222-222222222222".into()], ..Default::default() };
        assert!(tenant.matches(&lost));
        assert!(is_event_type("superseded") && is_event_type("com.cmkonboard.onboarding.failed.v1"));
        assert!(!is_event_type("key_revoked") && !is_event_type("failed.v1"));
        // An event without the field a criterion needs does not match it.
        assert!(!account.matches(&json!({ "type": "x", "data": {} })));
    }
}
