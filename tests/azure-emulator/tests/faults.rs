//! Fault injection: statuses with Retry-After shaped per service, `times`, seeded probability, delay and reset.

use std::time::{Duration, Instant};

use azure_emulator::control::{AzureClient, Client};
use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

const OPENID: &str =
    "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0/.well-known/openid-configuration";

async fn start() -> Emulator {
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: None, host: None };
    Emulator::start(options).await.unwrap()
}

fn respond(host: &str, status: u16, retry_after: Option<u64>) -> FaultRule {
    FaultRule {
        matcher: FaultMatch { host: Some(host.into()), ..FaultMatch::default() },
        action: FaultAction::Respond { status, retry_after, error_code: None, message: Some("slow down".into()) },
        times: None,
        probability: None,
        seed: None,
    }
}

#[tokio::test]
async fn status_with_retry_after_fires_n_times_in_the_entra_shape() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let azure = AzureClient::new(emulator.url());
    let id = control
        .add_fault(&FaultRule { times: Some(2), ..respond("login.microsoftonline.com", 429, Some(1)) })
        .await
        .unwrap();
    for _ in 0..2 {
        let response = azure.get(OPENID).send().await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_codes"], serde_json::json!([90033]));
        assert!(body["error_description"].as_str().unwrap().contains("slow down"));
    }
    assert_eq!(azure.get(OPENID).send().await.unwrap().status(), 200);
    let listed: Value =
        reqwest::get(format!("{}/_emulator/faults", emulator.url())).await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["fired"], 2);
    // Responses from faults are logged like any other.
    let statuses: Vec<u16> = control.requests(None).await.unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn error_bodies_follow_the_target_service() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let azure = AzureClient::new(emulator.url());
    control.add_fault(&respond("*", 503, None)).await.unwrap();

    let arm: Value = azure
        .get("https://management.azure.com/subscriptions/s?api-version=2021-04-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(arm["error"]["code"], "ServiceUnavailable");
    assert!(arm["error"].get("innererror").is_none());
    let graph: Value =
        azure.get("https://graph.microsoft.com/v1.0/applications/x").send().await.unwrap().json().await.unwrap();
    assert!(graph["error"]["innerError"]["request-id"].is_string());
    let vault: Value =
        azure.get("https://kv1.vault.azure.net/keys/k?api-version=7.4").send().await.unwrap().json().await.unwrap();
    assert_eq!(vault["error"]["innererror"]["code"], "ServiceUnavailable");
    let bus = azure.get("https://ns1.servicebus.windows.net/onboarding/messages/head").send().await.unwrap();
    assert_eq!(bus.status(), 503);
    assert!(bus.text().await.unwrap().starts_with("<Error><Code>503</Code>"));
}

#[tokio::test]
async fn seeded_probability_is_reproducible() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let emulator = start().await;
        let rule =
            FaultRule { probability: Some(0.5), seed: Some(seed), ..respond("login.microsoftonline.com", 500, None) };
        Client::new(emulator.url()).add_fault(&rule).await.unwrap();
        let azure = AzureClient::new(emulator.url());
        let mut fired = Vec::new();
        for _ in 0..40 {
            fired.push(azure.get(OPENID).send().await.unwrap().status() == 500);
        }
        fired
    }
    let first = pattern(42).await;
    assert_eq!(first, pattern(42).await);
    let hits = first.iter().filter(|f| **f).count();
    assert!((8..=32).contains(&hits), "{hits} of 40 fired at p=0.5");
    assert_ne!(first, pattern(7).await);
}

#[tokio::test]
async fn one_of_picks_each_action_reproducibly_from_the_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let emulator = start().await;
        let rule = FaultRule {
            action: FaultAction::OneOf {
                one_of: vec![
                    FaultAction::Respond { status: 429, retry_after: Some(1), error_code: None, message: None },
                    FaultAction::Respond { status: 503, retry_after: Some(2), error_code: None, message: None },
                    FaultAction::Delay { delay_ms: 1 },
                ],
            },
            probability: Some(0.5),
            seed: Some(seed),
            ..respond("login.microsoftonline.com", 500, None)
        };
        Client::new(emulator.url()).add_fault(&rule).await.unwrap();
        let azure = AzureClient::new(emulator.url());
        let mut statuses = Vec::new();
        for _ in 0..60 {
            let response = azure.get(OPENID).send().await.unwrap();
            let status = response.status().as_u16();
            match status {
                429 => assert_eq!(response.headers()["retry-after"], "1"),
                503 => assert_eq!(response.headers()["retry-after"], "2"),
                _ => assert_eq!(status, 200),
            }
            statuses.push(status);
        }
        statuses
    }
    let first = pattern(11).await;
    assert_eq!(first, pattern(11).await, "the same seed gives the same run");
    for status in [200, 429, 503] {
        assert!(first.contains(&status), "{status} never came up: {first:?}");
    }
    assert_ne!(first, pattern(12).await);
}

#[tokio::test]
async fn the_managed_identity_endpoint_fails_in_app_services_shape() {
    let emulator = start().await;
    let rule = FaultRule {
        matcher: FaultMatch { path_contains: Some("/msi/token".into()), ..FaultMatch::default() },
        ..respond("ignored", 503, Some(1))
    };
    Client::new(emulator.url()).add_fault(&rule).await.unwrap();
    let response =
        reqwest::get(format!("{}/msi/token?resource=x&api-version=2019-08-01", emulator.url())).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 503);
    assert_eq!(body["message"], "slow down");
    assert!(body["correlationId"].is_string(), "{body}");
}

#[tokio::test]
async fn delay_then_serve() {
    let emulator = start().await;
    let rule =
        FaultRule { action: FaultAction::Delay { delay_ms: 300 }, ..respond("login.microsoftonline.com", 500, None) };
    Client::new(emulator.url()).add_fault(&rule).await.unwrap();
    let started = Instant::now();
    let response = AzureClient::new(emulator.url()).get(OPENID).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn reset_drops_the_connection_before_any_response() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let rule = FaultRule {
        action: FaultAction::Reset { reset: true },
        times: Some(1),
        ..respond("graph.microsoft.com", 500, None)
    };
    let id = control.add_fault(&rule).await.unwrap();
    let azure = AzureClient::new(emulator.url());
    let error =
        azure.get("https://graph.microsoft.com/v1.0/applications/x").send().await.expect_err("connection dropped");
    assert!(!error.is_status() && error.status().is_none(), "{error:?}");
    // The rule fired once; the next request is served (401: no token).
    let response = azure.get("https://graph.microsoft.com/v1.0/applications/x").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let delete =
        reqwest::Client::new().delete(format!("{}/_emulator/faults/{id}", emulator.url())).send().await.unwrap();
    assert_eq!(delete.status(), 204);
    let again =
        reqwest::Client::new().delete(format!("{}/_emulator/faults/{id}", emulator.url())).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn rules_match_on_method_and_path_and_can_be_cleared() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let rule = FaultRule {
        matcher: FaultMatch {
            host: Some("login.microsoftonline.com".into()),
            method: Some("POST".into()),
            path_contains: Some("/oauth2/".into()),
        },
        ..respond("ignored", 429, Some(2))
    };
    control.add_fault(&rule).await.unwrap();
    let azure = AzureClient::new(emulator.url());
    assert_eq!(azure.get(OPENID).send().await.unwrap().status(), 200);
    let token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
    assert_eq!(azure.post(token_url).send().await.unwrap().status(), 429);
    control.clear_faults().await.unwrap();
    assert_eq!(azure.post(token_url).send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn invalid_rules_are_refused() {
    let emulator = start().await;
    let http = reqwest::Client::new();
    for body in [
        r#"{"action":{"status":429},"probability":2}"#,
        r#"{"action":{"bogus":true}}"#,
        r#"{"action":{"status":42}}"#,
        r#"{"action":{"oneOf":[]}}"#,
    ] {
        let response = http
            .post(format!("{}/_emulator/faults", emulator.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{body}: {}", response.status());
    }
}
