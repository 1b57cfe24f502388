//! A running function app: its configuration, the supervised handler, the function keys and the counters that
//! `/_emulator/host` shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use uuid::Uuid;

use super::config::{AppConfig, FunctionConfig};
use super::json::Json;
use super::process::{Worker, WorkerState};
use super::result::{self, Outputs};
use super::settings::Settings;
use super::{invoke, sb_outputs};
use crate::state::Shared;

/// The master (admin) key and the default function key.
#[derive(Debug, Clone)]
pub struct Keys {
    pub master: String,
    pub function: String,
}

impl Keys {
    pub fn generate() -> Keys {
        Keys { master: random_key(), function: random_key() }
    }
}

/// Keys look like the host's: 56 URL-safe base64 characters.
fn random_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0_u8; 42];
    rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    /// Deliveries with `DeliveryCount` above 1.
    redelivered: AtomicU64,
    /// Completes and abandons the broker refused (the lock was lost meanwhile).
    settle_failed: AtomicU64,
    /// The highest `DeliveryCount` delivered so far.
    max_delivery_count: AtomicU64,
}

#[derive(Debug)]
pub struct Runtime {
    pub config: AppConfig,
    pub settings: Settings,
    pub worker: Arc<Worker>,
    pub client: reqwest::Client,
    /// How long invocations wait for a (re)starting handler.
    pub hold: Duration,
    pub keys: Keys,
    /// Weak: `Shared` owns the `HostState` that owns this runtime.
    pub shared: Weak<Shared>,
    counters: Counters,
    last_error: Mutex<Option<String>>,
    function_logs: Mutex<Vec<String>>,
    /// Each Service Bus trigger's listener: `None` while it receives, else why it cannot.
    listeners: Mutex<BTreeMap<String, ListenerState>>,
}

/// What `/_emulator/host` shows about one trigger listener.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenerState {
    entity: String,
    error: Option<String>,
    /// Receive attempts refused so far.
    refusals: u64,
}

impl Runtime {
    pub fn new(
        config: AppConfig,
        settings: Settings,
        worker: Arc<Worker>,
        hold: Duration,
        keys: Keys,
        shared: Weak<Shared>,
    ) -> Self {
        // Connections to the handler are pooled keep-alive HTTP/1.1, like the host's HttpClient.
        let client = reqwest::Client::builder().no_proxy().build().expect("http client");
        Self {
            config,
            settings,
            worker,
            client,
            hold,
            keys,
            shared,
            counters: Counters::default(),
            last_error: Mutex::default(),
            function_logs: Mutex::default(),
            listeners: Mutex::default(),
        }
    }

    /// Records whether `function`'s listener may receive from `entity`; logs each change, as the host logs the
    /// processor's errors (once per change here, not on every retry).
    pub fn record_listener(&self, function: &str, entity: &str, error: Option<&String>) {
        let mut listeners = self.listeners.lock().expect("host lock");
        let previous = listeners.get(function);
        let refusals = previous.map_or(0, |p| p.refusals) + u64::from(error.is_some());
        let unchanged = previous.is_some_and(|p| p.entity == entity && p.error.as_ref() == error);
        let state = ListenerState { entity: entity.to_owned(), error: error.cloned(), refusals };
        if unchanged {
            listeners.insert(function.to_owned(), state);
            return;
        }
        match &state.error {
            Some(error) => tracing::error!(
                function,
                entity,
                "Message processing error (Action=Receive, EntityPath={entity}): UnauthorizedAccess: {error}"
            ),
            None => tracing::info!(function, entity, "the Service Bus listener receives"),
        }
        listeners.insert(function.to_owned(), state);
    }

    /// `Logs` of a successful answer go to the function's user log (`Function.<Name>.User`) at Information.
    pub fn log_answer(&self, function: &str, answer: &Json) {
        let mut logs = self.function_logs.lock().expect("host lock");
        for line in invoke::logs(answer) {
            tracing::info!(target: "azure_emulator::host::function", function, "{line}");
            logs.push(format!("Function.{function}.User: {line}"));
        }
    }

    /// Counts a delivery as the host's metrics would see it.
    pub fn record_delivery(&self, delivery_count: u32) {
        self.counters.max_delivery_count.fetch_max(u64::from(delivery_count), Ordering::Relaxed);
        if delivery_count > 1 {
            self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_settle_failed(&self) {
        self.counters.settle_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_ok(&self) {
        self.counters.ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self, function: &str, message: &str) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(function, message, "function invocation failed");
        *self.last_error.lock().expect("host lock") = Some(format!("{function}: {message}"));
    }

    /// A timeout fails the invocation and restarts the handler process (reference §3.2).
    pub fn record_timeout(&self, function: &str) {
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        let timeout = self.config.host.function_timeout.unwrap_or(Duration::MAX);
        self.record_failure(
            function,
            &format!(
                "Timeout value of {timeout:?} exceeded by function 'Functions.{function}'. Restarting worker process."
            ),
        );
        self.worker.restart();
    }

    pub fn function_logs(&self) -> Vec<String> {
        self.function_logs.lock().expect("host lock").clone()
    }

    /// Binds the outputs of a successful answer the way the host does ([`result::resolve`]), then sends every
    /// declared `serviceBus` output, in order; the first failure fails the invocation (messages already sent stay
    /// sent). Returns the bound values (the HTTP response is among them).
    pub async fn send_service_bus_outputs(
        &self,
        function: &FunctionConfig,
        answer: &Json,
        invocation_id: Uuid,
    ) -> Result<Outputs, String> {
        let Some(shared) = self.shared.upgrade() else { return Err("the emulator is shutting down".into()) };
        let outputs = result::resolve(answer, function)?;
        sb_outputs::send(&shared, &self.settings, function, &outputs, invocation_id)?;
        Ok(outputs)
    }

    pub fn status(&self) -> serde_json::Value {
        let state = self.worker.state();
        let (pid, port) = match state {
            WorkerState::Ready { port, pid } => (Some(pid), Some(port)),
            _ => (None, None),
        };
        let shutdown_reason = match &state {
            WorkerState::ShutDown(reason) => Some(reason.clone()),
            _ => None,
        };
        serde_json::json!({
            "state": state.name(),
            "pid": pid,
            "port": port,
            "restarts": self.worker.restarts(),
            "hostRestarts": self.worker.host_restarts(),
            "invocations": {
                "ok": self.counters.ok.load(Ordering::Relaxed),
                "failed": self.counters.failed.load(Ordering::Relaxed),
                "timedOut": self.counters.timed_out.load(Ordering::Relaxed),
                "redelivered": self.counters.redelivered.load(Ordering::Relaxed),
                "settleFailed": self.counters.settle_failed.load(Ordering::Relaxed),
                "maxDeliveryCount": self.counters.max_delivery_count.load(Ordering::Relaxed),
            },
            "lastError": self.last_error.lock().expect("host lock").clone().or_else(|| self.worker.last_error()),
            "handlerLastError": self.worker.last_error(),
            "shutdownReason": shutdown_reason,
            "keys": { "master": self.keys.master, "function": self.keys.function },
            "functions": self.config.functions.iter().map(|f| serde_json::json!({
                "name": f.name,
                "trigger": f.trigger().map(|t| t.kind.clone()),
                "disabled": f.disabled,
            })).collect::<Vec<_>>(),
            "warnings": self.config.warnings,
            "listeners": self.listeners.lock().expect("host lock").iter().map(|(function, state)| serde_json::json!({
                "function": function,
                "entity": state.entity,
                "state": if state.error.is_some() { "unauthorized" } else { "listening" },
                "error": state.error,
                "refusals": state.refusals,
            })).collect::<Vec<_>>(),
        })
    }
}
