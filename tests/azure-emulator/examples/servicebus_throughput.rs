//! Service Bus REST throughput on loopback: sends N messages, then peek-locks and completes them, with C concurrent
//! clients. Run: `cargo run --release -p azure-emulator --example servicebus_throughput -- [N] [C]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use azure_emulator::servicebus::sas_token;
use azure_emulator::{Emulator, EmulatorOptions, Scenario};

const NS: &str = "cmk-ns";
const QUEUE: &str = "bench";
const ROOT_KEY: &str = "cm9vdC1rZXktZm9yLXRlc3Rz";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);

    let scenario: Scenario =
        serde_json::from_str(include_str!("../tests/data/servicebus/scenario.json")).expect("scenario");
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let expiry = emulator.shared().clock.now().unix_timestamp() + 3600;
    let auth =
        sas_token(&format!("https://{NS}.servicebus.windows.net/"), "RootManageSharedAccessKey", ROOT_KEY, expiry);
    let base = emulator.url().to_owned();
    let client = reqwest::Client::new();
    let upstream = format!("https://{NS}.servicebus.windows.net");
    let body =
        r#"{"version":1,"onboardingId":"0f8fad5b-d9cb-469f-a165-70867728950e","storageAccountId":"/subscriptions/x"}"#;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, base, auth, upstream) =
                (client.clone(), next.clone(), base.clone(), auth.clone(), upstream.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let response = client
                        .post(format!("{base}/{QUEUE}/messages"))
                        .header("x-recording-upstream-base-uri", &upstream)
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .header("brokerproperties", r#"{"Label":"bench"}"#)
                        .header("cmk-attempt", "1")
                        .body(body)
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let send_elapsed = started.elapsed();

    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let receivers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, done, base, auth, upstream) =
                (client.clone(), done.clone(), base.clone(), auth.clone(), upstream.clone());
            tokio::spawn(async move {
                while done.load(Ordering::Relaxed) < total {
                    let response = client
                        .post(format!("{base}/{QUEUE}/messages/head?timeout=1"))
                        .header("x-recording-upstream-base-uri", &upstream)
                        .header("authorization", &auth)
                        .send()
                        .await
                        .expect("peek-lock");
                    if response.status() == 204 {
                        continue;
                    }
                    assert_eq!(response.status(), 201);
                    let location = response.headers()["location"].to_str().unwrap().to_owned();
                    let path = location.strip_prefix(&upstream).expect("lock URL on the namespace").to_owned();
                    let _ = response.bytes().await.expect("body");
                    let completed = client
                        .delete(format!("{base}{path}"))
                        .header("x-recording-upstream-base-uri", &upstream)
                        .header("authorization", &auth)
                        .send()
                        .await
                        .expect("complete");
                    assert_eq!(completed.status(), 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for receiver in receivers {
        receiver.await.unwrap();
    }
    let receive_elapsed = started.elapsed();

    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!("messages: {total}, concurrency: {concurrency}");
    println!("send:                 {:>8.0} msg/s ({:.2} s)", rate(total, send_elapsed), send_elapsed.as_secs_f64());
    println!(
        "peek-lock + complete: {:>8.0} msg/s ({:.2} s)",
        rate(total, receive_elapsed),
        receive_elapsed.as_secs_f64()
    );
    println!("end to end:           {:>8.0} msg/s", rate(total, send_elapsed + receive_elapsed));
    emulator.shutdown().await;
}
