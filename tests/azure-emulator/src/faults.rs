//! Fault rules: answer a status, delay, or reset the connection for matching requests.
//!
//! Rules are checked in the order they were added; the first one that matches *and fires* decides. A rule with
//! `times` stops after firing that many times; one with `probability` fires on a seeded random draw, so a test run is
//! reproducible. An action `oneOf` picks one of several actions with the same seeded generator, so one rule can stand
//! for a flaky service (some throttling, some outages, some slow answers, some resets).

use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Clock;
use crate::cloud::{Cloud, Service};
use crate::entra::EntraError;
use crate::http::Req;

/// A rule as posted to `POST /_emulator/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    #[serde(rename = "match", default)]
    pub matcher: FaultMatch,
    pub action: FaultAction,
    /// How many times the rule fires; absent means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Chance (0..=1) that a matching request triggers the rule; absent means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Seed of the rule's random draws; absent means a random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Which requests a rule applies to; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultMatch {
    /// Exact host (`management.azure.com`), a wildcard (`*.vault.azure.net`) or `*`; case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
}

/// What a firing rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FaultAction {
    /// Answer with an error shaped for the target service.
    #[serde(rename_all = "camelCase")]
    Respond {
        status: u16,
        /// Seconds, sent as `Retry-After`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Serve the request normally after this delay.
    #[serde(rename_all = "camelCase")]
    Delay { delay_ms: u64 },
    /// Drop the connection without an HTTP response.
    Reset { reset: bool },
    /// One of these, chosen uniformly by the rule's random generator each time the rule fires.
    #[serde(rename_all = "camelCase")]
    OneOf { one_of: Vec<FaultAction> },
}

impl FaultAction {
    fn validate(&self) -> Result<(), String> {
        match self {
            FaultAction::Respond { status, .. } if StatusCode::from_u16(*status).is_err() => {
                Err(format!("invalid status {status}"))
            }
            FaultAction::OneOf { one_of } if one_of.is_empty() => Err("oneOf needs at least one action".into()),
            FaultAction::OneOf { one_of } => one_of.iter().try_for_each(FaultAction::validate),
            _ => Ok(()),
        }
    }

    /// The action that applies this time: `oneOf` resolved with `rng`.
    fn pick(&self, rng: &mut StdRng) -> &FaultAction {
        match self {
            FaultAction::OneOf { one_of } => one_of[rng.gen_range(0..one_of.len())].pick(rng),
            action => action,
        }
    }
}

/// What a matching rule does to a request.
#[derive(Debug)]
pub enum Fault {
    Respond(Response),
    Delay(std::time::Duration),
    Reset,
}

/// A configured rule with its run-time counters, as `GET /_emulator/faults` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultStatus {
    pub id: String,
    #[serde(flatten)]
    pub rule: FaultRule,
    /// How many times the rule fired so far.
    pub fired: u64,
}

#[derive(Debug)]
struct Active {
    status: FaultStatus,
    rng: StdRng,
}

/// The configured fault rules.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    rules: Vec<Active>,
}

impl Faults {
    /// Adds a rule; returns its id.
    pub fn add(&self, rule: FaultRule) -> Result<String, String> {
        if let Some(p) = rule.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability must be within 0..=1, got {p}"));
        }
        rule.action.validate()?;
        let rng = match rule.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let mut inner = self.inner.lock().expect("faults lock poisoned");
        inner.next_id += 1;
        let id = format!("fault-{}", inner.next_id);
        inner.rules.push(Active { status: FaultStatus { id: id.clone(), rule, fired: 0 }, rng });
        Ok(id)
    }

    pub fn list(&self) -> Vec<FaultStatus> {
        self.inner.lock().expect("faults lock poisoned").rules.iter().map(|a| a.status.clone()).collect()
    }

    pub fn clear(&self) {
        self.inner.lock().expect("faults lock poisoned").rules.clear();
    }

    /// Removes one rule; false when no rule has that id.
    pub fn remove(&self, id: &str) -> bool {
        let mut inner = self.inner.lock().expect("faults lock poisoned");
        let before = inner.rules.len();
        inner.rules.retain(|a| a.status.id != id);
        inner.rules.len() != before
    }

    pub fn check(&self, req: &Req, clock: &Clock) -> Option<Fault> {
        let mut inner = self.inner.lock().expect("faults lock poisoned");
        let host = req.host();
        for active in &mut inner.rules {
            let rule = &active.status.rule;
            let exhausted = rule.times.is_some_and(|times| active.status.fired >= u64::from(times));
            if exhausted || !matches(&rule.matcher, req, &host) {
                continue;
            }
            if let Some(p) = rule.probability
                && active.rng.r#gen::<f64>() >= p
            {
                continue;
            }
            active.status.fired += 1;
            tracing::info!(rule = %active.status.id, method = %req.method, url = %req.url, "fault injected");
            return Some(match active.status.rule.action.pick(&mut active.rng) {
                FaultAction::Respond { status, retry_after, error_code, message } => Fault::Respond(error_response(
                    req,
                    &host,
                    *status,
                    *retry_after,
                    error_code.as_deref(),
                    message.as_deref(),
                    clock,
                )),
                FaultAction::Delay { delay_ms } => Fault::Delay(std::time::Duration::from_millis(*delay_ms)),
                FaultAction::Reset { .. } => Fault::Reset,
                FaultAction::OneOf { .. } => unreachable!("pick resolves oneOf"),
            });
        }
        None
    }
}

fn matches(matcher: &FaultMatch, req: &Req, host: &str) -> bool {
    let host_ok = matcher.host.as_deref().is_none_or(|pattern| host_matches(pattern, host));
    let method_ok = matcher.method.as_deref().is_none_or(|m| req.method.as_str().eq_ignore_ascii_case(m));
    let path_ok = matcher.path_contains.as_deref().is_none_or(|p| req.url.path().contains(p));
    host_ok && method_ok && path_ok
}

pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*") {
        Some("") => true,
        Some(suffix) if suffix.starts_with('.') => host.ends_with(suffix) && host.len() > suffix.len(),
        _ => pattern == host,
    }
}

/// An error response in the shape of the service the request was meant for.
fn error_response(
    req: &Req,
    host: &str,
    status: u16,
    retry_after: Option<u64>,
    error_code: Option<&str>,
    message: Option<&str>,
    clock: &Clock,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = error_code.map(str::to_owned).unwrap_or_else(|| default_code(status).to_owned());
    let message = message.map(str::to_owned).unwrap_or_else(|| format!("Injected fault: {code}."));
    let mut response = match Cloud::service_for_host(host).map(|(_, service)| service) {
        Some(Service::Login) => {
            // OAuth errors are snake_case words; the AADSTS number is Entra's generic "transient error".
            let error = error_code.unwrap_or("temporarily_unavailable");
            EntraError::new(status, error, 90033, message).response_at(clock.now())
        }
        Some(Service::Graph) => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let date = clock.now().replace_nanosecond(0).unwrap_or(clock.now());
            let date = date.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            let body = crate::graph::error_body(&code, &message, date, &request_id, &request_id);
            (status, axum::Json(body)).into_response()
        }
        Some(Service::KeyVault { .. }) => {
            let body = json!({ "error": { "code": code, "message": message, "innererror": { "code": code } } });
            (status, axum::Json(body)).into_response()
        }
        Some(Service::ServiceBus { .. }) => {
            let body = format!(
                "<Error><Code>{}</Code><Detail>{}</Detail></Error>",
                status.as_u16(),
                xml_escape(&format!("{code}: {message}"))
            );
            (status, [("content-type", "application/xml; charset=utf-8")], body).into_response()
        }
        // The emulator's own port: App Service's managed-identity endpoint answers in its own shape.
        None if req.url.path() == "/msi/token" => crate::entra::app_service_error(status, &message),
        Some(Service::Arm) | None => {
            (status, axum::Json(json!({ "error": { "code": code, "message": message } }))).into_response()
        }
    };
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        409 => "Conflict",
        _ => "InjectedFault",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// What a forward proxy answers when the host a request is for has no DNS record: 502 with RFC 9209
/// `Proxy-Status: azure-emulator; error=dns_error; rcode="NXDOMAIN"`. The emulator sits where the handler's test proxy
/// does, so this is how a name that does not resolve reaches a client: the handler's transport maps it to the same
/// error as its own resolver's failure (a dropped connection would look like a network blip instead).
pub fn name_not_resolved(host: &str) -> Response {
    let mut response =
        (StatusCode::BAD_GATEWAY, format!("The host name {host} could not be resolved (NXDOMAIN).")).into_response();
    response
        .headers_mut()
        .insert("proxy-status", HeaderValue::from_static("azure-emulator; error=dns_error; rcode=\"NXDOMAIN\""));
    response
}

/// A response whose body fails before its first byte. Hyper then abandons the connection without flushing the
/// status line it had buffered, so the client sees the connection close with no HTTP response, like a reset.
pub fn reset_response() -> Response {
    let failing = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected reset",
        ))
    });
    Response::new(Body::from_stream(failing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("*.vault.azure.net", "kv1.vault.azure.net"));
        assert!(!host_matches("*.vault.azure.net", "vault.azure.net"));
        assert!(host_matches("Management.Azure.com", "management.azure.com"));
        assert!(host_matches("*", "anything"));
        assert!(!host_matches("management.azure.com", "graph.microsoft.com"));
    }

    #[test]
    fn rule_json_round_trips() {
        let text = r#"{"match":{"host":"*.vault.azure.net","method":"PATCH","pathContains":"/keys/"},
                       "action":{"status":429,"retryAfter":1,"errorCode":"Throttled"},"times":2,"probability":0.5,"seed":42}"#;
        let rule: FaultRule = serde_json::from_str(text).unwrap();
        assert!(matches!(rule.action, FaultAction::Respond { status: 429, retry_after: Some(1), .. }));
        assert_eq!(rule.matcher.path_contains.as_deref(), Some("/keys/"));
        let delay: FaultRule = serde_json::from_str(r#"{"action":{"delayMs":300}}"#).unwrap();
        assert_eq!(delay.action, FaultAction::Delay { delay_ms: 300 });
        let reset: FaultRule = serde_json::from_str(r#"{"action":{"reset":true}}"#).unwrap();
        assert_eq!(reset.action, FaultAction::Reset { reset: true });
        assert!(serde_json::from_str::<FaultRule>(r#"{"action":{"bogus":1}}"#).is_err());
        let one_of: FaultRule =
            serde_json::from_str(r#"{"action":{"oneOf":[{"status":503,"retryAfter":1},{"reset":true}]}}"#).unwrap();
        assert_eq!(
            one_of.action,
            FaultAction::OneOf {
                one_of: vec![
                    FaultAction::Respond { status: 503, retry_after: Some(1), error_code: None, message: None },
                    FaultAction::Reset { reset: true },
                ]
            }
        );
        assert_eq!(serde_json::from_str::<FaultRule>(&serde_json::to_string(&one_of).unwrap()).unwrap(), one_of);
    }

    #[test]
    fn one_of_must_hold_valid_actions() {
        let faults = Faults::default();
        for text in [r#"{"action":{"oneOf":[]}}"#, r#"{"action":{"oneOf":[{"delayMs":1},{"status":42}]}}"#] {
            let rule: FaultRule = serde_json::from_str(text).unwrap();
            assert!(faults.add(rule).is_err(), "{text}");
        }
    }
}
