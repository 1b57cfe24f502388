//! The end-to-end testbed: the emulator, the emulated Functions host running the real `handler` binary, and
//! helpers that wait for conditions (never for time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use azure_emulator::host::{HostHandle, HostOptions};
use azure_emulator::reqlog::RequestRecord;
use azure_emulator::scenario::{Change, Scenario};
use azure_emulator::servicebus::{Message, NewMessage};
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

pub const NAMESPACE: &str = "northwind-onboarding";
pub const QUEUE: &str = "onboarding";
pub const DLQ: &str = "onboarding/$DeadLetterQueue";
pub const ALL_EVENTS: &str = "onboarding-events/subscriptions/all";
pub const SAS_KEY: &str = "ZGVtby1vbmx5LW5vdC1hLXNlY3JldC1rZXktMDAwMDAwMDA=";

pub const CONTOSO_ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata";
pub const UAMI_ID: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";
pub const APP_CLIENT_ID: &str = "88888888-8888-8888-8888-888888888888";

/// Generous: a condition that does not hold by then is a failure, not flakiness.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn sample_scenario() -> Scenario {
    let text = std::fs::read_to_string(repo_root().join("samples/scenario.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn sample_message(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("samples").join(name)).unwrap()
}

/// A message body like the good sample, with other values.
pub fn onboarding(id: &str, tenant: &str, account: &str, vault: &str, key: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": "1.0",
        "onboardingId": id,
        "requestedAt": "2026-11-29T10:00:00Z",
        "customer": { "tenantId": tenant },
        "storageAccount": { "resourceId": account },
        "key": { "vaultUri": vault, "name": key }
    }))
    .unwrap()
}

pub fn contoso(id: &str) -> Vec<u8> {
    onboarding(
        id,
        "22222222-2222-2222-2222-222222222222",
        CONTOSO_ACCOUNT,
        "https://contoso-kv.vault.azure.net/",
        "cmk",
    )
}

/// App settings for the sample scenario, with short delays (configuration, not sleeps).
pub fn app_settings(emulator_url: &str) -> BTreeMap<String, String> {
    [
        ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
        ("ServiceBusConnection__fullyQualifiedNamespace", "northwind-onboarding.servicebus.windows.net"),
        ("CMK_ONBOARDING_QUEUE", QUEUE),
        ("CMK_EVENTS_TOPIC", "onboarding-events"),
        ("CMK_AZURE_CLOUD", "AzureCloud"),
        ("CMK_UAMI_RESOURCE_ID", UAMI_ID),
        ("CMK_UAMI_CLIENT_ID", "55555555-5555-5555-5555-555555555555"),
        ("CMK_APP_CLIENT_ID", APP_CLIENT_ID),
        ("CMK_APP_OBJECT_ID", "77777777-7777-7777-7777-777777777777"),
        ("CMK_ALLOWED_SCOPES", "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers"),
        ("CMK_RETRY_BASE_DELAY_MS", "10"),
        ("CMK_RETRY_MAX_DELAY_MS", "100"),
        ("CMK_RETRY_BUDGET_SECONDS", "20"),
        ("CMK_DELAYED_RETRY_BASE_SECONDS", "1"),
        ("CMK_DELAYED_RETRY_MAX_SECONDS", "1"),
        ("CMK_CUSTOMER_RETRY_BASE_SECONDS", "1"),
        ("CMK_CUSTOMER_RETRY_MAX_SECONDS", "1"),
        ("CMK_LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("CMK_TEST_PROXY_URL".to_owned(), emulator_url.to_owned())])
    .collect()
}

/// One emulator + host + handler. Dropping it stops everything.
pub struct TestBed {
    pub emulator: Emulator,
    pub host: HostHandle,
    _app_root: TempDir,
}

impl TestBed {
    pub async fn start() -> Self {
        Self::start_with(sample_scenario(), &[]).await
    }

    pub async fn start_with(scenario: Scenario, overrides: &[(&str, &str)]) -> Self {
        let emulator = Emulator::start(EmulatorOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            scenario: Some(scenario),
            host: None,
        })
        .await
        .expect("emulator starts");
        let app_root = TempDir::new();
        assemble_app(app_root.path());
        let mut settings = app_settings(emulator.url());
        for (k, v) in overrides {
            settings.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut options = HostOptions::new(app_root.path(), settings);
        options.init_timeout = Duration::from_secs(30);
        let host =
            azure_emulator::host::start(emulator.shared().clone(), options).await.expect("host starts the handler");
        Self { emulator, host, _app_root: app_root }
    }

    /// Enqueues an onboarding message the way an upstream system would.
    pub fn send(&self, body: &[u8], message_id: &str) {
        let mut message = NewMessage::new(body.to_vec());
        message.message_id = Some(message_id.to_owned());
        message.content_type = Some("application/json".to_owned());
        message.correlation_id = Some(format!("corr-{message_id}"));
        self.send_message(message);
    }

    pub fn send_message(&self, message: NewMessage) {
        self.emulator.shared().bus.send(NAMESPACE, QUEUE, message).expect("enqueue");
    }

    pub fn peek(&self, entity: &str) -> Vec<Message> {
        self.emulator.shared().bus.peek(NAMESPACE, entity, 0, 10_000).expect("peek")
    }

    /// Every event on the `all` subscription, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.peek(ALL_EVENTS).iter().map(|m| serde_json::from_slice(&m.body).expect("event is JSON")).collect()
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        let suffix = format!(".{kind}.v1");
        self.events().into_iter().filter(|e| e["type"].as_str().is_some_and(|t| t.ends_with(&suffix))).collect()
    }

    pub fn dead_letters(&self) -> Vec<Message> {
        self.peek(DLQ)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.emulator.shared().log.list(None)
    }

    pub fn apply(&self, changes: Vec<Change>) {
        self.emulator.shared().apply(&changes).expect("changes apply");
    }

    pub fn state(&self) -> Value {
        let world = self.emulator.shared().world.lock().unwrap();
        serde_json::json!({ "arm": world.arm.dump(), "keyVault": world.vaults.dump() })
    }

    /// The storage account as ARM shows it.
    pub fn storage_account(&self, id: &str) -> Value {
        let dump = self.state();
        find_by_id(&dump["arm"], id).unwrap_or_else(|| panic!("no storage account {id} in {dump}"))
    }

    /// Waits until `condition` holds, polling; panics with `what` after [`WAIT`].
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            if started.elapsed() > WAIT {
                panic!(
                    "timed out waiting for: {what}\nevents: {:#?}\ndead letters: {}\nhandler output (last 40):\n{}",
                    self.events(),
                    self.dead_letters().len(),
                    self.host.handler_output().iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the queue to hold nothing active, scheduled or locked.
    pub async fn wait_queue_idle(&self) {
        self.wait_until("the onboarding queue to be empty", |bed| bed.peek(QUEUE).is_empty()).await;
    }
}

/// Finds an object with `"id": id` (case-insensitive) anywhere in a JSON tree.
pub fn find_by_id(value: &Value, id: &str) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.get("id").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(id))
                && map.contains_key("properties")
            {
                return Some(value.clone());
            }
            map.values().find_map(|v| find_by_id(v, id))
        }
        Value::Array(items) => items.iter().find_map(|v| find_by_id(v, id)),
        _ => None,
    }
}

/// Lays out a function app the way the deployment package does: `host.json`, one folder per function, `handler`.
pub fn assemble_app(root: &Path) {
    let repo = repo_root();
    std::fs::copy(repo.join("host.json"), root.join("host.json")).unwrap();
    for entry in std::fs::read_dir(repo.join("function-definitions")).unwrap() {
        let entry = entry.unwrap();
        let target = root.join(entry.file_name());
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(entry.path().join("function.json"), target.join("function.json")).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_handler"), root.join("handler")).unwrap();
}

/// A directory under cargo's per-target temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The calls a request log holds, as `METHOD host path` lines (query strings dropped), in order.
pub fn call_lines(records: &[RequestRecord]) -> Vec<String> {
    records.iter().map(|r| format!("{} {} {}", r.method, r.host, r.path)).collect()
}
