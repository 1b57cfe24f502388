//! A tiny custom handler for the emulated host's own tests: it behaves as its environment (the app settings) says.
//!
//! - `TEST_HANDLER_MODE` (all functions) or `TEST_HANDLER_MODE_<FunctionName>`: a `|`-separated list of behaviours,
//!   one per invocation (counted across restarts when recording, else per process), the last repeating. Behaviours: `ok` (`{}`), `echo` (the request body back
//!   in `Outputs.res`), `fail` (500), `empty` (200, no body), `null` (200, `null`), `text` (200 text/plain), `hang`
//!   (never answers), `sleep:MS` (`{}` after MS milliseconds), `exit:N` (the process exits with N),
//!   `respond:<json>` (200 with that JSON body; must be last).
//! - `TEST_HANDLER_RECORD_DIR`: every invocation's raw body goes to `<dir>/<nanos>-<pid>-<FunctionName>.json`,
//!   its request line and headers to the same name with `.headers`, then a last line `in-flight: N` (invocations
//!   running in this process, this one included).
//! - `TEST_HANDLER_EXIT_AT_START=N`: exit with N before listening (start-up failures).
//! - `TEST_HANDLER_NEVER_LISTEN=1`: never bind the port (init timeout).
//!
//! At start it prints its pid, port, working directory, arguments and the host-provided variables on stdout, and one
//! line on stderr, so tests can check what the host passed and that both streams are captured.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const REPORTED_VARIABLES: [&str; 7] = [
    "FUNCTIONS_CUSTOMHANDLER_PORT",
    "FUNCTIONS_HTTPWORKER_PORT",
    "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
    "FUNCTIONS_HTTPWORKER_ID",
    "FUNCTIONS_APP_ROOT_PATH",
    "IDENTITY_ENDPOINT",
    "TEST_APP_SETTING",
];

#[derive(Debug, Default)]
struct Handler {
    env: HashMap<String, String>,
    /// Invocations so far in this process, per function.
    invocations: Mutex<HashMap<String, usize>>,
    /// Invocations running now.
    in_flight: AtomicUsize,
}

impl Handler {
    /// The behaviour for this function's n-th invocation in this process.
    fn behaviour(&self, function: &str) -> String {
        let modes = self
            .env
            .get(&format!("TEST_HANDLER_MODE_{function}"))
            .or_else(|| self.env.get("TEST_HANDLER_MODE"))
            .cloned()
            .unwrap_or_else(|| "ok".to_owned());
        let n = match self.env.get("TEST_HANDLER_RECORD_DIR") {
            // Recorded bodies survive restarts, so sequences continue in the next process.
            Some(dir) => recorded_count(dir, function),
            None => self.next_in_process(function),
        };
        // `respond:` carries JSON that may contain `|`, so it is only recognised as the last behaviour.
        let (plain, respond) = match modes.find("respond:") {
            Some(at) => (&modes[..at], Some(modes[at..].to_owned())),
            None => (modes.as_str(), None),
        };
        let mut list: Vec<String> = plain.split('|').filter(|m| !m.is_empty()).map(str::to_owned).collect();
        list.extend(respond);
        list.get(n).or(list.last()).cloned().unwrap_or_else(|| "ok".to_owned())
    }
}

impl Handler {
    fn next_in_process(&self, function: &str) -> usize {
        let mut counts = self.invocations.lock().expect("counter lock");
        let count = counts.entry(function.to_owned()).or_default();
        *count += 1;
        *count - 1
    }
}

/// How many invocations of `function` were recorded before this one.
fn recorded_count(dir: &str, function: &str) -> usize {
    let suffix = format!("-{function}.json");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(&suffix)).count()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env: HashMap<String, String> = std::env::vars().collect();
    if let Some(code) = env.get("TEST_HANDLER_EXIT_AT_START").and_then(|c| c.parse::<i32>().ok()) {
        println!("test-handler exiting at start with {code}");
        std::process::exit(code);
    }
    let port: u16 =
        env.get("FUNCTIONS_CUSTOMHANDLER_PORT").and_then(|p| p.parse().ok()).expect("FUNCTIONS_CUSTOMHANDLER_PORT");
    println!("test-handler pid={} port={port}", std::process::id());
    println!("test-handler cwd={}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
    println!("test-handler args={:?}", std::env::args().skip(1).collect::<Vec<_>>());
    for name in REPORTED_VARIABLES {
        println!("test-handler env {name}={}", env.get(name).map(String::as_str).unwrap_or("<unset>"));
    }
    eprintln!("test-handler stderr is captured too");
    if env.contains_key("TEST_HANDLER_NEVER_LISTEN") {
        std::future::pending::<()>().await;
    }
    let handler = Handler { env, invocations: Mutex::default(), in_flight: AtomicUsize::new(0) };
    let app = Router::new().fallback(serve).with_state(Arc::new(handler));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the handler port");
    axum::serve(listener, app).await.expect("serve");
}

async fn serve(State(handler): State<Arc<Handler>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    if parts.uri.path() == "/" {
        return (StatusCode::OK, "test-handler").into_response();
    }
    let function = parts.uri.path().trim_start_matches('/').to_owned();
    let invocation = parts.headers.get("x-azure-functions-invocationid").and_then(|v| v.to_str().ok()).unwrap_or("-");
    println!("test-handler invocation {function} id={invocation}");
    let behaviour = handler.behaviour(&function);
    let in_flight = handler.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(dir) = handler.env.get("TEST_HANDLER_RECORD_DIR") {
        record(dir, &function, &parts, &body, in_flight);
    }
    let response = respond(&behaviour, &function, &body).await;
    handler.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn record(dir: &str, function: &str, parts: &axum::http::request::Parts, body: &[u8], in_flight: usize) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let stem = format!("{dir}/{nanos:020}-{}-{function}", std::process::id());
    let mut head = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    head.push_str(&format!("in-flight: {in_flight}\n"));
    // Headers first: a test that sees the body file can read both.
    std::fs::write(format!("{stem}.headers"), head).expect("record headers");
    std::fs::write(format!("{stem}.json.tmp"), body).expect("record body");
    std::fs::rename(format!("{stem}.json.tmp"), format!("{stem}.json")).expect("record body");
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn respond(behaviour: &str, function: &str, body: &[u8]) -> Response {
    match behaviour {
        "ok" => json(StatusCode::OK, "{}".to_owned()),
        "echo" => {
            let echoed = serde_json::json!({
                "Outputs": {"res": {"statusCode": "200", "body": String::from_utf8_lossy(body), "headers": {"x-test-handler": "echo"}}},
                "Logs": [format!("echo {function}")],
                "ReturnValue": null,
            });
            json(StatusCode::OK, echoed.to_string())
        }
        "fail" => json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"told to fail"}"#.to_owned()),
        "empty" => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::empty()).into_response(),
        "null" => json(StatusCode::OK, "null".to_owned()),
        "text" => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
        "hang" => std::future::pending().await,
        other => {
            if let Some(ms) = other.strip_prefix("sleep:").and_then(|ms| ms.parse::<u64>().ok()) {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                return json(StatusCode::OK, "{}".to_owned());
            }
            if let Some(code) = other.strip_prefix("exit:").and_then(|c| c.parse::<i32>().ok()) {
                println!("test-handler exiting with {code}");
                std::process::exit(code);
            }
            match other.strip_prefix("respond:") {
                Some(raw) => json(StatusCode::OK, raw.to_owned()),
                None => json(StatusCode::INTERNAL_SERVER_ERROR, format!(r#"{{"error":"unknown behaviour {other}"}}"#)),
            }
        }
    }
}
