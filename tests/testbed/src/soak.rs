//! The fault soak: many onboardings through the real handler under the emulated host while every emulated host
//! (the managed-identity endpoint included) throttles, fails, stalls or resets a share of its requests, the handler
//! is killed at random (the host restarts it; the platform restarts a host that gave up) and message locks expire
//! under running invocations. Time is the emulator's: its clock runs faster than the wall clock, which makes
//! scheduled retry copies due and session locks expire without anyone waiting for them.
//!
//! [`run`] checks what must hold whatever happened — every onboarding completed, exactly one `completed` event per
//! onboarding at a subscriber, nothing left in the queue, nothing dead-lettered — and returns the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
use azure_emulator::scenario::Scenario;
use serde_json::Value;

use crate::{CONTOSO_TENANT, NAMESPACE, QUEUE, TestBed, find_by_id, onboarding, sample_scenario};

/// The subscription infra gives `completed` subscribers (a SQL filter on `eventtype`).
const COMPLETED_SUBSCRIPTION: &str = "onboarding-events/subscriptions/completed";
/// How often the driver moves the emulator's clock and looks at the run.
const TICK: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Debug, Clone)]
pub struct Soak {
    pub onboardings: usize,
    /// Seeds the fault rule's draws and the kill schedule, so a run is reproducible up to thread timing.
    pub seed: u64,
    /// Share of the requests to every emulated host that fail (429 or 503 with `Retry-After`, a delay, a reset).
    pub fault_probability: f64,
    /// The handler is killed after a random number of emulated-Azure requests in this range, again and again.
    pub requests_between_kills: (u64, u64),
    /// The queue's `lockDuration`.
    pub lock_duration: Duration,
    /// Emulated seconds per wall-clock second. A lock lasts `lock_duration / clock_rate` of wall time unless renewed,
    /// and the host renews it by the wall clock, so an invocation longer than that loses it.
    pub clock_rate: u32,
    /// Wall-clock bound of the whole run: past it the soak fails with what it saw.
    pub timeout: Duration,
}

impl Soak {
    /// The soak (a fifth of the requests failing, a kill every 150–350 requests, 30-second locks on a clock
    /// eight times faster than the wall clock), with `onboardings` onboardings and a bound of `timeout`.
    ///
    /// The seed makes every host's rule fire within its first three requests (one handler start each for Graph and
    /// Entra), so every host fails some requests in every run.
    ///
    /// The rates are what `MaxDeliveryCount` (10) tolerates: 16 invocations in flight make about 160 requests, so a
    /// kill every 160 requests fails half of all deliveries, and one message in a thousand would fail ten in a row.
    pub fn standard(onboardings: usize, timeout: Duration) -> Self {
        Soak {
            onboardings,
            seed: 106,
            fault_probability: 0.2,
            requests_between_kills: (150, 350),
            lock_duration: Duration::from_secs(30),
            clock_rate: 8,
            timeout,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub onboardings: usize,
    pub duration: Duration,
    /// Emulated time that passed.
    pub emulated: Duration,
    /// Requests the emulated Azure served (the handler's, through the test proxy).
    pub requests: usize,
    /// Requests answered with an injected fault.
    pub faults: u64,
    /// Requests per `METHOD host path-shape`, for the figures.
    pub requests_per_call: BTreeMap<String, usize>,
    /// Injected faults per host (every host in [`FAULTED`]).
    pub faults_per_host: BTreeMap<String, u64>,
    /// The handler's warnings and errors, by message, most frequent first.
    pub handler_warnings: Vec<(String, usize)>,
    /// Retries inside invocations (the handler's retry loop).
    pub retries: usize,
    /// Retry copies the handler scheduled on the queue.
    pub retry_copies: usize,
    /// Deliveries of onboarding messages to the handler.
    pub deliveries: u64,
    /// Deliveries with `DeliveryCount` above 1 (after a kill, a failed invocation or a lost lock).
    pub redeliveries: u64,
    /// The highest `DeliveryCount` any delivery had (the queue dead-letters past its `maxDeliveryCount`, 10).
    pub max_delivery_count: u64,
    /// Settlements refused because the lock had expired under the invocation.
    pub lost_locks: u64,
    pub kills: u32,
    /// Handler restarts by the host (kills included).
    pub handler_restarts: u64,
    /// Host restarts by the platform after the third handler error in 30 minutes.
    pub host_restarts: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |n: f64| n / self.onboardings as f64;
        writeln!(f, "onboardings                 {}", self.onboardings)?;
        writeln!(f, "duration (wall clock)       {:.1?}", self.duration)?;
        writeln!(f, "emulated time               {:.0?}", self.emulated)?;
        writeln!(f, "Azure requests              {} ({:.2} per onboarding)", self.requests, per(self.requests as f64))?;
        writeln!(f, "injected faults             {} {:?}", self.faults, self.faults_per_host)?;
        writeln!(f, "in-invocation retries       {}", self.retries)?;
        writeln!(f, "scheduled retry copies      {}", self.retry_copies)?;
        writeln!(f, "deliveries                  {}", self.deliveries)?;
        writeln!(
            f,
            "redeliveries                {} (highest DeliveryCount {})",
            self.redeliveries, self.max_delivery_count
        )?;
        writeln!(f, "settlements on a lost lock  {}", self.lost_locks)?;
        writeln!(f, "handler kills               {}", self.kills)?;
        writeln!(f, "handler restarts            {}", self.handler_restarts)?;
        write!(f, "host restarts (platform)    {}", self.host_restarts)?;
        for (call, count) in &self.requests_per_call {
            write!(f, "\n  {count:>6} {call}")?;
        }
        for (message, count) in &self.handler_warnings {
            write!(f, "\n  handler warning/error x{count:<4} {message}")?;
        }
        Ok(())
    }
}

pub fn soak_account(i: usize) -> String {
    format!(
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/soak{i:05}"
    )
}

/// The hosts the handler talks to, and the emulator's managed-identity endpoint (App Service's, on the emulator's
/// own port).
pub const FAULTED: [(&str, Option<&str>); 6] = [
    ("management.azure.com", None),
    ("graph.microsoft.com", None),
    ("login.microsoftonline.com", None),
    ("contoso-kv.vault.azure.net", None),
    ("*.servicebus.windows.net", None),
    ("127.0.0.1", Some("/msi/token")),
];

/// The fault rules: one per host, each failing `probability` of that host's requests with one of the four kinds.
/// A rule per host draws from its own generator, so the n-th request to a host meets the same fate in every run
/// with the same seed, however the hosts' requests interleave.
pub fn fault_rules(probability: f64, seed: u64) -> Vec<FaultRule> {
    let respond = |status| FaultAction::Respond { status, retry_after: Some(1), error_code: None, message: None };
    FAULTED
        .iter()
        .zip(seed..)
        .map(|((host, path), seed)| FaultRule {
            matcher: FaultMatch { host: Some((*host).into()), method: None, path_contains: path.map(str::to_owned) },
            action: FaultAction::OneOf {
                one_of: vec![
                    respond(429),
                    respond(503),
                    FaultAction::Delay { delay_ms: 250 },
                    FaultAction::Reset { reset: true },
                ],
            },
            times: None,
            probability: Some(probability),
            seed: Some(seed),
        })
        .collect()
}

/// Delays the first event publish by `hold`.
fn slow_publish(hold: Duration) -> FaultRule {
    FaultRule {
        matcher: FaultMatch {
            host: Some("*.servicebus.windows.net".into()),
            method: Some("POST".into()),
            path_contains: Some("/onboarding-events/messages".into()),
        },
        action: FaultAction::Delay { delay_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX) },
        times: Some(1),
        probability: None,
        seed: None,
    }
}

/// The sample scenario plus `accounts` fresh storage accounts ([`soak_account`]), all for Contoso's key.
pub fn scenario(accounts: usize) -> Scenario {
    let mut scenario = sample_scenario();
    for i in 0..accounts {
        scenario.storage_accounts.push(crate::fresh_storage_account(soak_account(i)));
    }
    scenario
}

/// Onboarding `i` of a soak: Contoso's key for [`soak_account`] `i`.
pub fn soak_onboarding(i: usize) -> Vec<u8> {
    onboarding(&format!("obd-soak-{i}"), CONTOSO_TENANT, &soak_account(i), "https://contoso-kv.vault.azure.net/", "cmk")
}

/// Runs the soak and checks its invariants (panicking with what it saw when one does not hold).
pub async fn run(handler_binary: &Path, soak: &Soak) -> Figures {
    let mut scenario = scenario(soak.onboardings);
    let queue = scenario.service_bus[0].queues.iter_mut().find(|q| q.name == QUEUE).expect("the onboarding queue");
    queue.lock_duration = format!("PT{}S", soak.lock_duration.as_secs());
    let bed = TestBed::start_configured(
        handler_binary,
        scenario,
        // The retry loop logs each retry at debug: that is how the soak counts them.
        &[
            ("RUST_LOG", "warn,cmk_handler::azure::retry=debug"),
            // Short enough that an invocation meeting several `Retry-After`s runs out of time and schedules a copy.
            ("CMK_RETRY_BUDGET_SECONDS", "3"),
            crate::ONE_KEY_MANY_ACCOUNTS,
        ],
        |_| {},
        |options| options.platform_restarts_host = true,
    )
    .await;
    let shared = bed.emulator.shared().clone();
    let emulated_start = shared.clock.now();
    // One event publish held past the lock's wall-clock life, so at least one lock expires under a running
    // invocation on any machine: its message goes to a second delivery while the first still waits (checked first,
    // so it decides for the first publish).
    let hold = soak.lock_duration / soak.clock_rate + Duration::from_secs(1);
    shared.faults.add(slow_publish(hold)).expect("fault rule");
    for rule in fault_rules(soak.fault_probability, soak.seed) {
        shared.faults.add(rule).expect("fault rule");
    }

    let started = Instant::now();
    for i in 0..soak.onboardings {
        bed.send(&soak_onboarding(i), &format!("msg-soak-{i}"));
    }

    let mut kills = fastrand::Rng::with_seed(soak.seed);
    let draw = |rng: &mut fastrand::Rng| rng.u64(soak.requests_between_kills.0..=soak.requests_between_kills.1);
    let mut next_kill = draw(&mut kills);
    let mut kill_count = 0_u32;
    // Onboarding id → the distinct `completed` events (by sequence number) the subscriber received for it.
    let mut received: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let step = TICK * soak.clock_rate;
    loop {
        receive_completed(&bed, &mut received).await;
        let all_completed = received.len() == soak.onboardings;
        if all_completed && bed.queue().is_empty() && subscription_empty(&bed) {
            break;
        }
        let dead = bed.dead_letters();
        assert!(dead.is_empty(), "dead-lettered during the soak: {:#?}", dead_letter_reasons(&dead));
        if started.elapsed() > soak.timeout {
            let missing: Vec<usize> =
                (0..soak.onboardings).filter(|i| !received.contains_key(&format!("obd-soak-{i}"))).collect();
            panic!(
                "the soak did not finish within {:?}: {} of {} completed (missing: {missing:?})\nqueue: {:#?}\n\
                 dead letters: {:#?}\nhost: {}",
                soak.timeout,
                received.len(),
                soak.onboardings,
                bed.queue().iter().map(|m| (&m.message_id, m.delivery_count, &m.state)).collect::<Vec<_>>(),
                dead_letter_reasons(&bed.dead_letters()),
                bed.host().status()
            );
        }
        // Kill only while work remains: the last kill must not land after the run is judged.
        if !all_completed && shared.log.served() >= next_kill {
            bed.host().kill_handler();
            kill_count += 1;
            next_kill = shared.log.served() + draw(&mut kills);
        }
        shared.advance_clock(step);
        // The pace of the emulated clock, not a wait for a condition: each tick moves it by `step`.
        tokio::time::sleep(TICK).await;
    }
    let duration = started.elapsed();

    // Nothing lost, nothing dead-lettered, one `completed` per onboarding, and it is true in ARM.
    let dead = bed.dead_letters();
    assert!(dead.is_empty(), "dead letters: {:#?}", dead_letter_reasons(&dead));
    let duplicated: Vec<_> = received.iter().filter(|(_, events)| events.len() != 1).collect();
    assert!(duplicated.is_empty(), "onboardings with more than one completed event: {duplicated:?}");
    assert_eq!(bed.events_of("completed").len(), soak.onboardings, "completed events on the topic");
    let failed = bed.events_of("failed");
    assert!(failed.is_empty(), "failed events: {failed:#?}");
    // One state dump for all accounts (one per account took minutes for a thousand).
    let arm = bed.state()["arm"].take();
    for i in 0..soak.onboardings {
        let account = find_by_id(&arm, &soak_account(i)).unwrap_or_else(|| panic!("no account {}", soak_account(i)));
        assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault", "{account:#}");
    }

    let status = bed.host().status();
    let count = |name: &str| status["invocations"][name].as_u64().unwrap_or_default();
    let records = bed.requests();
    let output = bed.host().handler_output();
    Figures {
        onboardings: soak.onboardings,
        duration,
        emulated: Duration::try_from(shared.clock.now() - emulated_start).unwrap_or_default(),
        requests: records.len(),
        faults: shared.faults.list().iter().map(|f| f.fired).sum(),
        faults_per_host: shared.faults.list().iter().fold(BTreeMap::new(), |mut hosts, f| {
            *hosts.entry(f.rule.matcher.host.clone().unwrap_or_default()).or_default() += f.fired;
            hosts
        }),
        handler_warnings: warnings(&output),
        requests_per_call: records.iter().fold(BTreeMap::new(), |mut calls, r| {
            let shape: Vec<&str> = r.path.split('/').take(4).collect();
            *calls.entry(format!("{} {} {}", r.method, r.host, shape.join("/"))).or_default() += 1;
            calls
        }),
        retries: output.iter().filter(|line| line.contains("\"retrying\"")).count(),
        retry_copies: records
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/{QUEUE}/messages")) && r.status < 300)
            .count(),
        deliveries: count("ok") + count("failed") + count("timedOut"),
        redeliveries: count("redelivered"),
        max_delivery_count: count("maxDeliveryCount"),
        lost_locks: count("settleFailed"),
        kills: kill_count,
        handler_restarts: status["restarts"].as_u64().unwrap_or_default(),
        host_restarts: status["hostRestarts"].as_u64().unwrap_or_default(),
    }
}

/// Takes every `completed` event waiting at the subscription, as a subscriber does (peek-lock, complete).
async fn receive_completed(bed: &TestBed, received: &mut BTreeMap<String, BTreeSet<i64>>) {
    let bus = &bed.emulator.shared().bus;
    while let Ok(Some(delivered)) = bus.receive(NAMESPACE, COMPLETED_SUBSCRIPTION, Duration::ZERO).await {
        let event: Value = serde_json::from_slice(&delivered.message.body).expect("an event is JSON");
        let onboarding = event["data"]["onboardingId"].as_str().unwrap_or_default().to_owned();
        received.entry(onboarding).or_default().insert(delivered.message.sequence_number);
        // A lock lost to the clock only means the same event comes again (same sequence number).
        let _ = bus.complete(NAMESPACE, COMPLETED_SUBSCRIPTION, delivered.lock_token);
    }
}

fn subscription_empty(bed: &TestBed) -> bool {
    bed.peek(COMPLETED_SUBSCRIPTION).is_empty()
}

/// Counts the handler's JSON log lines at WARN or ERROR by their message.
fn warnings(output: &[String]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in output {
        let Ok(record) = serde_json::from_str::<Value>(line) else { continue };
        if matches!(record["level"].as_str(), Some("WARN" | "ERROR")) {
            let message = record["fields"]["message"].as_str().unwrap_or_default().to_owned();
            *counts.entry(message).or_default() += 1;
        }
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    sorted
}

/// Each dead letter's message id, broker reason and our reason.
fn dead_letter_reasons(dead: &[azure_emulator::servicebus::Message]) -> Vec<String> {
    dead.iter()
        .map(|m| {
            let ours = m.application_properties.get("cmk-dead-letter-description").map(|v| v.to_string());
            format!("{:?}: {:?} {}", m.message_id, m.dead_letter_reason, ours.unwrap_or_default())
        })
        .collect()
}
