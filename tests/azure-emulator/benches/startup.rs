//! Emulator start-up, exec → the ready line: spawns the `azure-emulator` binary with the sample scenario, times the
//! first line on stdout (the `{"url",…}` ready line), then stops it with SIGTERM and checks it exits with status 0.
//!
//! Run (numbers go in the emulator README):
//! - release: `cargo bench -p azure-emulator --bench startup -- 20`
//! - debug:   `cargo test -p azure-emulator --bench startup -- 20`

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

/// Longest any one step may take before the run is a failure.
const STEP_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // cargo passes `--bench` to bench binaries; the one positional argument is the number of runs.
    let runs: usize =
        std::env::args().skip(1).find(|a| !a.starts_with("--")).and_then(|a| a.parse().ok()).unwrap_or(20);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/scenario.json");
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(start_once(scenario).await);
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "emulator start-up, exec → ready line ({} build, --scenario samples/scenario.json): n={} min={:.1?} median={:.1?} p95={:.1?} max={:.1?}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        samples.len(),
        samples[0],
        at(0.5),
        at(0.95),
        samples[samples.len() - 1]
    );
}

async fn start_once(scenario: &str) -> Duration {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args(["--listen", "127.0.0.1:0", "--scenario", scenario])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::time::timeout(STEP_LIMIT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("the ready line within the limit")
        .expect("stdout readable")
        .expect("a ready line before stdout closed");
    let elapsed = started.elapsed();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("the ready line is JSON");
    assert!(ready["url"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")), "{line}");
    let pid = child.id().expect("running").to_string();
    let sent = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(sent.success(), "SIGTERM delivered");
    let status = tokio::time::timeout(STEP_LIMIT, child.wait()).await.expect("exits after SIGTERM").expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    elapsed
}
