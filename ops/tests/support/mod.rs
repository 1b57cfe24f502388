//! The testbed for `cmkctl`'s tests: the shared pipeline testbed (`cmk_testbed`), plus what only these tests need:
//! dead letters seeded the way the broker makes them, and `cmkctl` run as a child process.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub use cmk_testbed::*;
use serde_json::Value;

use azure_emulator::servicebus::NewMessage;

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

/// The whole pipeline, with settings overridden.
pub async fn with_handler(overrides: &[(&str, &str)]) -> TestBed {
    TestBed::start_with(&handler_binary(), sample_scenario(), overrides).await
}

/// What `cmkctl`'s tests do with a testbed.
pub trait OpsBed {
    /// A `local.settings.json` of the app, for `validate`/`enqueue`.
    fn settings_file(&self) -> PathBuf;
    /// Puts a message in the dead-letter queue as the handler's marked copy ends up there: sent with the handler's
    /// `cmk-*` marks, then dead-lettered by the broker.
    async fn seed_dead_letter(&self, body: &[u8], message_id: &str, reason: &str);
    /// `cmkctl` against this testbed, with SAS auth.
    fn cmkctl(&self, args: &[&str]) -> tokio::process::Command;
    /// Runs `cmkctl` to completion.
    async fn run(&self, args: &[&str]) -> Output;
    /// Where `cmkctl` keeps its audit trail, archives and send journal in these tests.
    fn state_dir(&self) -> PathBuf;
    /// The records of the default audit trail.
    fn audit(&self) -> Vec<Value>;
}

impl OpsBed for TestBed {
    fn settings_file(&self) -> PathBuf {
        let path = self.dir.path().join("local.settings.json");
        let values: serde_json::Map<String, Value> =
            self.settings.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        std::fs::write(&path, serde_json::to_vec(&serde_json::json!({ "Values": values })).unwrap()).unwrap();
        path
    }

    async fn seed_dead_letter(&self, body: &[u8], message_id: &str, reason: &str) {
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
        message.session_id = Some(session_of(body).unwrap_or_else(|| format!("no-account-{message_id}")));
        bus.send(NAMESPACE, QUEUE, message).expect("send");
        // The queue requires sessions: take the message through its session, as the trigger does.
        let wait = Duration::from_secs(5);
        let session = bus.accept_next_session(NAMESPACE, QUEUE, wait).await.expect("accept").expect("a session");
        let delivered =
            bus.receive_from_session(NAMESPACE, QUEUE, session.token, wait).await.expect("receive").expect("a message");
        bus.dead_letter(NAMESPACE, QUEUE, delivered.lock_token, "MaxDeliveryCountExceeded", "seeded")
            .expect("dead-letter");
        bus.release_session(NAMESPACE, QUEUE, session.token).expect("close the session");
    }

    fn cmkctl(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cmkctl"));
        command
            .args(["--emulator", self.emulator.url(), "--connection-string", &connection_string()])
            .args(args)
            .env_remove("CMK_SERVICEBUS_NAMESPACE")
            .env_remove("CMK_FUNCTION_APP_URL")
            .env_remove("CMK_STATUS_FUNCTION_KEY")
            .env_remove("CMKCTL_SETTINGS")
            .env("CMKCTL_OPERATOR", "test-operator")
            .env("CMKCTL_STATE_DIR", self.state_dir())
            .env_remove("CMKCTL_AUDIT")
            .env_remove("CMKCTL_JOURNAL")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn audit(&self) -> Vec<Value> {
        json_lines(&self.state_dir().join("audit.jsonl"))
    }

    async fn run(&self, args: &[&str]) -> Output {
        let output = tokio::time::timeout(WAIT, self.cmkctl(args).output()).await.expect("cmkctl finishes").unwrap();
        eprintln!("cmkctl {args:?} -> {:?}\nstderr: {}", output.status.code(), String::from_utf8_lossy(&output.stderr));
        output
    }
}

/// JSON lines of a file.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records of one kind (`intent`, `result`, `end`, `reported`).
pub fn records<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|r| r["record"] == kind).collect()
}

pub fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}
