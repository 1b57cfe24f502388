//! The `azure-emulator` executable: the ready line, the loaded scenario, refusals, and a clean exit on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_azure-emulator");
const PATIENCE: Duration = Duration::from_secs(60);

fn scenario_path() -> String {
    format!("{}/tests/data/entra-scenario.json", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn prints_the_ready_line_serves_the_scenario_and_exits_on_sigterm() {
    let mut child = Command::new(EXE)
        .args(["--listen", "127.0.0.1:0", "--scenario", &scenario_path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line()).await.expect("ready line in time").unwrap().unwrap();
    let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
    let url = ready["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(ready["identityHeader"].is_string());

    let state: Value = reqwest::get(format!("{url}/_emulator/state")).await.unwrap().json().await.unwrap();
    assert_eq!(state["entra"]["tenants"].as_array().unwrap().len(), 4);

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status}");
    // Nothing but the ready line is written on stdout.
    assert_eq!(lines.next_line().await.unwrap(), None);
}

async fn refused(args: &[&str]) -> String {
    let output = tokio::time::timeout(PATIENCE, Command::new(EXE).args(args).stdout(Stdio::null()).output())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let stderr = refused(&["--listen", "0.0.0.0:0"]).await;
    assert!(stderr.contains("non-loopback"), "{stderr}");
}

#[tokio::test]
async fn refuses_settings_without_an_app_root_and_bad_scenarios() {
    let stderr = refused(&["--settings", "local.settings.json"]).await;
    assert!(stderr.contains("--app-root"), "{stderr}");
    let stderr = refused(&["--scenario", "/nonexistent/scenario.json"]).await;
    assert!(stderr.contains("cannot read scenario"), "{stderr}");
}
