//! Propagation windows, on the emulator's clock: a federated credential added, changed or deleted (through the
//! control surface or Graph) and a service principal created through Graph reach the token endpoint only after the
//! scenario's delays; until then the answers are Entra's for what is not there yet (AADSTS70021, AADSTS700016).
//! The role-assignment window is covered per service in `arm.rs`, `keyvault.rs`, `servicebus.rs` and `host.rs`.

use std::time::Duration;

use azure_emulator::control::{AzureClient, Client};
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::scenario::{Change, FederatedIdentityCredential};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::Method;
use serde_json::{Value, json};

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const CUSTOMER_WITHOUT_SP: &str = "33333333-3333-3333-3333-333333333333";
const APP_OBJECT_ID: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const APP_ID: &str = "aaaaaaaa-0000-0000-0000-00000000a001";
/// A workload the scenario's credentials do not name yet.
const NEW_SUBJECT: &str = "bbbbbbbb-0000-0000-0000-00000000b0ff";
const EXCHANGE: &str = "api://AzureADTokenExchange";
const GRAPH: &str = "https://graph.microsoft.com/v1.0";
const SP_DELAY: Duration = Duration::from_secs(120);
const FIC_DELAY: Duration = Duration::from_secs(300);

async fn start(scenario: Scenario) -> Emulator {
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    Emulator::start(options).await.expect("emulator starts")
}

fn scenario() -> Scenario {
    serde_json::from_str(include_str!("data/entra-scenario.json")).expect("scenario parses")
}

/// An assertion as a managed identity with principal `subject` in the ISV tenant would present it.
fn assertion(emulator: &Emulator, subject: &str) -> String {
    let tokens = &emulator.shared().tokens;
    let who = Subject { tenant_id: ISV, object_id: subject, client_id: "c", mi_resource_id: None };
    tokens.mint(Claims::issue(Default::default(), &who, EXCHANGE, tokens.now(), 24 * 3600))
}

/// Entra's error number for the exchange, or 0 on success.
async fn exchange(emulator: &Emulator, tenant: &str, assertion: &str) -> u64 {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", APP_ID),
        ("scope", "https://vault.azure.net/.default"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
    ];
    let response = AzureClient::new(emulator.url())
        .post(&format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    if status == 200 { 0 } else { body["error_codes"][0].as_u64().unwrap() }
}

/// A Graph token for the function app's system identity (ISV tenant).
async fn graph_token(emulator: &Emulator) -> String {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/msi/token", emulator.url()))
        .query(&[("api-version", "2019-08-01"), ("resource", "https://graph.microsoft.com")])
        .header("X-IDENTITY-HEADER", &emulator.shared().identity_header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn graph(emulator: &Emulator, method: Method, url: &str, body: Option<Value>) -> u16 {
    let token = graph_token(emulator).await;
    let mut request = AzureClient::new(emulator.url()).request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("prefer", "create-if-missing").json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

fn credential(name: &str, subject: &str) -> Value {
    json!({
        "name": name,
        "issuer": format!("https://login.microsoftonline.com/{ISV}/v2.0"),
        "subject": subject,
        "audiences": [EXCHANGE],
    })
}

async fn advance(emulator: &Emulator, by: Duration) {
    Client::new(emulator.url()).advance_clock(by).await.unwrap();
}

#[tokio::test]
async fn a_credential_added_through_the_control_surface_works_after_the_delay() {
    let emulator = start(scenario()).await;
    let new_workload = assertion(&emulator, NEW_SUBJECT);
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 70021, "no credential names it");
    let added = FederatedIdentityCredential {
        id: None,
        name: "new-workload".into(),
        issuer: format!("https://login.microsoftonline.com/{ISV}/v2.0"),
        subject: NEW_SUBJECT.into(),
        audiences: vec![EXCHANGE.into()],
        description: None,
    };
    let change = Change::AddFederatedCredential { app_object_id: APP_OBJECT_ID.into(), credential: added };
    Client::new(emulator.url()).apply_changes(&[change]).await.unwrap();
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 70021, "added, not propagated");
    advance(&emulator, FIC_DELAY - Duration::from_secs(1)).await;
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 70021, "one second before");
    advance(&emulator, Duration::from_secs(1)).await;
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 0, "propagated");
}

#[tokio::test]
async fn graph_writes_to_credentials_reach_token_issuance_after_the_delay() {
    let emulator = start(scenario()).await;
    let existing = assertion(&emulator, "bbbbbbbb-0000-0000-0000-00000000b002");
    let new_workload = assertion(&emulator, NEW_SUBJECT);
    let collection = format!("{GRAPH}/applications/{APP_OBJECT_ID}/federatedIdentityCredentials");

    // The handler's ensure mode: PATCH …(name='…') with Prefer: create-if-missing. Graph shows it at once.
    let upsert = format!("{GRAPH}/applications/{APP_OBJECT_ID}/federatedIdentityCredentials(name='new-workload')");
    assert_eq!(graph(&emulator, Method::PATCH, &upsert, Some(credential("new-workload", NEW_SUBJECT))).await, 201);
    assert_eq!(graph(&emulator, Method::GET, &format!("{collection}/new-workload"), None).await, 200);
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 70021);
    advance(&emulator, FIC_DELAY).await;
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 0);

    // Changing the subject: the old one keeps working, the new one not, until the change propagates.
    let moved = credential("new-workload", "bbbbbbbb-0000-0000-0000-00000000b0fe");
    assert_eq!(graph(&emulator, Method::PATCH, &upsert, Some(moved)).await, 204);
    let moved_workload = assertion(&emulator, "bbbbbbbb-0000-0000-0000-00000000b0fe");
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 0);
    assert_eq!(exchange(&emulator, CUSTOMER, &moved_workload).await, 70021);
    advance(&emulator, FIC_DELAY).await;
    assert_eq!(exchange(&emulator, CUSTOMER, &new_workload).await, 70021);
    assert_eq!(exchange(&emulator, CUSTOMER, &moved_workload).await, 0);

    // Deleting: Graph forgets it at once, token issuance after the delay.
    assert_eq!(graph(&emulator, Method::DELETE, &format!("{collection}/cmk-uami"), None).await, 204);
    assert_eq!(graph(&emulator, Method::GET, &format!("{collection}/cmk-uami"), None).await, 404);
    assert_eq!(exchange(&emulator, CUSTOMER, &existing).await, 0, "deleted, not propagated");
    advance(&emulator, FIC_DELAY).await;
    assert_eq!(exchange(&emulator, CUSTOMER, &existing).await, 70021);
}

#[tokio::test]
async fn a_service_principal_created_through_graph_signs_in_after_the_delay() {
    let emulator = start(scenario()).await;
    let workload = assertion(&emulator, "bbbbbbbb-0000-0000-0000-00000000b002");
    // Remove the ISV-tenant service principal and let that propagate, so the ISV's own Graph token can create it.
    let control = Client::new(emulator.url());
    let remove = Change::RemoveServicePrincipal { tenant_id: ISV.into(), app_id: APP_ID.into() };
    control.apply_changes(&[remove]).await.unwrap();
    advance(&emulator, SP_DELAY).await;
    assert_eq!(exchange(&emulator, ISV, &workload).await, 700016);
    let token = graph_token(&emulator).await;
    let response = AzureClient::new(emulator.url())
        .post(&format!("{GRAPH}/servicePrincipals"))
        .bearer_auth(token)
        .json(&json!({ "appId": APP_ID }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(graph(&emulator, Method::GET, &format!("{GRAPH}/servicePrincipals(appId='{APP_ID}')"), None).await, 200);
    assert_eq!(exchange(&emulator, ISV, &workload).await, 700016, "created, not replicated to token issuance");
    advance(&emulator, SP_DELAY).await;
    assert_eq!(exchange(&emulator, ISV, &workload).await, 0);
}

#[tokio::test]
async fn zero_delays_make_changes_effective_at_once() {
    let mut instant = scenario();
    instant.propagation.service_principal_seconds = 0;
    instant.propagation.federated_credential_seconds = 0;
    let emulator = start(instant).await;
    let workload = assertion(&emulator, "bbbbbbbb-0000-0000-0000-00000000b002");
    let sp = serde_json::from_value(json!({
        "id": "cccccccc-0000-0000-0000-0000000000fe", "appId": APP_ID, "tenantId": CUSTOMER_WITHOUT_SP
    }))
    .unwrap();
    Client::new(emulator.url()).apply_changes(&[Change::AddServicePrincipal { service_principal: sp }]).await.unwrap();
    assert_eq!(exchange(&emulator, CUSTOMER_WITHOUT_SP, &workload).await, 0);
}

#[tokio::test]
async fn the_state_dump_shows_when_a_grant_takes_effect() {
    let mut with_vault = scenario();
    with_vault.vaults =
        serde_json::from_value(json!([{ "name": "kv", "tenantId": CUSTOMER, "keys": [{ "name": "k" }] }])).unwrap();
    let emulator = start(with_vault).await;
    let control = Client::new(emulator.url());
    let grant = serde_json::from_value(json!({
        "op": "grantRole", "vault": "kv",
        "assignment": { "principalId": "cccccccc-0000-0000-0000-000000000001", "role": "Key Vault Crypto Service Encryption User" }
    }))
    .unwrap();
    control.apply_changes(&[grant]).await.unwrap();
    let state = control.state().await.unwrap();
    let assignment = &state["rbac"]["roleAssignments"][0];
    assert_eq!(assignment["realm"], "vault:kv.vault.azure.net");
    assert_eq!(assignment["roleDefinitionId"], "e147488a-f6f5-4113-8e2d-b22465e65bf6");
    assert!(assignment["effectiveAt"].is_string(), "{state}");
    assert_eq!(state["rbac"]["inForce"], json!([]));
    advance(&emulator, Duration::from_secs(600)).await;
    let state = control.state().await.unwrap();
    assert!(state["rbac"]["roleAssignments"][0]["effectiveAt"].is_null());
    assert_eq!(state["rbac"]["inForce"].as_array().unwrap().len(), 1);
}
