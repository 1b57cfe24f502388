//! Benchmark (done-when 5): replaying 1,000 dead letters on the testbed, in-process against the emulator.
//!
//! `cargo run --release -p cmkctl --example replay_bench [-- COUNT CONCURRENCY]`

use std::time::{Duration, Instant};

use azure_emulator::servicebus::NewMessage;
use azure_emulator::{Emulator, EmulatorOptions};
use clap::Parser;

const NAMESPACE: &str = "northwind-onboarding";
const QUEUE: &str = "onboarding";
const DLQ: &str = "onboarding/$DeadLetterQueue";
const CONNECTION_STRING: &str = "Endpoint=sb://northwind-onboarding.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=ZGVtby1vbmx5LW5vdC1hLXNlY3JldC1rZXktMDAwMDAwMDA=";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let concurrency: String = args.next().unwrap_or_else(|| "16".to_owned());
    let scenario_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/scenario.json");
    let scenario = serde_json::from_str(&std::fs::read_to_string(scenario_path).unwrap()).unwrap();
    let emulator = Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario: Some(scenario),
        host: None,
    })
    .await
    .expect("emulator starts");
    let bus = &emulator.shared().bus;

    let started = Instant::now();
    for i in 0..count {
        let mut message = NewMessage::new(format!(r#"{{"schemaVersion":"1.0","onboardingId":"obd-{i:05}"}}"#));
        message.message_id = Some(format!("msg-{i:05}"));
        message.application_properties.insert("cmk-dead-letter-reason".into(), "KeyDisabled".into());
        bus.send(NAMESPACE, QUEUE, message).unwrap();
        let delivered = bus.receive(NAMESPACE, QUEUE, Duration::from_secs(1)).await.unwrap().unwrap();
        bus.dead_letter(NAMESPACE, QUEUE, delivered.lock_token, "MaxDeliveryCountExceeded", "bench").unwrap();
    }
    eprintln!("seeded {count} dead letters in {:.2?}", started.elapsed());

    let audit = std::env::temp_dir().join(format!("cmkctl-bench-{}.jsonl", std::process::id()));
    let base = ["cmkctl", "--emulator", emulator.url(), "--connection-string", CONNECTION_STRING];
    let run = |extra: &[&str]| cmkctl::Cli::parse_from(base.iter().chain(extra.iter()).copied());

    let list_started = Instant::now();
    let listed = cmkctl::run(run(&["--output", "json", "dlq", "list", "--group-by", "reason"])).await;
    let list_time = list_started.elapsed();

    let replay_started = Instant::now();
    let audit_arg = audit.to_str().unwrap().to_owned();
    let replayed = cmkctl::run(run(&[
        "--output",
        "json",
        "dlq",
        "replay",
        "--yes",
        "--rate",
        "0",
        "--concurrency",
        &concurrency,
        "--audit",
        &audit_arg,
    ]))
    .await;
    let replay_time = replay_started.elapsed();

    let left = bus.peek(NAMESPACE, DLQ, 0, count + 1).unwrap().len();
    let resubmitted = bus.peek(NAMESPACE, QUEUE, 0, count + 1).unwrap().len();
    let audited = std::fs::read_to_string(&audit)
        .map(|t| t.lines().filter(|l| l.contains(r#""record":"result""#)).count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&audit);
    assert_eq!((listed, replayed), (cmkctl::Exit::Ok, cmkctl::Exit::Ok));
    assert_eq!((left, resubmitted, audited), (0, count, count), "every dead letter replayed and audited once");
    println!(
        "dlq list --group-by reason over {count}: {:.2}s; dlq replay of {count} (concurrency {concurrency}, no rate limit): \
         {:.2}s = {:.0} messages/s",
        list_time.as_secs_f64(),
        replay_time.as_secs_f64(),
        count as f64 / replay_time.as_secs_f64()
    );
}
