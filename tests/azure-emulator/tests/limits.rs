//! Latency and Azure's request limits through the router: set on the control surface, time-scaled, answered with
//! the service's 429 and remaining-quota headers.

use std::time::{Duration, Instant};

use azure_emulator::cloud::Cloud;
use azure_emulator::control::{AzureClient, Client};
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::limits::{LatencyRule, LimitsConfig};
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

const ACCOUNT: &str = "https://management.azure.com/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosodata?api-version=2023-05-01";

const ISV_TENANT: &str = "11111111-1111-1111-1111-111111111111";

async fn start() -> Emulator {
    let scenario = serde_json::from_str(&std::fs::read_to_string("../../samples/scenario.json").unwrap()).unwrap();
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    Emulator::start(options).await.unwrap()
}

#[tokio::test]
async fn storage_writes_past_the_rp_limit_get_its_429_and_a_scaled_retry_after() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let azure = AzureClient::new(emulator.url());
    // 1e-3: Azure time barely moves, so the 10-per-second window is still full at the 11th write.
    control.set_limits(&LimitsConfig { time_scale: 1e-3, ..LimitsConfig::default() }).await.unwrap();
    // A verifiable token from a caller with no role: ARM refuses the writes (403), but its throttles and the Storage
    // RP's count them first. Requests without a verifiable token are not counted (no actor to count them against).
    let tokens = &emulator.shared().tokens;
    let caller = "de000000-0000-0000-0000-00000000000f";
    let subject = Subject { tenant_id: ISV_TENANT, object_id: caller, client_id: caller, mi_resource_id: None };
    let token =
        tokens.mint(Claims::issue(Cloud::Public, &subject, "https://management.azure.com/", tokens.now(), 3600));
    let patch = || azure.request(reqwest::Method::PATCH, ACCOUNT).bearer_auth(&token).json(&serde_json::json!({}));
    let unauthenticated =
        azure.request(reqwest::Method::PATCH, ACCOUNT).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    for _ in 0..10 {
        let response = patch().send().await.unwrap();
        assert_ne!(response.status(), 429);
        assert!(response.headers().contains_key("x-ms-ratelimit-remaining-subscription-writes"));
        let resource = response.headers()["x-ms-ratelimit-remaining-resource"].to_str().unwrap().to_owned();
        assert!(resource.starts_with("Microsoft.Storage/Write_ObservationWindow_"), "{resource}");
    }
    let response = patch().send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry_after_ms: u64 = response.headers()["retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!(retry_after_ms >= 900_000, "a 1 s Azure window at scale 1e-3 is ~1000 s real: {retry_after_ms}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let status = control.limits().await.unwrap();
    assert_eq!(status["throttled"]["storage"], 1);
    let statuses: Vec<u16> = control.requests(None).await.unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 1, "throttled requests are logged: {statuses:?}");
}

#[tokio::test]
async fn latency_is_fixed_plus_jitter_divided_by_the_time_scale() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let azure = AzureClient::new(emulator.url());
    let latency = vec![LatencyRule { host: "management.azure.com".into(), fixed_ms: 4000, jitter_ms: 1000 }];
    control
        .set_limits(&LimitsConfig { time_scale: 20.0, latency, seed: Some(7), ..LimitsConfig::default() })
        .await
        .unwrap();
    let started = Instant::now();
    azure.get(ACCOUNT).send().await.unwrap();
    let took = started.elapsed();
    // 4–5 Azure seconds at 20 Azure seconds per real second: 200–250 ms.
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1000), "{took:?}");
    let started = Instant::now();
    azure.get("https://graph.microsoft.com/v1.0/applications").send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200), "other hosts are not slowed");
}
