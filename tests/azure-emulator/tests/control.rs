//! The control surface: scenario and changes, state dump, request log, clock and host status round trips.

use azure_emulator::control::{AzureClient, Client, ControlError};
use azure_emulator::scenario::{Change, FederatedIdentityCredential, ServicePrincipal};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use serde_json::Value;

const APP_OBJECT_ID: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const APP_ID: &str = "aaaaaaaa-0000-0000-0000-00000000a001";
const CUSTOMER_WITHOUT_SP: &str = "33333333-3333-3333-3333-333333333333";

fn scenario() -> Scenario {
    serde_json::from_str(include_str!("data/entra-scenario.json")).unwrap()
}

async fn start_empty() -> Emulator {
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: None, host: None };
    Emulator::start(options).await.unwrap()
}

#[tokio::test]
async fn health_answers() {
    let emulator = start_empty().await;
    let body: Value = reqwest::get(format!("{}/_emulator/health", emulator.url())).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["url"], emulator.url());
}

#[tokio::test]
async fn scenario_and_changes_round_trip_through_the_state_dump() {
    let emulator = start_empty().await;
    let control = Client::new(emulator.url());
    let before = control.state().await.unwrap();
    assert_eq!(before["entra"]["tenants"], serde_json::json!([]));
    for part in ["arm", "keyVault", "entra", "serviceBus", "host"] {
        assert!(before.get(part).is_some(), "{part} missing from {before}");
    }

    control.load_scenario(&scenario()).await.unwrap();
    let state = control.state().await.unwrap();
    assert_eq!(state["entra"]["tenants"].as_array().unwrap().len(), 4);
    assert_eq!(state["entra"]["applications"][0]["federatedIdentityCredentials"][0]["name"], "cmk-uami");

    let credential = FederatedIdentityCredential {
        id: None,
        name: "added-at-run-time".into(),
        issuer: "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0".into(),
        subject: "another-principal".into(),
        audiences: vec!["api://AzureADTokenExchange".into()],
        description: None,
    };
    let sp = ServicePrincipal {
        id: "cccccccc-0000-0000-0000-0000000000aa".into(),
        app_id: APP_ID.into(),
        tenant_id: CUSTOMER_WITHOUT_SP.into(),
        account_enabled: true,
    };
    control
        .apply_changes(&[
            Change::AddFederatedCredential { app_object_id: APP_OBJECT_ID.into(), credential },
            Change::AddServicePrincipal { service_principal: sp },
        ])
        .await
        .unwrap();
    let state = control.state().await.unwrap();
    let credentials = state["entra"]["applications"][0]["federatedIdentityCredentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 2);
    assert!(credentials[1]["id"].is_string(), "an id is assigned");
    let sps = state["entra"]["servicePrincipals"].as_array().unwrap();
    assert!(sps.iter().any(|sp| sp["tenantId"] == CUSTOMER_WITHOUT_SP));

    // A change that does not apply is refused with its reason.
    let error = control
        .apply_changes(&[Change::RemoveServicePrincipal { tenant_id: "nobody".into(), app_id: APP_ID.into() }])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ControlError::Status { status: 400, body } if body.contains("no service principal")),
        "{error}"
    );

    // A scenario that contradicts itself is refused and the world is kept.
    let mut broken = scenario();
    broken.applications[0].tenant_id = "unknown-tenant".into();
    let error = control.load_scenario(&broken).await.unwrap_err();
    assert!(matches!(error, ControlError::Status { status: 400, .. }), "{error}");
    assert_eq!(control.state().await.unwrap()["entra"]["tenants"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn request_log_keeps_order_filters_and_clears() {
    let emulator = start_empty().await;
    let control = Client::new(emulator.url());
    let azure = AzureClient::new(emulator.url());
    let openid = "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration";
    azure.get(openid).send().await.unwrap();
    azure.get("https://graph.microsoft.com/v1.0/applications/x?$select=id").send().await.unwrap();
    azure.get(openid).send().await.unwrap();
    // Control calls themselves are not logged.
    let all = control.requests(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[1].host, "graph.microsoft.com");
    assert_eq!(all[1].path, "/v1.0/applications/x");
    assert_eq!(all[1].url, "https://graph.microsoft.com/v1.0/applications/x?$select=id");
    assert_eq!((all[1].method.as_str(), all[1].status), ("GET", 401));
    let login = control.requests(Some("login.microsoftonline.com")).await.unwrap();
    assert_eq!(login.len(), 2);
    control.clear_requests().await.unwrap();
    assert!(control.requests(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn clock_advances_and_never_goes_back() {
    let emulator = start_empty().await;
    let control = Client::new(emulator.url());
    let before = emulator.shared().clock.now();
    control.advance_clock(std::time::Duration::from_secs(3600)).await.unwrap();
    let offset = emulator.shared().clock.offset();
    assert!(offset >= time::Duration::hours(1), "{offset}");
    assert!(emulator.shared().clock.now() - before >= time::Duration::hours(1));
    let response = reqwest::Client::new()
        .post(format!("{}/_emulator/clock/advance", emulator.url()))
        .json(&serde_json::json!({ "seconds": -5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn host_status_is_served() {
    let emulator = start_empty().await;
    let status = Client::new(emulator.url()).host_status().await.unwrap();
    assert_eq!(status, emulator.shared().host.status());
}
