//! Microsoft Graph: applications, federated identity credentials (upsert, list, limits) and service principals.

use azure_emulator::control::AzureClient;
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::Method;
use serde_json::{Value, json};

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const APP_OBJECT_ID: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const APP_ID: &str = "aaaaaaaa-0000-0000-0000-00000000a001";
const GRAPH: &str = "https://graph.microsoft.com/v1.0";

async fn start() -> Emulator {
    let scenario: Scenario = serde_json::from_str(include_str!("data/entra-scenario.json")).unwrap();
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    Emulator::start(options).await.unwrap()
}

/// A Graph token for the function app's system identity (ISV tenant), from the managed-identity endpoint.
async fn isv_graph_token(emulator: &Emulator) -> String {
    mi_token(emulator, "https://graph.microsoft.com").await
}

async fn mi_token(emulator: &Emulator, resource: &str) -> String {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/msi/token", emulator.url()))
        .query(&[("api-version", "2019-08-01"), ("resource", resource)])
        .header("X-IDENTITY-HEADER", &emulator.shared().identity_header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// A Graph token for the app in `tenant`, through the federated exchange.
async fn app_graph_token(emulator: &Emulator, tenant: &str) -> String {
    let mi: Value = reqwest::Client::new()
        .get(format!("{}/msi/token", emulator.url()))
        .query(&[
            ("api-version", "2019-08-01"),
            ("resource", "api://AzureADTokenExchange"),
            ("client_id", "bbbbbbbb-0000-0000-0000-00000000b001"),
        ])
        .header("X-IDENTITY-HEADER", &emulator.shared().identity_header)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", APP_ID),
        ("scope", "https://graph.microsoft.com/.default"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", mi["access_token"].as_str().unwrap()),
    ];
    let response = AzureClient::new(emulator.url())
        .post(&format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn call(emulator: &Emulator, token: &str, method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    call_with(emulator, token, method, url, body, None).await
}

async fn call_with(
    emulator: &Emulator,
    token: &str,
    method: Method,
    url: &str,
    body: Option<Value>,
    prefer: Option<&str>,
) -> (u16, Value) {
    let mut request = AzureClient::new(emulator.url()).request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(prefer) = prefer {
        request = request.header("Prefer", prefer);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn fic(name: &str, subject: &str) -> Value {
    json!({
        "name": name,
        "issuer": format!("https://login.microsoftonline.com/{ISV}/v2.0"),
        "subject": subject,
        "audiences": ["api://AzureADTokenExchange"],
        "description": "test",
    })
}

fn assert_graph_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string());
    for field in ["date", "request-id", "client-request-id"] {
        assert!(body["error"]["innerError"][field].is_string(), "{field} in {body}");
    }
}

#[tokio::test]
async fn applications_by_id_app_id_and_filter() {
    let emulator = start().await;
    let token = isv_graph_token(&emulator).await;
    let (status, body) =
        call(&emulator, &token, Method::GET, &format!("{GRAPH}/applications/{APP_OBJECT_ID}"), None).await;
    assert_eq!(status, 200);
    assert_eq!((body["id"].as_str(), body["appId"].as_str()), (Some(APP_OBJECT_ID), Some(APP_ID)));
    assert_eq!(body["signInAudience"], "AzureADMultipleOrgs");
    let (status, body) =
        call(&emulator, &token, Method::GET, &format!("{GRAPH}/applications(appId='{APP_ID}')"), None).await;
    assert_eq!((status, body["id"].as_str()), (200, Some(APP_OBJECT_ID)));
    let filter = format!("{GRAPH}/applications?$filter=appId%20eq%20'{APP_ID}'");
    let (status, body) = call(&emulator, &token, Method::GET, &filter, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    let (status, body) = call(&emulator, &token, Method::GET, &format!("{GRAPH}/applications/nope"), None).await;
    assert_graph_error(status, &body, 404, "Request_ResourceNotFound");
}

#[tokio::test]
async fn tokens_are_checked() {
    let emulator = start().await;
    let url = format!("{GRAPH}/applications/{APP_OBJECT_ID}");
    let (status, body) = call(&emulator, "", Method::GET, &url, None).await;
    assert_graph_error(status, &body, 401, "InvalidAuthenticationToken");
    let vault_token = mi_token(&emulator, "https://vault.azure.net").await;
    let (status, body) = call(&emulator, &vault_token, Method::GET, &url, None).await;
    assert_graph_error(status, &body, 401, "InvalidAuthenticationToken");
    // A token from the customer tenant does not see the ISV's application object.
    let customer_token = app_graph_token(&emulator, CUSTOMER).await;
    let (status, body) = call(&emulator, &customer_token, Method::GET, &url, None).await;
    assert_graph_error(status, &body, 404, "Request_ResourceNotFound");
}

#[tokio::test]
async fn federated_credentials_upsert_list_and_delete() {
    let emulator = start().await;
    let token = isv_graph_token(&emulator).await;
    let collection = format!("{GRAPH}/applications/{APP_OBJECT_ID}/federatedIdentityCredentials");
    let by_name = format!("{collection}(name='second')");

    // Without Prefer, a missing credential is a 404.
    let (status, body) = call(&emulator, &token, Method::PATCH, &by_name, Some(fic("second", "s-1"))).await;
    assert_graph_error(status, &body, 404, "Request_ResourceNotFound");
    let (status, body) =
        call_with(&emulator, &token, Method::PATCH, &by_name, Some(fic("second", "s-1")), Some("create-if-missing"))
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "second");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, body) =
        call_with(&emulator, &token, Method::PATCH, &by_name, Some(fic("second", "s-2")), Some("create-if-missing"))
            .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(&emulator, &token, Method::GET, &format!("{collection}/{id}"), None).await;
    assert_eq!((status, body["subject"].as_str()), (200, Some("s-2")));

    let (status, body) = call(&emulator, &token, Method::GET, &collection, None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["value"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cmk-uami", "second"]);

    let (status, _) = call(&emulator, &token, Method::DELETE, &by_name, None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&emulator, &token, Method::GET, &by_name, None).await;
    assert_graph_error(status, &body, 404, "Request_ResourceNotFound");
}

#[tokio::test]
async fn federated_credential_rules() {
    let emulator = start().await;
    let token = isv_graph_token(&emulator).await;
    let collection = format!("{GRAPH}/applications(appId='{APP_ID}')/federatedIdentityCredentials");
    // Duplicate name, then duplicate issuer+subject.
    let (status, body) = call(&emulator, &token, Method::POST, &collection, Some(fic("cmk-uami", "other"))).await;
    assert_graph_error(status, &body, 409, "Request_MultipleObjectsWithSameKeyValue");
    let (status, body) =
        call(&emulator, &token, Method::POST, &collection, Some(fic("copy", "bbbbbbbb-0000-0000-0000-00000000b002")))
            .await;
    assert_graph_error(status, &body, 409, "Request_MultipleObjectsWithSameKeyValue");
    for bad_name in ["ab", "-starts-with-dash", "has space", &"x".repeat(121)] {
        let (status, body) = call(&emulator, &token, Method::POST, &collection, Some(fic(bad_name, "s"))).await;
        assert_graph_error(status, &body, 400, "Request_BadRequest");
    }
    // The scenario has one credential; 19 more reach the limit of 20, the 21st is refused.
    for i in 0..19 {
        let (status, body) =
            call(&emulator, &token, Method::POST, &collection, Some(fic(&format!("fic-{i}"), &format!("s{i}")))).await;
        assert_eq!(status, 201, "{i}: {body}");
    }
    let (status, body) = call(&emulator, &token, Method::POST, &collection, Some(fic("fic-20", "s20"))).await;
    assert_graph_error(status, &body, 400, "Request_BadRequest");
    assert!(body["error"]["message"].as_str().unwrap().contains("20"));
    let upsert = format!("{GRAPH}/applications/{APP_OBJECT_ID}/federatedIdentityCredentials(name='fic-20')");
    let (status, body) =
        call_with(&emulator, &token, Method::PATCH, &upsert, Some(fic("fic-20", "s20")), Some("create-if-missing"))
            .await;
    assert_graph_error(status, &body, 400, "Request_BadRequest");
}

#[tokio::test]
async fn service_principals_lookup_and_create() {
    let emulator = start().await;
    let customer = app_graph_token(&emulator, CUSTOMER).await;
    let url = format!("{GRAPH}/servicePrincipals(appId='{APP_ID}')");
    let (status, body) = call(&emulator, &customer, Method::GET, &url, None).await;
    assert_eq!((status, body["id"].as_str()), (200, Some("cccccccc-0000-0000-0000-000000000001")));
    let (status, body) = call(
        &emulator,
        &customer,
        Method::POST,
        &format!("{GRAPH}/servicePrincipals"),
        Some(json!({ "appId": APP_ID })),
    )
    .await;
    assert_graph_error(status, &body, 409, "Request_MultipleObjectsWithSameKeyValue");
}

#[tokio::test]
async fn posting_a_service_principal_installs_the_app() {
    let emulator = start().await;
    // Remove the ISV-tenant SP so that the ISV's own token can create it.
    let control = azure_emulator::control::Client::new(emulator.url());
    control
        .apply_changes(&[azure_emulator::scenario::Change::RemoveServicePrincipal {
            tenant_id: ISV.into(),
            app_id: APP_ID.into(),
        }])
        .await
        .unwrap();
    let isv = isv_graph_token(&emulator).await;
    let url = format!("{GRAPH}/servicePrincipals(appId='{APP_ID}')");
    let (status, body) = call(&emulator, &isv, Method::GET, &url, None).await;
    assert_graph_error(status, &body, 404, "Request_ResourceNotFound");
    let (status, body) =
        call(&emulator, &isv, Method::POST, &format!("{GRAPH}/servicePrincipals"), Some(json!({ "appId": APP_ID })))
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["appId"], APP_ID);
    let created = body["id"].as_str().unwrap().to_owned();
    let (status, body) = call(&emulator, &isv, Method::GET, &url, None).await;
    assert_eq!((status, body["id"].as_str()), (200, Some(created.as_str())));
}
