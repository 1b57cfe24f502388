//! The console's HTTP server: the page, its JSON API, and the guards described in the module above.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{self, Action, Actor, Progress};
use crate::audit::{AuditLog, state_dir};
use crate::connect::Connection;
use crate::dead_letter::{Filter, by_reason};
use crate::diagnosis::DiagnoseFunction;
use crate::selection::{self, Bounds, Expected, Identity};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");
const COOKIE: &str = "cmkctl_console";
const TOKEN_HEADER: &str = "x-cmkctl-token";
/// Recent events kept for the page.
const RECENT_EVENTS: usize = 50;
/// One receive of the events follower; between receives it checks whether the console is still wanted.
const EVENT_WAIT: Duration = Duration::from_secs(5);
/// At most this many messages per action request (a group larger than that is acted on in several runs).
const MAX_ACTION: usize = selection::DEFAULT_SCAN_LIMIT;

/// What the console needs besides the connection.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Must be a loopback address.
    pub listen: SocketAddr,
    pub queue: String,
    pub topic: String,
    /// The events subscription to follow (consumed as it is shown); `None`: no events panel.
    pub events_subscription: Option<String>,
    pub diagnose: Option<DiagnoseFunction>,
    pub operator: String,
    pub audit: Option<PathBuf>,
}

/// A running console.
#[derive(Debug)]
pub struct Console {
    pub address: SocketAddr,
    /// The URL to open (carries the token once).
    pub url: String,
    pub server: tokio::task::JoinHandle<()>,
}

struct AppState {
    connection: Connection,
    options: ConsoleOptions,
    token: String,
    hosts: Vec<String>,
    origins: Vec<String>,
    /// One dead-letter walk at a time: a listing and an action never lock each other's messages.
    walk: tokio::sync::Mutex<()>,
    jobs: Mutex<BTreeMap<String, Value>>,
    events: Mutex<VecDeque<Value>>,
    events_error: Mutex<Option<String>>,
}

type Shared = Arc<AppState>;

/// Binds, starts serving, and starts following the events subscription.
pub async fn start(connection: Connection, options: ConsoleOptions) -> Result<Console, String> {
    if !options.listen.ip().is_loopback() {
        return Err(format!("the console listens on loopback addresses only, not {}", options.listen));
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let port = address.port();
    let hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
    let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
    let url = format!("http://{address}/?token={token}");
    let state = Arc::new(AppState {
        connection,
        options,
        token,
        hosts,
        origins,
        walk: tokio::sync::Mutex::new(()),
        jobs: Mutex::default(),
        events: Mutex::default(),
        events_error: Mutex::default(),
    });
    if let Some(subscription) = state.options.events_subscription.clone() {
        tokio::spawn(follow_events(Arc::downgrade(&state), subscription));
    }
    let app = Router::new()
        .route("/", get(page))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/api/overview", get(overview))
        .route("/api/message/{sequence}", get(message))
        .route("/api/actions", post(start_action))
        .route("/api/actions/{id}", get(action_status))
        .route("/api/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Console { address, url, server })
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

/// Every request: right Host, right cookie (or the one-time token on `/`), and for mutations the token header,
/// JSON, and a same-origin browser context. Security headers on every answer.
async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let mut response = if !state.hosts.contains(&host) {
        refuse(StatusCode::FORBIDDEN, "unexpected Host header (the console answers only to its own loopback address)")
    } else if let Some(problem) = check_auth(&state, request.method(), request.uri(), headers) {
        problem
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

fn check_auth(state: &AppState, method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> Option<Response> {
    let equal = |given: &str| constant_time_eq(given.as_bytes(), state.token.as_bytes());
    let first_visit = method == Method::GET
        && uri.path() == "/"
        && uri.query().is_some_and(|q| q.split('&').any(|p| p.strip_prefix("token=").is_some_and(equal)));
    if first_visit {
        return None;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_owned))
        .any(|value| equal(&value));
    if !cookie {
        return Some(refuse(StatusCode::UNAUTHORIZED, "no console session: open the URL cmkctl console printed"));
    }
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let header_token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).is_some_and(equal);
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim().to_ascii_lowercase().starts_with("application/json"));
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| state.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)));
    let site_ok = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_none_or(|site| site == "same-origin");
    (!(header_token && json && origin_ok && site_ok))
        .then(|| refuse(StatusCode::FORBIDDEN, "cross-site or unauthenticated request refused"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// The first visit trades the URL's token for the cookie and drops it from the address bar.
async fn page(State(state): State<Shared>, Query(query): Query<PageQuery>) -> Response {
    if query.token.is_some() {
        let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", state.token);
        let mut response = Redirect::to("/").into_response();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    let html = PAGE
        .replace("{{TOKEN}}", &state.token)
        .replace("{{NAMESPACE}}", &html_escape(&state.connection.namespace))
        .replace("{{QUEUE}}", &html_escape(&state.options.queue));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Counts (cheap, from the management API) and, unless `?counts=only`, the dead letters grouped by reason (a walk).
async fn overview(State(state): State<Shared>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let client = &state.connection.client;
    let counts = match crate::counts::counts(client, &state.options.queue).await {
        Ok(counts) => json!(counts),
        Err(error) => json!({ "error": error }),
    };
    if query.get("counts").is_some_and(|v| v == "only") {
        return Json(json!({ "counts": counts })).into_response();
    }
    let _walking = state.walk.lock().await;
    let read = selection::read(client, &state.options.queue, &Filter::default(), Bounds::default()).await;
    match read {
        Ok((selected, report)) => {
            let letters: Vec<_> = selected.into_iter().map(|(_, letter)| letter).collect();
            let groups = by_reason(&letters);
            Json(json!({
                "counts": counts,
                "groups": groups,
                "letters": letters,
                "truncated": report.truncated,
                "now": crate::audit::rfc3339(time::OffsetDateTime::now_utc()),
            }))
            .into_response()
        }
        Err(error) => refuse(StatusCode::BAD_GATEWAY, &error),
    }
}

/// One dead letter in full, with what blocks it now (when the diagnose function is configured).
async fn message(State(state): State<Shared>, Path(sequence): Path<i64>) -> Response {
    let filter = Filter::new(crate::cli::FilterArgs { sequence: vec![sequence], ..Default::default() });
    let read = {
        let _walking = state.walk.lock().await;
        let bounds = Bounds { limit: Some(1), ..Bounds::default() };
        selection::read(&state.connection.client, &state.options.queue, &filter, bounds).await
    };
    let (selected, _) = match read {
        Ok(found) => found,
        Err(error) => return refuse(StatusCode::BAD_GATEWAY, &error),
    };
    let Some((message, letter)) = selected.into_iter().next() else {
        return refuse(StatusCode::NOT_FOUND, &format!("no dead letter with sequence number {sequence}"));
    };
    let body = serde_json::from_slice::<Value>(&message.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
    let diagnosis = match &state.options.diagnose {
        Some(function) => match function.diagnose(&message.body, &letter).await {
            Ok(diagnosed) => json!(diagnosed),
            Err(error) => json!({ "error": error }),
        },
        None => json!({ "error": "not configured: start the console with --function-key (and --function-app)" }),
    };
    let broker = &message.broker_properties;
    Json(json!({
        "summary": letter,
        "systemProperties": {
            "messageId": broker.message_id,
            "correlationId": broker.correlation_id,
            "sessionId": broker.session_id,
            "contentType": message.content_type,
            "sequenceNumber": broker.sequence_number,
            "enqueuedTimeUtc": broker.enqueued_time_utc,
            "deliveryCount": broker.delivery_count,
            "deadLetterSource": broker.dead_letter_source,
        },
        "applicationProperties": message.application_properties,
        "body": body,
        "diagnosis": diagnosis,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionRequest {
    action: String,
    /// What the page showed: acted on only if still there with the same MessageId.
    messages: Vec<Identity>,
}

/// Starts a replay or purge of exactly the listed messages; progress at `/api/actions/{id}`.
async fn start_action(State(state): State<Shared>, body: Bytes) -> Response {
    let request: ActionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, &format!("bad action request: {error}")),
    };
    if request.messages.is_empty() || request.messages.len() > MAX_ACTION {
        return refuse(StatusCode::BAD_REQUEST, &format!("select between 1 and {MAX_ACTION} messages"));
    }
    let action = match request.action.as_str() {
        "replay" => Action::Replay { rate: 50.0, concurrency: 8 },
        "purge" => Action::Purge { archive: None },
        other => return refuse(StatusCode::BAD_REQUEST, &format!("unknown action {other:?}")),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let total = request.messages.len();
    state.set_job(&id, json!({ "action": action.name(), "state": "selecting", "progress": { "total": total, "done": 0, "failed": 0 } }));
    let job_state = state.clone();
    let job = id.clone();
    tokio::spawn(async move {
        let outcome = run_action(&job_state, &job, action, request.messages).await;
        let mut status = job_state.job(&job);
        match outcome {
            Ok((summary, unfinished)) => {
                status["state"] = "done".into();
                status["summary"] = json!(summary);
                status["unfinishedRuns"] = json!(unfinished.iter().map(ToString::to_string).collect::<Vec<_>>());
            }
            Err(error) => {
                status["state"] = "failed".into();
                status["error"] = error.into();
            }
        }
        job_state.set_job(&job, status);
    });
    (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()
}

async fn run_action(
    state: &Shared,
    job: &str,
    mut action: Action,
    messages: Vec<Identity>,
) -> Result<(actions::Summary, Vec<crate::audit::Unfinished>), String> {
    let _walking = state.walk.lock().await;
    let path = state.options.audit.clone().unwrap_or_else(|| state_dir().join("audit.jsonl"));
    let (audit, unfinished) = AuditLog::open(&path)?;
    if let Action::Purge { archive } = &mut action {
        *archive = Some(state_dir().join("purged").join(format!("{}.jsonl", audit.run)));
    }
    let bounds = Bounds { limit: None, scan_limit: selection::DEFAULT_SCAN_LIMIT };
    let locked = selection::lock(
        &state.connection.client,
        &state.options.queue,
        &Filter::default(),
        &Expected::Exactly(messages),
        bounds,
        |_: usize| {},
    )
    .await?;
    let mut locked = locked;
    if matches!(action, Action::Replay { .. }) {
        locked.set_aside_reason_records();
    }
    let mut status = state.job(job);
    status["state"] = "running".into();
    status["report"] = json!(locked.report);
    status["progress"]["total"] = locked.chosen.len().into();
    state.set_job(job, status);
    let actor = Actor {
        connection: state.connection.clone(),
        queue: state.options.queue.clone(),
        operator: state.options.operator.clone(),
        audit,
    };
    let (progress_state, progress_job) = (state.clone(), job.to_owned());
    let summary = actions::execute(locked, action, &actor, move |progress: Progress| {
        let mut status = progress_state.job(&progress_job);
        status["progress"] = json!(progress);
        progress_state.set_job(&progress_job, status);
    })
    .await?;
    Ok((summary, unfinished))
}

async fn action_status(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let status = state.job(&id);
    if status.is_null() { refuse(StatusCode::NOT_FOUND, "no such action") } else { Json(status).into_response() }
}

async fn events(State(state): State<Shared>) -> Response {
    let events: Vec<Value> = state.events.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    let error = state.events_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(json!({ "subscription": state.options.events_subscription, "events": events, "error": error })).into_response()
}

impl AppState {
    fn job(&self, id: &str) -> Value {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().unwrap_or(Value::Null)
    }

    fn set_job(&self, id: &str, status: Value) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), status);
    }
}

/// Follows the events subscription while the console runs (it holds only a weak reference, so it ends with it).
async fn follow_events(state: std::sync::Weak<AppState>, subscription: String) {
    loop {
        let Some(state) = state.upgrade() else { return };
        let entity = crate::events::subscription_path(&state.options.topic, &subscription);
        match crate::events::next_event(&state.connection, &entity, EVENT_WAIT).await {
            Ok(Some(event)) => {
                let mut events = state.events.lock().unwrap_or_else(|e| e.into_inner());
                let (time, kind, onboarding, detail) = crate::events::summary(&event);
                events.push_front(json!({ "time": time, "type": kind, "onboardingId": onboarding, "detail": detail }));
                events.truncate(RECENT_EVENTS);
                *state.events_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Ok(None) => {}
            Err(error) => {
                *state.events_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                drop(state);
                tokio::time::sleep(EVENT_WAIT).await;
            }
        }
    }
}
