//! The control surface under `/_emulator/`: scenario, changes, faults, request log, state dumps, clock; and a
//! typed client for tests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::FaultRule;
use crate::reqlog::RequestRecord;
use crate::scenario::{Change, Scenario};
use crate::state::Shared;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(health))
        .route("/scenario", put(put_scenario))
        .route("/changes", post(post_changes))
        .route("/state", get(state))
        .route("/requests", get(list_requests).delete(clear_requests))
        .route("/faults", post(add_fault).get(list_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/clock/advance", post(advance_clock))
        .route("/host", get(host_status))
        .route("/limits", get(get_limits).put(put_limits))
}

async fn get_limits(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.limits.status())
}

/// Replaces the latency, limits and time scale; every window starts afresh.
async fn put_limits(State(shared): State<Arc<Shared>>, Json(config): Json<crate::limits::LimitsConfig>) -> Response {
    match shared.limits.configure(config) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => bad_request(message),
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "status": "ok", "url": shared.base_url, "clockOffsetMs": shared.clock.offset().whole_milliseconds() }))
}

/// Body errors (bad JSON) are answered by the extractor with 4xx; rule errors here with 400 `{"error"}`.
fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message.into() }))).into_response()
}

async fn put_scenario(State(shared): State<Arc<Shared>>, Json(scenario): Json<Scenario>) -> Response {
    match shared.load(&scenario) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => bad_request(message),
    }
}

async fn post_changes(State(shared): State<Arc<Shared>>, Json(changes): Json<Vec<Change>>) -> Response {
    match shared.apply(&changes) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => bad_request(message),
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let now = shared.clock.now();
    let (arm, key_vault, entra, rbac) = {
        let mut world = shared.world.lock().expect("world lock poisoned");
        // The state as of the emulator's clock: creations that are due are done.
        world.arm.finish_creations(now);
        crate::arm::daily_key_check(&mut world, now);
        (world.arm.dump(), world.vaults.dump(), world.directory.dump(), world.rbac.dump(now))
    };
    Json(json!({
        "arm": arm,
        "keyVault": key_vault,
        "entra": entra,
        "rbac": rbac,
        "serviceBus": shared.bus.snapshot(),
        "host": shared.host.status(),
    }))
}

async fn list_requests(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Vec<RequestRecord>> {
    Json(shared.log.list(query.get("host").map(String::as_str)))
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.log.clear();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(rule): Json<FaultRule>) -> Response {
    match shared.faults.add(rule) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(message) => bad_request(message),
    }
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults.list()).into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if shared.faults.remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no fault rule {id}") }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(State(shared): State<Arc<Shared>>, Json(advance): Json<Advance>) -> Response {
    if !advance.seconds.is_finite() || advance.seconds < 0.0 {
        return bad_request("seconds must be a non-negative number (the clock never goes back)");
    }
    shared.advance_clock(std::time::Duration::from_secs_f64(advance.seconds));
    let now = shared.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    Json(json!({ "now": now, "offsetMs": shared.clock.offset().whole_milliseconds() })).into_response()
}

async fn host_status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.host.status())
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("control endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
}

/// A typed client for the control surface.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// `base_url` is the emulator's URL, e.g. `http://127.0.0.1:41234`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { base: base_url.into().trim_end_matches('/').to_owned(), http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_emulator{path}", self.base)
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, ControlError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        Err(ControlError::Status { status, body: response.text().await.unwrap_or_default() })
    }

    pub async fn load_scenario(&self, scenario: &Scenario) -> Result<(), ControlError> {
        Self::check(self.http.put(self.url("/scenario")).json(scenario).send().await?).await.map(drop)
    }

    pub async fn apply_changes(&self, changes: &[Change]) -> Result<(), ControlError> {
        Self::check(self.http.post(self.url("/changes")).json(changes).send().await?).await.map(drop)
    }

    /// Requests served so far, in order; `host` keeps only one host's.
    pub async fn requests(&self, host: Option<&str>) -> Result<Vec<RequestRecord>, ControlError> {
        let mut request = self.http.get(self.url("/requests"));
        if let Some(host) = host {
            request = request.query(&[("host", host)]);
        }
        Ok(Self::check(request.send().await?).await?.json().await?)
    }

    pub async fn clear_requests(&self) -> Result<(), ControlError> {
        Self::check(self.http.delete(self.url("/requests")).send().await?).await.map(drop)
    }

    /// Adds a fault rule; returns its id.
    pub async fn add_fault(&self, rule: &FaultRule) -> Result<String, ControlError> {
        let body: Value =
            Self::check(self.http.post(self.url("/faults")).json(rule).send().await?).await?.json().await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn clear_faults(&self) -> Result<(), ControlError> {
        Self::check(self.http.delete(self.url("/faults")).send().await?).await.map(drop)
    }

    pub async fn state(&self) -> Result<Value, ControlError> {
        Ok(Self::check(self.http.get(self.url("/state")).send().await?).await?.json().await?)
    }

    pub async fn advance_clock(&self, by: std::time::Duration) -> Result<(), ControlError> {
        let body = json!({ "seconds": by.as_secs_f64() });
        Self::check(self.http.post(self.url("/clock/advance")).json(&body).send().await?).await.map(drop)
    }

    /// Sets latency, request limits and the time scale (`PUT /_emulator/limits`).
    pub async fn set_limits(&self, config: &crate::limits::LimitsConfig) -> Result<(), ControlError> {
        Self::check(self.http.put(self.url("/limits")).json(config).send().await?).await.map(drop)
    }

    /// The limits in force and the throttles' counters.
    pub async fn limits(&self) -> Result<Value, ControlError> {
        Ok(Self::check(self.http.get(self.url("/limits")).send().await?).await?.json().await?)
    }

    pub async fn host_status(&self) -> Result<Value, ControlError> {
        Ok(Self::check(self.http.get(self.url("/host")).send().await?).await?.json().await?)
    }
}

/// Sends requests meant for Azure to the emulator, the way the handler's test seam does: the bytes go to the
/// emulator, the original scheme and host travel in `x-recording-upstream-base-uri`.
#[derive(Debug, Clone)]
pub struct AzureClient {
    base: String,
    http: reqwest::Client,
}

impl AzureClient {
    pub fn new(emulator_url: impl Into<String>) -> Self {
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("reqwest client");
        Self { base: emulator_url.into().trim_end_matches('/').to_owned(), http }
    }

    /// A request for `url` (e.g. `https://graph.microsoft.com/v1.0/applications/…`), routed through the emulator.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let parsed = url::Url::parse(url).expect("absolute Azure URL");
        let origin = parsed.origin().ascii_serialization();
        let path_and_query = &parsed[url::Position::BeforePath..];
        self.http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(crate::router::UPSTREAM_HEADER, origin)
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }
}
