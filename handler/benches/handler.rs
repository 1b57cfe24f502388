//! Benchmarks of the handler binary: cold start against a bare axum floor built with the same profile, per-invocation
//! overhead, Azure calls per onboarding in steady state, peak memory. Run: `cargo bench -p handler --bench handler`
//! (numbers go in the README).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cmk_testbed::{TestBed, app_settings, contoso, onboarding};

const ONBOARDINGS: usize = 50;
const COLD_STARTS: usize = 40;

fn bench_account(i: usize) -> String {
    format!(
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/bench{i:03}"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints the distribution; returns (median, p95).
fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    println!(
        "{name:<44} n={:<5} min={:>9.2?} median={:>9.2?} p95={:>9.2?} max={:>9.2?}",
        samples.len(),
        samples[0],
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
    (percentile(&samples, 0.5), percentile(&samples, 0.95))
}

/// Exec to the first answer on `GET /`, as the host measures readiness (the real host polls every 25 ms; this polls
/// every millisecond to resolve the difference).
async fn cold_start(program: &Path, env: &BTreeMap<String, String>) -> Duration {
    let client = reqwest::Client::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .env_clear()
        .envs(env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("program starts");
    loop {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{} never became ready", program.display());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    elapsed
}

/// Builds the bare axum floor (`examples/bare_axum.rs`) with the profile this benchmark was built with.
fn build_floor() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args(["build", "--profile", "bench", "--package", "handler", "--example", "bare_axum"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the bare axum floor failed ({status})");
    // The bench profile writes where the release profile does; this executable sits in `<profile dir>/deps/`.
    let profile_dir = std::env::current_exe().unwrap().parent().and_then(Path::parent).unwrap().to_path_buf();
    profile_dir.join("examples").join("bare_axum")
}

/// The handler against the bare axum floor, interleaved run by run so both see the same machine load.
async fn cold_start_against_floor(emulator_url: &str, runs: usize) {
    let floor = build_floor();
    let handler = Path::new(env!("CARGO_BIN_EXE_handler"));
    let mut env: BTreeMap<String, String> = app_settings(emulator_url);
    env.insert("IDENTITY_ENDPOINT".into(), format!("{emulator_url}/msi/token"));
    env.insert("IDENTITY_HEADER".into(), "bench".into());
    env.insert("RUST_LOG".into(), "warn".into());
    let floor_env = BTreeMap::new();
    let (mut handler_samples, mut floor_samples) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    // One unmeasured start of each, so the page cache holds both executables.
    cold_start(&floor, &floor_env).await;
    cold_start(handler, &env).await;
    for _ in 0..runs {
        floor_samples.push(cold_start(&floor, &floor_env).await);
        handler_samples.push(cold_start(handler, &env).await);
    }
    let (handler_median, handler_p95) = summary("cold start, handler (exec -> ready)", handler_samples);
    let (floor_median, floor_p95) = summary("cold start, bare axum floor (exec -> ready)", floor_samples);
    println!(
        "cold start ratio handler / floor: median {:.2}, p95 {:.2}",
        handler_median.as_secs_f64() / floor_median.as_secs_f64(),
        handler_p95.as_secs_f64() / floor_p95.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // One fresh storage account per onboarding, so that every onboarding does the full read, PATCH, read-back.
    let mut scenario = cmk_testbed::sample_scenario();
    for i in 0..ONBOARDINGS {
        scenario.storage_accounts.push(cmk_testbed::fresh_storage_account(bench_account(i)));
    }
    let handler = Path::new(env!("CARGO_BIN_EXE_handler"));
    let overrides = [("RUST_LOG", "warn"), cmk_testbed::ONE_KEY_MANY_ACCOUNTS];
    let bed = TestBed::start_with(handler, scenario, &overrides).await;
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));

    cold_start_against_floor(bed.emulator.url(), COLD_STARTS).await;

    // Warm up: tokens, identity chain and connections are cached after the first onboarding.
    bed.send(&contoso("obd-warmup"), "msg-warmup");
    bed.wait_until("warm-up completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;

    // Steady state, one at a time: end-to-end latency and calls per onboarding.
    let onboardings = ONBOARDINGS;
    bed.emulator.shared().log.clear();
    let mut latencies = Vec::with_capacity(onboardings);
    for i in 0..onboardings {
        let started = Instant::now();
        let body = onboarding(
            &format!("obd-bench-{i}"),
            "22222222-2222-2222-2222-222222222222",
            &bench_account(i),
            "https://contoso-kv.vault.azure.net/",
            "cmk",
        );
        bed.send(&body, &format!("msg-bench-{i}"));
        bed.wait_until("completed", |bed| bed.events_of("completed").len() == i + 2).await;
        latencies.push(started.elapsed());
    }
    bed.wait_queue_idle().await;
    summary("onboarding, steady state (enqueue -> event)", latencies);
    let log = bed.requests();
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for record in &log {
        *per_host.entry(format!("{} {}", record.method, record.host)).or_default() += 1;
    }
    println!("Azure calls per onboarding in steady state: {:.2}", log.len() as f64 / onboardings as f64);
    for (call, count) in per_host {
        println!("    {call:<60} {:.2}", count as f64 / onboardings as f64);
    }

    // Sessions (ARCHITECTURE.md, decision 13): 16 onboardings sent together, for 16 accounts (run side by side, one
    // session each) and for one account (run one after the other in its session). Both on accounts already
    // configured, so every onboarding does the same work: key checks and a read, no PATCH.
    let burst = 16;
    for (name, account) in [("16 accounts", None), ("1 account", Some(0))] {
        // Start with every pump free: sessions held idle from the previous phase would delay the first accounts.
        bed.wait_until("no session held", |bed| {
            let state = bed.emulator.shared().bus.snapshot();
            let queue = &state["namespaces"][cmk_testbed::NAMESPACE]["queues"][cmk_testbed::QUEUE];
            queue["lockedSessions"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
        let done = bed.events_of("completed").len();
        let started = Instant::now();
        for i in 0..burst {
            let body = onboarding(
                &format!("obd-burst-{}-{i}", account.map_or("many", |_| "one")),
                "22222222-2222-2222-2222-222222222222",
                &bench_account(account.unwrap_or(i)),
                "https://contoso-kv.vault.azure.net/",
                "cmk",
            );
            bed.send(&body, &format!("msg-burst-{}-{i}", account.map_or("many", |_| "one")));
        }
        bed.wait_until("the burst completed", |bed| bed.events_of("completed").len() == done + burst).await;
        let elapsed = started.elapsed();
        println!("{burst} onboardings sent together, {name:<12} {elapsed:>9.2?} ({:.2?} each)", elapsed / burst as u32);
        bed.wait_queue_idle().await;
    }

    // Per-invocation overhead: the host protocol alone (decode, route, answer), on a marked dead-letter copy that
    // the handler fails without any Azure call.
    let port = bed.host().status()["port"].as_u64().expect("handler port") as u16;
    let payload = serde_json::json!({
        "Data": { "onboardingMessage": "e30=" },
        "Metadata": { "DeliveryCount": "1", "MessageId": "\"m\"", "ApplicationProperties": { "cmk-dead-letter-reason": "InvalidJson" } }
    })
    .to_string();
    let client = reqwest::Client::new();
    let mut overhead = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let started = Instant::now();
        let response = client
            .post(format!("http://127.0.0.1:{port}/ProcessOnboarding"))
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        let _ = response.bytes().await.unwrap();
        overhead.push(started.elapsed());
    }
    summary("invocation round trip, no Azure work", overhead);

    let pid = bed.host().status()["pid"].as_u64().expect("handler pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in status.lines().filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS")) {
        println!("handler memory: {line}");
    }
}
