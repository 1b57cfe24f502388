//! The Functions host: reads `host.json` and `function.json`, runs the custom handler and dispatches invocations.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::http::Req;
use crate::state::Shared;

/// How to run the function app.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Folder with `host.json`, one sub-folder per function and the handler executable.
    pub app_root: PathBuf,
    /// App settings, as in `local.settings.json` `Values`; passed to the handler as environment variables.
    pub app_settings: BTreeMap<String, String>,
}

/// Host state the HTTP side needs (HTTP triggers).
#[derive(Debug, Default)]
pub struct HostState {}

impl HostState {
    /// Status for `/_emulator/host`: handler pid, port, restarts, invocation counts, function keys.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// A running host; `stop` ends the handler process.
#[derive(Debug)]
pub struct HostHandle {}

impl HostHandle {
    pub async fn stop(self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Config(String),
}

pub async fn start(_shared: Arc<Shared>, _options: HostOptions) -> Result<HostHandle, HostError> {
    Err(HostError::Config("not implemented yet".into()))
}

/// HTTP-triggered functions under `/api/`.
pub async fn http_trigger(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "host").into_response()
}
