//! Benchmarks at scale under Azure's limits (issue 12): one onboarding with a per-call latency L against its critical
//! path, throughput at concurrency C with that latency, the handler's peak RSS meanwhile, and a bulk run of N
//! onboardings in one subscription under the Storage RP's limits (time-scaled) with several handler instances.
//!
//! `cargo bench -p handler --bench scale -- [latency|throughput|bulk|all] [--bulk N] [--scale S] [--instances I]`
//! (defaults: all, N = 10,000, S = 60, I = 4; at 60 the Storage RP's hourly writes are 20 per real second, which
//! this 2-core machine keeps up with while it also runs the emulator and four handlers). Figures go in the README.
//! `SCALE_BENCH_LOG=FILE` writes the bulk run's ARM requests (time, method, status, ms, path; one per line) for a look
//! at how the run paced itself.

use std::path::Path;
use std::time::{Duration, Instant};

use azure_emulator::limits::{LatencyRule, LimitsConfig};
use azure_emulator::scenario::Scenario;
use cmk_testbed::{ALL_EVENTS, TestBed, onboarding};

const SUBSCRIPTION: &str = "33333333-3333-3333-3333-333333333333";
const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const VAULT: &str = "https://contoso-kv.vault.azure.net/";
/// Calls on the critical path of a new onboarding in steady state (README, "Critical path"): Key Vault GET key (the
/// storage GET runs beside it), wrapKey, unwrapKey, storage PATCH, Service Bus send of the event.
const CRITICAL_PATH_CALLS: u32 = 5;

fn account_id(prefix: &str, i: usize) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/{prefix}{i:05}"
    )
}

fn scenario_with(prefix: &str, accounts: usize) -> Scenario {
    let mut scenario = cmk_testbed::sample_scenario();
    for i in 0..accounts {
        scenario.storage_accounts.push(cmk_testbed::fresh_storage_account(account_id(prefix, i)));
    }
    scenario
}

fn send(bed: &TestBed, prefix: &str, i: usize) {
    let body = onboarding(&format!("obd-{prefix}-{i}"), TENANT, &account_id(prefix, i), VAULT, "cmk");
    bed.send(&body, &format!("msg-{prefix}-{i}"));
}

/// Sets the Service Bus trigger's session options in the assembled app's `host.json`.
fn sessions(max_concurrent: u32, idle: &'static str) -> impl FnOnce(&Path) {
    move |app_root: &Path| {
        let path = app_root.join("host.json");
        let mut host: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        host["extensions"]["serviceBus"]["maxConcurrentSessions"] = max_concurrent.into();
        host["extensions"]["serviceBus"]["sessionIdleTimeout"] = idle.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&host).unwrap()).unwrap();
    }
}

async fn start(prefix: &str, accounts: usize, customize: impl FnOnce(&Path)) -> TestBed {
    let handler = Path::new(env!("CARGO_BIN_EXE_handler"));
    let overrides = [("RUST_LOG", "warn"), cmk_testbed::ONE_KEY_MANY_ACCOUNTS];
    TestBed::start_custom(handler, scenario_with(prefix, accounts), &overrides, customize).await
}

/// Completed events so far (every event of these runs is a `completed` unless something went wrong, which the
/// final checks catch).
fn events(bed: &TestBed) -> usize {
    bed.peek(ALL_EVENTS).len()
}

async fn wait_for_events(bed: &TestBed, count: usize, limit: Duration) {
    let started = Instant::now();
    while events(bed) < count {
        assert!(started.elapsed() < limit, "only {} of {count} events after {limit:?}", events(bed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn latency_everywhere(ms: u64) -> Vec<LatencyRule> {
    vec![LatencyRule { host: "*".into(), fixed_ms: ms, jitter_ms: 0 }]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One onboarding at a time with every Azure call taking `l_ms`: the time from its first call's start to the end of
/// its event's publication, against `CRITICAL_PATH_CALLS × L`.
async fn latency(l_ms: u64, runs: usize) {
    let bed = start("lat", runs, |_| {}).await;
    bed.send(&cmk_testbed::contoso("obd-warmup"), "msg-warmup");
    wait_for_events(&bed, 1, Duration::from_secs(60)).await;
    bed.wait_queue_idle().await;
    let limits = LimitsConfig { latency: latency_everywhere(l_ms), ..LimitsConfig::default() };
    bed.emulator.shared().limits.configure(limits).unwrap();
    let (mut spans, mut end_to_end, mut calls) = (Vec::new(), Vec::new(), 0);
    for i in 0..runs {
        bed.emulator.shared().log.clear();
        let started = Instant::now();
        send(&bed, "lat", i);
        wait_for_events(&bed, i + 2, Duration::from_secs(60)).await;
        end_to_end.push(started.elapsed().as_secs_f64() * 1000.0);
        bed.wait_queue_idle().await;
        // One onboarding at a time means apart, too: the pacer spaces a subscription's writes by what is left of the
        // Storage RP's hourly window (3,600 s / (4 × 1,199) = 0.75 s at full quota), which back-to-back onboardings
        // would wait for. A second between them is the workload's arrival rate, not a wait for a condition.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let log = bed.requests();
        let start = log.iter().map(|r| r.time - time::Duration::milliseconds(r.duration_ms as i64)).min().unwrap();
        let end = log.iter().map(|r| r.time).max().unwrap();
        spans.push((end - start).as_seconds_f64() * 1000.0);
        calls += log.len();
        if i == 0 {
            println!("calls of one onboarding (start and end in ms from the first call's start):");
            for r in &log {
                let end = (r.time - start).as_seconds_f64() * 1000.0;
                println!("    {:>7.1} {:>7.1}  {} {}{}", end - r.duration_ms as f64, end, r.method, r.host, r.path);
            }
        }
    }
    spans.sort_by(f64::total_cmp);
    end_to_end.sort_by(f64::total_cmp);
    let bound = f64::from(CRITICAL_PATH_CALLS) * l_ms as f64;
    println!("latency, L = {l_ms} ms, {runs} onboardings one at a time:");
    println!("    Azure calls per onboarding: {:.2}", calls as f64 / runs as f64);
    println!(
        "    first call -> event published: median {:.1} ms, max {:.1} ms; {CRITICAL_PATH_CALLS} x L = {bound} ms; ratio median {:.3}, max {:.3} (bound 1.1)",
        percentile(&spans, 0.5),
        spans[spans.len() - 1],
        percentile(&spans, 0.5) / bound,
        spans[spans.len() - 1] / bound
    );
    println!(
        "    enqueue -> event seen (includes the host's dispatch and a 20 ms poll): median {:.1} ms",
        percentile(&end_to_end, 0.5)
    );
}

/// The handler at concurrency `c`: `count` onboardings of new accounts, invoked over the host's protocol by `c`
/// callers at once (each sends the next as soon as its last is answered), every Azure call taking `l_ms`. The
/// handler is driven directly because the host's session pumps hold each slot `sessionIdleTimeout` (at least 1 s)
/// after an account's only message, which would measure the host, not the handler. Throttling off: the Storage RP's
/// 10 writes per second would be the bound (that is the bulk benchmark). Then the handler's peak RSS.
async fn throughput(c: usize, l_ms: u64, count: usize) {
    use base64::Engine as _;
    let bed = start("thr", count, |_| {}).await;
    // Off from the start: remaining counts seen during the warm-up would otherwise keep spacing this process's writes
    // although no limit applies afterwards.
    let unthrottled = LimitsConfig { throttling: false, ..LimitsConfig::default() };
    bed.emulator.shared().limits.configure(unthrottled).unwrap();
    bed.send(&cmk_testbed::contoso("obd-warmup"), "msg-warmup");
    wait_for_events(&bed, 1, Duration::from_secs(60)).await;
    bed.wait_queue_idle().await;
    let limits = LimitsConfig { throttling: false, latency: latency_everywhere(l_ms), ..LimitsConfig::default() };
    bed.emulator.shared().limits.configure(limits).unwrap();
    bed.emulator.shared().log.clear();
    let port = bed.host().status()["port"].as_u64().expect("handler port");
    let url = format!("http://127.0.0.1:{port}/ProcessOnboarding");
    let payloads: Vec<String> = (0..count)
        .map(|i| {
            let body = onboarding(&format!("obd-thr-{i}"), TENANT, &account_id("thr", i), VAULT, "cmk");
            serde_json::json!({
                "Data": { "onboardingMessage": base64::engine::general_purpose::STANDARD.encode(&body) },
                "Metadata": {
                    "DeliveryCount": "1",
                    // The broker's order of the delivery (decision 22), as the host sends it.
                    "EnqueuedTimeUtc": "2026-12-01T00:00:00",
                    "MessageId": format!("\"msg-thr-{i}\""),
                    "SessionId": format!("\"thr{i:05}\""),
                    "SequenceNumber": (1000 + i).to_string(),
                }
            })
            .to_string()
        })
        .collect();
    let payloads = std::sync::Arc::new(payloads);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let callers: Vec<_> = (0..c)
        .map(|_| {
            let (payloads, next, client, url) = (payloads.clone(), next.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(payload) = payloads.get(i) else { break };
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(payload.clone())
                        .send()
                        .await
                        .expect("the handler answers");
                    assert_eq!(response.status(), 200, "onboarding {i}");
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let completed = bed.events_of("completed").len();
    let other = bed.events().into_iter().find(|e| !e["type"].as_str().unwrap_or("").ends_with(".completed.v1"));
    assert_eq!(completed, count + 1, "every onboarding completed: {other:#?}");
    let ideal = c as f64 / (f64::from(CRITICAL_PATH_CALLS) * l_ms as f64 / 1000.0);
    let rate = count as f64 / elapsed;
    println!("throughput, C = {c}, L = {l_ms} ms, {count} onboardings:");
    println!(
        "    {elapsed:.2} s, {rate:.1} onboardings/s; C / ({CRITICAL_PATH_CALLS} x L) = {ideal:.1}/s; ratio {:.3} (bound >= 0.9)",
        rate / ideal
    );
    let log = bed.requests();
    let slow = log.iter().filter(|r| r.duration_ms >= l_ms).count();
    println!(
        "    Azure requests {} ({slow} took L or more), {:.2} per onboarding",
        log.len(),
        log.len() as f64 / count as f64
    );
    let mut kinds = std::collections::BTreeMap::new();
    for r in &log {
        *kinds.entry(format!("{} {} {}", r.method, r.host, r.status)).or_insert(0) += 1;
    }
    println!("    {kinds:?}");
    let pid = bed.host().status()["pid"].as_u64().expect("handler pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in status.lines().filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS")) {
        println!("    handler memory after {c} concurrent onboardings: {line}");
    }
}

/// `count` onboardings of new accounts in one subscription and region, sent at once, `instances` handler instances,
/// Azure's limits on and time-scaled by `scale`.
async fn bulk(count: usize, scale: f64, instances: usize) {
    // A session slot stays with its account `sessionIdleTimeout` (1 s, the least host.json allows) after its only
    // message: 64 sessions per instance instead of 16, so that Azure's limit bounds the run, not the slots.
    let bed = start("blk", count, sessions(64, "00:00:01")).await;
    let limits = LimitsConfig { time_scale: scale, ..LimitsConfig::default() };
    bed.emulator.shared().limits.configure(limits).unwrap();
    let mut extra = Vec::new();
    for _ in 1..instances {
        extra.push(bed.start_instance().await);
    }
    bed.emulator.shared().log.clear();
    let started = Instant::now();
    for i in 0..count {
        send(&bed, "blk", i);
    }
    let azure_hour = Duration::from_secs_f64(3600.0 / scale);
    let mut samples = Vec::new();
    let limit = azure_hour * (count as u32 / 1000 + 4);
    loop {
        let done = events(&bed);
        samples.push((started.elapsed(), done));
        if done >= count {
            break;
        }
        assert!(started.elapsed() < limit, "only {done} of {count} completed after {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let hours = elapsed.as_secs_f64() * scale / 3600.0;
    // After the first Azure hour the 1,200 writes of the first window are spent; from then on the hourly limit binds.
    let at_hour = samples.iter().find(|(t, _)| *t >= azure_hour).copied();
    let log = bed.requests();
    let arm: Vec<_> = log.iter().filter(|r| r.host == "management.azure.com").collect();
    let throttled = arm.iter().filter(|r| r.status == 429).count();
    let patches = arm.iter().filter(|r| r.method == "PATCH" && r.status == 200).count();
    let dead = bed.dead_letters().len();
    println!("bulk, {count} onboardings, {instances} instances, time scale {scale} (1 Azure hour = {azure_hour:.1?}):");
    println!(
        "    {:.1?} real = {hours:.2} Azure hours; {:.0} completed per Azure hour overall (limit 1,200 writes/h)",
        elapsed,
        count as f64 / hours
    );
    if let Some((t, done)) = at_hour {
        let rest_hours = (elapsed - t).as_secs_f64() * scale / 3600.0;
        let steady = (count - done) as f64 / rest_hours;
        println!(
            "    after the first Azure hour ({done} done by then): {steady:.0} per Azure hour = {:.1}% of the write limit (bound >= 90%)",
            steady / 12.0
        );
    }
    println!(
        "    ARM requests {}, 429s {throttled} ({:.2}%, bound <= 2%); successful PATCHes {patches}; dead letters {dead}",
        arm.len(),
        100.0 * throttled as f64 / arm.len() as f64
    );
    println!("    emulator throttles: {}", bed.emulator.shared().limits.status()["throttled"]);
    if let Ok(path) = std::env::var("SCALE_BENCH_LOG") {
        let lines: Vec<String> = arm
            .iter()
            .map(|r| {
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.time.unix_timestamp_nanos() / 1_000_000,
                    r.method,
                    r.status,
                    r.duration_ms,
                    r.path
                )
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
    }
    drop(extra);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let which = args.first().filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "all".into());
    let count: usize = flag("--bulk").map_or(10_000, |v| v.parse().expect("--bulk N"));
    let scale: f64 = flag("--scale").map_or(60.0, |v| v.parse().expect("--scale S"));
    let instances: usize = flag("--instances").map_or(4, |v| v.parse().expect("--instances I"));
    println!("machine: {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    if matches!(which.as_str(), "latency" | "all") {
        latency(100, 10).await;
    }
    if matches!(which.as_str(), "throughput" | "all") {
        throughput(32, 100, 32 * 10).await;
    }
    if matches!(which.as_str(), "bulk" | "all") {
        bulk(count, scale, instances).await;
    }
}
