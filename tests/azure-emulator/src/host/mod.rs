//! The Functions host: reads `host.json` and `function.json`, runs the custom handler and dispatches invocations.
//!
//! Normative source: `shared/reference/functions-custom-handler.md` §8. What is emulated and what differs from the
//! real host is in `docs/host.md`.

mod access;
mod binding_rules;
mod config;
mod http_trigger;
mod invoke;
mod json;
mod outputs;
mod payload;
mod process;
mod result;
mod runtime;
mod sb_outputs;
mod schema;
mod settings;
mod timer;
mod trigger;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::Req;
use crate::state::Shared;

pub use http_trigger::match_route;
pub use invoke::HOST_VERSION;

/// How to run the function app.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Folder with `host.json`, one sub-folder per function and the handler executable.
    pub app_root: PathBuf,
    /// App settings, as in `local.settings.json` `Values`; passed to the handler as environment variables.
    pub app_settings: BTreeMap<String, String>,
    /// `HttpWorkerOptions.InitializationTimeout`: how long the handler may take to answer `GET /` (30 s).
    pub init_timeout: Duration,
    /// How long invocations wait for a restarting handler; default `(3 + 1) × init_timeout`, as the host.
    pub hold_timeout: Option<Duration>,
    /// Overrides `functionTimeout` from `host.json` (which cannot go below 1 s), for fast tests.
    pub function_timeout: Option<Duration>,
    /// The master (admin) key; generated when `None`.
    pub master_key: Option<String>,
    /// The default function key; generated when `None`.
    pub function_key: Option<String>,
    /// Start the host again after it shuts down (the third handler error within 30 minutes), as the platform does in
    /// Azure; `false` (the default) leaves it down so a test can see the shutdown.
    pub platform_restarts_host: bool,
}

impl HostOptions {
    pub fn new(app_root: impl Into<PathBuf>, app_settings: BTreeMap<String, String>) -> Self {
        Self {
            app_root: app_root.into(),
            app_settings,
            init_timeout: Duration::from_secs(30),
            hold_timeout: None,
            function_timeout: None,
            master_key: None,
            function_key: None,
            platform_restarts_host: false,
        }
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        Self::new(PathBuf::new(), BTreeMap::new())
    }
}

/// Host state the HTTP side needs (HTTP triggers).
#[derive(Debug, Default)]
pub struct HostState {
    runtime: Mutex<Option<Arc<runtime::Runtime>>>,
}

impl HostState {
    /// Status for `/_emulator/host`: handler pid, port, state, restarts, invocation counts, last error, keys.
    pub fn status(&self) -> serde_json::Value {
        match self.current() {
            Some(runtime) => runtime.status(),
            None => serde_json::json!({ "state": "not-running" }),
        }
    }

    fn current(&self) -> Option<Arc<runtime::Runtime>> {
        self.runtime.lock().expect("host lock").clone()
    }

    fn set(&self, runtime: Option<Arc<runtime::Runtime>>) {
        *self.runtime.lock().expect("host lock") = runtime;
    }
}

/// A running host; `stop` (or dropping it) ends the handler process and the trigger listeners.
#[derive(Debug)]
pub struct HostHandle {
    runtime: Arc<runtime::Runtime>,
    shared: Weak<Shared>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl HostHandle {
    pub async fn stop(mut self) {
        self.stop_listeners();
        self.runtime.worker.stop().await;
    }

    /// Same as `/_emulator/host`.
    pub fn status(&self) -> serde_json::Value {
        self.runtime.status()
    }

    /// Every line the handler printed on stdout or stderr so far, across restarts.
    pub fn handler_output(&self) -> Vec<String> {
        self.runtime.worker.output()
    }

    /// The `Logs` of successful invocations, as `Function.<Name>.User: <line>`.
    pub fn function_logs(&self) -> Vec<String> {
        self.runtime.function_logs()
    }

    /// SIGKILLs the handler, as a crash: the restart policy applies.
    pub fn kill_handler(&self) {
        self.runtime.worker.kill();
    }

    /// `(master key, default function key)`.
    pub fn keys(&self) -> (String, String) {
        (self.runtime.keys.master.clone(), self.runtime.keys.function.clone())
    }

    /// Waits until the handler answers (after a restart, say) and returns its port.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<u16, String> {
        self.runtime.worker.wait_ready(timeout).await
    }

    fn stop_listeners(&mut self) {
        for listener in self.listeners.drain(..) {
            listener.abort();
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.host.set(None);
        }
    }
}

impl Drop for HostHandle {
    fn drop(&mut self) {
        self.stop_listeners();
        self.runtime.worker.request_stop();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Config(String),
    #[error("custom handler: {0}")]
    Handler(String),
}

/// Reads the app, starts the handler, waits until it answers `GET /`, then starts the trigger listeners.
pub async fn start(shared: Arc<Shared>, options: HostOptions) -> Result<HostHandle, HostError> {
    let app_root = std::path::absolute(&options.app_root)
        .map_err(|e| HostError::Config(format!("{}: {e}", options.app_root.display())))?;
    let settings = settings::Settings::new(options.app_settings.clone());
    let mut config = config::load(&app_root, &settings).map_err(HostError::Config)?;
    if let Some(timeout) = options.function_timeout {
        config.host.function_timeout = Some(timeout);
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let mut spec = worker_spec(&shared, &app_root, &config.host, &settings, options.init_timeout);
    spec.platform_restarts_host = options.platform_restarts_host;
    let keys = runtime::Keys {
        master: options.master_key.clone().unwrap_or_else(|| runtime::Keys::generate().master),
        function: options.function_key.clone().unwrap_or_else(|| runtime::Keys::generate().function),
    };
    let hold = options.hold_timeout.unwrap_or(options.init_timeout * 4);
    let worker = process::Worker::start(spec);
    let runtime =
        Arc::new(runtime::Runtime::new(config, settings, worker.clone(), hold, keys, Arc::downgrade(&shared)));
    let (listeners, timers) = match trigger::listeners(&runtime, shared.bus.suffix())
        .and_then(|listeners| Ok((listeners, timer::timers(&runtime)?)))
    {
        Ok(found) => found,
        Err(message) => {
            worker.stop().await;
            return Err(HostError::Config(message));
        }
    };
    if let Err(message) = worker.wait_ready(hold).await {
        worker.stop().await;
        return Err(HostError::Handler(message));
    }
    shared.host.set(Some(runtime.clone()));
    let mut listeners = trigger::spawn(&shared, &runtime, listeners);
    let started = shared.clock.now();
    listeners.extend(timers.into_iter().map(|t| tokio::spawn(timer::run(shared.clone(), runtime.clone(), t, started))));
    Ok(HostHandle { runtime, shared: Arc::downgrade(&shared), listeners })
}

/// The process as `HttpWorkerProcess` starts it (reference §4.1, §4.2), plus App Service's managed-identity variables.
fn worker_spec(
    shared: &Shared,
    app_root: &Path,
    host: &config::HostConfig,
    settings: &settings::Settings,
    init_timeout: Duration,
) -> process::WorkerSpec {
    let description = &host.handler;
    let executable = settings.expand_dropping_unset(&description.default_executable_path);
    let candidate = app_root.join(&executable);
    // Relative to the app root when that file exists, else a command looked up on PATH.
    let program = if candidate.is_file() { candidate } else { PathBuf::from(executable) };
    let working_directory = match description.working_directory.as_deref().map(|d| settings.expand_dropping_unset(d)) {
        Some(dir) if !dir.is_empty() => app_root.join(dir),
        _ => app_root.to_path_buf(),
    };
    let arguments = description
        .arguments
        .iter()
        .map(|a| settings.expand_dropping_unset(a))
        // The host joins arguments into one command line, so one that expanded to nothing disappears.
        .filter(|a| !a.is_empty())
        .collect();
    let mut environment: Vec<(String, String)> =
        settings.app_settings().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    environment.push(("FUNCTIONS_APP_ROOT_PATH".into(), app_root.display().to_string()));
    environment.push(("IDENTITY_ENDPOINT".into(), format!("{}/msi/token", shared.base_url)));
    environment.push(("IDENTITY_HEADER".into(), shared.identity_header.clone()));
    process::WorkerSpec {
        program,
        arguments,
        working_directory,
        environment,
        fixed_port: host.port,
        init_timeout,
        platform_restarts_host: false,
    }
}

/// HTTP-triggered functions under `/api/`.
pub async fn http_trigger(shared: &Shared, req: Req) -> Response {
    match shared.host.current() {
        Some(runtime) => http_trigger::serve(&runtime, req).await,
        None => (StatusCode::NOT_FOUND, "no function app is running in this emulator").into_response(),
    }
}
