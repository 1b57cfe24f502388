//! The testbed for `cmkctl`'s tests: the emulator (with or without the emulated Functions host running the real
//! `handler` binary), dead letters seeded the way the broker makes them, and `cmkctl` run as a child process.
//! Adapted from `handler/tests/e2e/testbed.rs`; waits are for conditions, never for time.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use azure_emulator::host::{HostHandle, HostOptions};
use azure_emulator::scenario::{Change, Scenario};
use azure_emulator::servicebus::{Message, NewMessage};
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

pub const NAMESPACE: &str = "northwind-onboarding";
pub const QUEUE: &str = "onboarding";
pub const DLQ: &str = "onboarding/$DeadLetterQueue";
pub const ALL_EVENTS: &str = "onboarding-events/subscriptions/all";
pub const SAS_KEY: &str = "ZGVtby1vbmx5LW5vdC1hLXNlY3JldC1rZXktMDAwMDAwMDA=";
pub const CONTOSO_TENANT: &str = "22222222-2222-2222-2222-222222222222";
pub const CONTOSO_ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata";
pub const FABRIKAM_TENANT: &str = "44444444-4444-4444-4444-444444444444";
pub const FABRIKAM_ACCOUNT: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/fabrikamdata";
pub const UAMI_ID: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";
pub const APP_CLIENT_ID: &str = "88888888-8888-8888-8888-888888888888";

/// Generous: a condition that does not hold by then is a failure, not flakiness.
pub const WAIT: Duration = Duration::from_secs(90);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn sample_scenario() -> Scenario {
    let text = std::fs::read_to_string(repo_root().join("samples/scenario.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn connection_string() -> String {
    format!(
        "Endpoint=sb://{NAMESPACE}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={SAS_KEY}"
    )
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
    onboarding(id, CONTOSO_TENANT, CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk")
}

pub fn fabrikam(id: &str) -> Vec<u8> {
    onboarding(id, FABRIKAM_TENANT, FABRIKAM_ACCOUNT, "https://fabrikam-kv.vault.azure.net/", "cmk")
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

/// The `handler` binary `cargo test --workspace` built next to this test binary (`target/debug/handler`).
pub fn handler_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).map(|dir| dir.join("handler")).unwrap();
    assert!(
        path.exists(),
        "the handler binary is not built at {}: run `cargo build -p handler` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// The emulator, and optionally the emulated host running the real handler. Dropping it stops everything.
pub struct TestBed {
    pub emulator: Emulator,
    pub host: Option<HostHandle>,
    pub settings: BTreeMap<String, String>,
    pub dir: TempDir,
}

impl TestBed {
    /// The emulator alone: the broker without a consumer, so queue contents stay where `cmkctl` put them.
    pub async fn broker_only() -> Self {
        let emulator = start_emulator().await;
        let settings = app_settings(emulator.url());
        Self { emulator, host: None, settings, dir: TempDir::new() }
    }

    /// The whole pipeline, with settings overridden.
    pub async fn with_handler(overrides: &[(&str, &str)]) -> Self {
        let emulator = start_emulator().await;
        let dir = TempDir::new();
        let app_root = dir.path().join("app");
        std::fs::create_dir_all(&app_root).unwrap();
        assemble_app(&app_root);
        let mut settings = app_settings(emulator.url());
        for (k, v) in overrides {
            settings.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut options = HostOptions::new(&app_root, settings.clone());
        options.init_timeout = Duration::from_secs(30);
        let host =
            azure_emulator::host::start(emulator.shared().clone(), options).await.expect("host starts the handler");
        Self { emulator, host: Some(host), settings, dir }
    }

    /// A `local.settings.json` of the app, for `validate`/`enqueue`.
    pub fn settings_file(&self) -> PathBuf {
        let path = self.dir.path().join("local.settings.json");
        let values: serde_json::Map<String, Value> =
            self.settings.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        std::fs::write(&path, serde_json::to_vec(&serde_json::json!({ "Values": values })).unwrap()).unwrap();
        path
    }

    /// Enqueues an onboarding message the way an upstream system would.
    pub fn send(&self, body: &[u8], message_id: &str) {
        let mut message = NewMessage::new(body.to_vec());
        message.message_id = Some(message_id.to_owned());
        message.content_type = Some("application/json".to_owned());
        message.correlation_id = Some(format!("corr-{message_id}"));
        self.emulator.shared().bus.send(NAMESPACE, QUEUE, message).expect("enqueue");
    }

    pub fn send_message(&self, message: NewMessage) {
        self.emulator.shared().bus.send(NAMESPACE, QUEUE, message).expect("enqueue");
    }

    /// Puts a message in the dead-letter queue as the handler's marked copy ends up there: sent with the handler's
    /// `cmk-*` marks, then dead-lettered by the broker.
    pub async fn seed_dead_letter(&self, body: &[u8], message_id: &str, reason: &str) {
        let bus = &self.emulator.shared().bus;
        let mut message = NewMessage::new(body.to_vec());
        message.message_id = Some(message_id.to_owned());
        message.content_type = Some("application/json".to_owned());
        message.correlation_id = Some(format!("corr-{message_id}"));
        for (name, value) in [
            ("cmk-dead-letter-reason", Value::from(reason)),
            ("cmk-dead-letter-description", Value::from(format!("{reason} (seeded)"))),
            ("cmk-attempt", Value::from(3)),
            ("cmk-first-attempt-at", Value::from("2026-11-29T10:00:00Z")),
            ("cmk-original-message-id", Value::from(format!("orig-{message_id}"))),
            ("upstream-system", Value::from("signup")),
        ] {
            message.application_properties.insert(name.to_owned(), value);
        }
        bus.send(NAMESPACE, QUEUE, message).expect("send");
        let delivered =
            bus.receive(NAMESPACE, QUEUE, Duration::from_secs(5)).await.expect("receive").expect("a message");
        bus.dead_letter(NAMESPACE, QUEUE, delivered.lock_token, "MaxDeliveryCountExceeded", "seeded")
            .expect("dead-letter");
    }

    pub fn peek(&self, entity: &str) -> Vec<Message> {
        self.emulator.shared().bus.peek(NAMESPACE, entity, 0, 100_000).expect("peek")
    }

    pub fn dead_letters(&self) -> Vec<Message> {
        self.peek(DLQ)
    }

    pub fn queue(&self) -> Vec<Message> {
        self.peek(QUEUE)
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        let suffix = format!(".{kind}.v1");
        self.peek(ALL_EVENTS)
            .iter()
            .map(|m| serde_json::from_slice::<Value>(&m.body).expect("event is JSON"))
            .filter(|e| e["type"].as_str().is_some_and(|t| t.ends_with(&suffix)))
            .collect()
    }

    pub fn apply(&self, changes: Vec<Change>) {
        self.emulator.shared().apply(&changes).expect("changes apply");
    }

    /// Waits until `condition` holds, polling; panics with `what` after [`WAIT`].
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            if started.elapsed() > WAIT {
                let output = self.host.as_ref().map(|h| h.handler_output()).unwrap_or_default();
                panic!(
                    "timed out waiting for: {what}\ndead letters: {}\nhandler output (last 30):\n{}",
                    self.dead_letters().len(),
                    output.iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `cmkctl` against this testbed, with SAS auth.
    pub fn cmkctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmkctl"));
        command
            .args(["--emulator", self.emulator.url(), "--connection-string", &connection_string()])
            .args(args)
            .env_remove("CMK_SERVICEBUS_NAMESPACE")
            .env_remove("CMK_FUNCTION_APP_URL")
            .env_remove("CMKCTL_SETTINGS")
            .env("CMKCTL_OPERATOR", "test-operator")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs `cmkctl` to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        let output = tokio::time::timeout(WAIT, self.cmkctl(args).output()).await.expect("cmkctl finishes").unwrap();
        eprintln!("cmkctl {args:?} -> {:?}\nstderr: {}", output.status.code(), String::from_utf8_lossy(&output.stderr));
        output
    }
}

async fn start_emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Some(sample_scenario()),
        host: None,
    })
    .await
    .expect("emulator starts")
}

pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
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
    std::os::unix::fs::symlink(handler_binary(), root.join("handler")).unwrap();
}

/// A directory under cargo's per-target temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cmkctl-{}-{}",
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
