//! The whole pipeline on the local testbed, for tests and benchmarks: the emulator loaded with
//! `samples/scenario.json`, the emulated Functions host running a real `handler` binary laid out like the
//! deployment package, and helpers that wait for conditions (never for time).
//!
//! The handler binary is passed in, because only the handler crate's own tests know where cargo built it
//! (`env!("CARGO_BIN_EXE_handler")`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use azure_emulator::host::{HostHandle, HostOptions};
use azure_emulator::reqlog::RequestRecord;
use azure_emulator::scenario::{Change, Scenario, StorageAccount};
use azure_emulator::servicebus::{Message, NewMessage};
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

pub mod soak;

pub const NAMESPACE: &str = "northwind-onboarding";
pub const QUEUE: &str = "onboarding";
pub const DLQ: &str = "onboarding/$DeadLetterQueue";
pub const ALL_EVENTS: &str = "onboarding-events/subscriptions/all";
/// The sample namespace's SAS key (a demo value, in `samples/scenario.json`).
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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

pub fn sample_scenario() -> Scenario {
    let text = std::fs::read_to_string(repo_root().join("samples/scenario.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The setting for runs where one customer key protects many fresh accounts (bulk tests, the soak, benchmarks): Key
/// Vault holds at most 15 tags per key, so the key cannot carry a consent tag per account, and such runs act as an ISV
/// that binds tenants to accounts upstream would (`CMK_REQUIRE_KEY_CONSENT=false`, docs/integrating.md). The consent
/// check costs no call (GET key returns the tags), so the figures are the same.
pub const ONE_KEY_MANY_ACCOUNTS: (&str, &str) = ("CMK_REQUIRE_KEY_CONSENT", "false");

/// A storage account in West Europe with Microsoft-managed keys and nothing else: what bulk tests onboard.
pub fn fresh_storage_account(id: String) -> StorageAccount {
    StorageAccount {
        id,
        location: "westeurope".into(),
        kind: "StorageV2".into(),
        sku: "Standard_LRS".into(),
        identity: None,
        encryption: None,
        tags: Default::default(),
    }
}

/// The longest of a scenario's propagation delays: after it, every change made so far is in force.
pub fn longest_propagation(scenario: &Scenario) -> Duration {
    let delays = &scenario.propagation;
    let longest =
        [delays.service_principal_seconds, delays.role_assignment_seconds, delays.federated_credential_seconds];
    Duration::from_secs(longest.into_iter().max().unwrap_or_default())
}

pub fn sample_message(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("samples").join(name)).unwrap()
}

pub fn connection_string() -> String {
    format!(
        "Endpoint=sb://{NAMESPACE}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={SAS_KEY}"
    )
}

/// An offboarding message (contract v1, `kind: offboarding`) ending onboarding `id` of `account`.
pub fn offboarding(id: &str, tenant: &str, account: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": "1.1",
        "kind": "offboarding",
        "onboardingId": id,
        "requestedAt": "2026-11-29T11:00:00Z",
        "customer": { "tenantId": tenant },
        "storageAccount": { "resourceId": account }
    }))
    .unwrap()
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

/// The SessionId producers set (docs/integrating.md): the storage account's name, lowercase — the last segment of
/// `storageAccount.resourceId`. `None` when the body names no account.
pub fn session_of(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let id = body.pointer("/storageAccount/resourceId")?.as_str()?;
    id.rsplit('/').next().filter(|name| !name.is_empty()).map(str::to_ascii_lowercase)
}

pub fn contoso(id: &str) -> Vec<u8> {
    onboarding(id, CONTOSO_TENANT, CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk")
}

pub fn fabrikam(id: &str) -> Vec<u8> {
    onboarding(id, FABRIKAM_TENANT, FABRIKAM_ACCOUNT, "https://fabrikam-kv.vault.azure.net/", "cmk")
}

/// The demo's app settings (`samples/demo.settings.json`) with shorter delays: configuration, not sleeps.
pub fn app_settings(emulator_url: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("samples/demo.settings.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let mut settings: BTreeMap<String, String> = file["Values"]
        .as_object()
        .expect("Values")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    for (name, value) in [
        ("CMK_RETRY_BASE_DELAY_MS", "10"),
        ("CMK_RETRY_MAX_DELAY_MS", "100"),
        ("CMK_RETRY_BUDGET_SECONDS", "20"),
        ("CMK_DELAYED_RETRY_BASE_SECONDS", "1"),
        ("CMK_DELAYED_RETRY_MAX_SECONDS", "1"),
        ("CMK_CUSTOMER_RETRY_BASE_SECONDS", "1"),
        ("CMK_CUSTOMER_RETRY_MAX_SECONDS", "1"),
        ("RUST_LOG", "info"),
        // The key watch runs on the emulator's clock, which many tests move by minutes: it would probe (and tag) their
        // accounts in between. Once a year here; the key watch's own tests set their schedule.
        ("CMK_WATCH_SCHEDULE", "0 0 0 1 1 *"),
        ("CMK_TEST_PROXY_URL", emulator_url),
    ] {
        settings.insert(name.to_owned(), value.to_owned());
    }
    settings
}

/// The emulator and, unless started broker-only, the emulated host running the handler. Dropping it stops everything.
#[derive(Debug)]
pub struct TestBed {
    pub emulator: Emulator,
    host: Option<HostHandle>,
    pub settings: BTreeMap<String, String>,
    pub dir: TempDir,
}

impl TestBed {
    /// The whole pipeline with the sample scenario.
    pub async fn start(handler_binary: &Path) -> Self {
        Self::start_with(handler_binary, sample_scenario(), &[]).await
    }

    /// The whole pipeline with another scenario and some settings overridden.
    pub async fn start_with(handler_binary: &Path, scenario: Scenario, overrides: &[(&str, &str)]) -> Self {
        Self::start_custom(handler_binary, scenario, overrides, |_| {}).await
    }

    /// Like [`TestBed::start_with`], with a chance to change the assembled app (its `function.json` files, say)
    /// before the host reads it.
    pub async fn start_custom(
        handler_binary: &Path,
        scenario: Scenario,
        overrides: &[(&str, &str)],
        customize: impl FnOnce(&Path),
    ) -> Self {
        Self::start_configured(handler_binary, scenario, overrides, customize, |_| {}).await
    }

    /// Like [`TestBed::start_custom`], with a chance to change the host's options too.
    pub async fn start_configured(
        handler_binary: &Path,
        scenario: Scenario,
        overrides: &[(&str, &str)],
        customize: impl FnOnce(&Path),
        configure: impl FnOnce(&mut HostOptions),
    ) -> Self {
        let emulator = start_emulator(scenario).await;
        let dir = TempDir::new();
        let app_root = dir.path().join("app");
        assemble_app(&app_root, handler_binary);
        customize(&app_root);
        let mut settings = app_settings(emulator.url());
        for (k, v) in overrides {
            settings.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut options = HostOptions::new(&app_root, settings.clone());
        options.init_timeout = Duration::from_secs(30);
        configure(&mut options);
        let host =
            azure_emulator::host::start(emulator.shared().clone(), options).await.expect("host starts the handler");
        Self { emulator, host: Some(host), settings, dir }
    }

    /// One more instance of the function app on the same emulator (its own host and handler process, its own
    /// session pumps on the same queue), as a scale-out adds one. Keep the handle: dropping it stops the instance.
    pub async fn start_instance(&self) -> HostHandle {
        let mut options = HostOptions::new(self.dir.path().join("app"), self.settings.clone());
        options.init_timeout = Duration::from_secs(30);
        azure_emulator::host::start(self.emulator.shared().clone(), options).await.expect("host starts the handler")
    }

    /// The emulator alone: the broker without a consumer, so queue contents stay where a test put them.
    pub async fn broker_only() -> Self {
        let emulator = start_emulator(sample_scenario()).await;
        let settings = app_settings(emulator.url());
        Self { emulator, host: None, settings, dir: TempDir::new() }
    }

    /// The emulated host; panics on a broker-only testbed.
    pub fn host(&self) -> &HostHandle {
        self.host.as_ref().expect("this testbed runs no handler")
    }

    /// Enqueues an onboarding message the way an upstream system would, in its account's session.
    pub fn send(&self, body: &[u8], message_id: &str) {
        let mut message = NewMessage::new(body.to_vec());
        message.message_id = Some(message_id.to_owned());
        message.content_type = Some("application/json".to_owned());
        message.correlation_id = Some(format!("corr-{message_id}"));
        // A body with no account (a hostile one) still needs a session on the session-enabled queue.
        message.session_id = Some(session_of(body).unwrap_or_else(|| format!("no-account-{message_id}")));
        self.send_message(message);
    }

    pub fn send_message(&self, message: NewMessage) {
        self.emulator.shared().bus.send(NAMESPACE, QUEUE, message).expect("enqueue");
    }

    pub fn peek(&self, entity: &str) -> Vec<Message> {
        self.emulator.shared().bus.peek(NAMESPACE, entity, 0, 100_000).expect("peek")
    }

    pub fn queue(&self) -> Vec<Message> {
        self.peek(QUEUE)
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

    /// Moves the emulator's clock forward by `by` (propagation delays, schedules, TTLs), once no onboarding message is
    /// in flight: a jump past a lock's expiry would hand the message to a second delivery while the first still runs.
    pub async fn advance_clock(&self, by: Duration) {
        let shared = self.emulator.shared();
        self.wait_until("no onboarding delivery in flight", |_| shared.locked_messages(NAMESPACE, QUEUE) == 0).await;
        shared.advance_clock(by);
    }

    /// ARM's and Key Vault's state dumps.
    pub fn state(&self) -> Value {
        let shared = self.emulator.shared();
        let now = shared.clock.now();
        let mut world = shared.world.lock().unwrap();
        // What ARM would show now, as `/_emulator/state` does: account creations that are due are done, and the
        // Storage RP's daily key checks due by the emulator's clock have run.
        world.arm.finish_creations(now);
        azure_emulator::arm::daily_key_check(&mut world, now);
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
                let output = self.host.as_ref().map(HostHandle::handler_output).unwrap_or_default();
                panic!(
                    "timed out waiting for: {what}\nevents: {:#?}\ndead letters: {}\nhandler output (last 40):\n{}",
                    self.events(),
                    self.dead_letters().len(),
                    output.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits for the queue to hold nothing active, scheduled or locked.
    pub async fn wait_queue_idle(&self) {
        self.wait_until("the onboarding queue to be empty", |bed| bed.queue().is_empty()).await;
    }
}

async fn start_emulator(scenario: Scenario) -> Emulator {
    Emulator::start(EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None })
        .await
        .expect("emulator starts")
}

/// Finds an object with `"id": id` (case-insensitive) and `properties` anywhere in a JSON tree.
pub fn find_by_id(value: &Value, id: &str) -> Option<Value> {
    match value {
        Value::Object(map) => {
            let matches = map.get("id").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case(id));
            if matches && map.contains_key("properties") {
                return Some(value.clone());
            }
            map.values().find_map(|v| find_by_id(v, id))
        }
        Value::Array(items) => items.iter().find_map(|v| find_by_id(v, id)),
        _ => None,
    }
}

/// Lays out a function app the way the deployment package does: `host.json`, one folder per function, and the
/// handler (a symlink here; `cargo xtask package` copies it).
pub fn assemble_app(root: &Path, handler_binary: &Path) {
    let repo = repo_root();
    std::fs::create_dir_all(root).unwrap();
    std::fs::copy(repo.join("host.json"), root.join("host.json")).unwrap();
    for entry in std::fs::read_dir(repo.join("function-definitions")).unwrap() {
        let entry = entry.unwrap();
        let target = root.join(entry.file_name());
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(entry.path().join("function.json"), target.join("function.json")).unwrap();
    }
    assert!(handler_binary.exists(), "no handler binary at {}", handler_binary.display());
    std::os::unix::fs::symlink(handler_binary, root.join("handler")).unwrap();
}

/// A fresh directory under the system temp folder, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "cmk-testbed-{}-{}",
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
