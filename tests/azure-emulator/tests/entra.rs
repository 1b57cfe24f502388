//! Entra ID: the managed-identity endpoint and the federated client-assertion exchange, with each of its errors.

use azure_emulator::control::{AzureClient, Client};
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::scenario::{Change, ServicePrincipal};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use serde_json::Value;

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const CUSTOMER_WITHOUT_SP: &str = "33333333-3333-3333-3333-333333333333";
const CUSTOMER_WITH_DISABLED_SP: &str = "44444444-4444-4444-4444-444444444444";
const APP_ID: &str = "aaaaaaaa-0000-0000-0000-00000000a001";
const SINGLE_TENANT_APP_ID: &str = "aaaaaaaa-0000-0000-0000-00000000a002";
const SP_IN_CUSTOMER: &str = "cccccccc-0000-0000-0000-000000000001";
const UAMI_CLIENT_ID: &str = "bbbbbbbb-0000-0000-0000-00000000b001";
const UAMI_PRINCIPAL_ID: &str = "bbbbbbbb-0000-0000-0000-00000000b002";
const UAMI_RESOURCE_ID: &str = "/subscriptions/55555555-5555-5555-5555-555555555555/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";
const SYSTEM_PRINCIPAL_ID: &str = "dddddddd-0000-0000-0000-00000000d002";
const LOGIN: &str = "https://login.microsoftonline.com";
const EXCHANGE: &str = "api://AzureADTokenExchange";

fn scenario() -> Scenario {
    serde_json::from_str(include_str!("data/entra-scenario.json")).expect("scenario parses")
}

async fn start() -> Emulator {
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario()), host: None };
    Emulator::start(options).await.expect("emulator starts")
}

/// `GET /msi/token` as `azure_identity` sends it on App Service.
async fn msi(emulator: &Emulator, resource: &str, id: Option<(&str, &str)>, header: &str) -> reqwest::Response {
    let mut query = vec![("api-version", "2019-08-01"), ("resource", resource)];
    query.extend(id);
    reqwest::Client::new()
        .get(format!("{}/msi/token", emulator.url()))
        .query(&query)
        .header("X-IDENTITY-HEADER", header)
        .header("metadata", "true")
        .send()
        .await
        .unwrap()
}

async fn uami_assertion(emulator: &Emulator) -> String {
    let response =
        msi(emulator, EXCHANGE, Some(("client_id", UAMI_CLIENT_ID)), &emulator.shared().identity_header).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn exchange(emulator: &Emulator, tenant: &str, client_id: &str, assertion: &str, scope: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
    ];
    token_request(emulator, tenant, &form).await
}

async fn token_request(emulator: &Emulator, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = AzureClient::new(emulator.url())
        .post(&format!("{LOGIN}/{tenant}/oauth2/v2.0/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn assert_entra_error(status: u16, body: &Value, expected_status: u16, code: u64) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "{description}");
    for field in ["error", "timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "missing {field} in {body}");
    }
}

/// Claims like the UAMI's exchange token, for tests that need one wrong field.
fn uami_claims(emulator: &Emulator) -> Claims {
    let subject = Subject {
        tenant_id: ISV,
        object_id: UAMI_PRINCIPAL_ID,
        client_id: UAMI_CLIENT_ID,
        mi_resource_id: Some(UAMI_RESOURCE_ID),
    };
    Claims::issue(Default::default(), &subject, EXCHANGE, emulator.shared().tokens.now(), 3600)
}

#[tokio::test]
async fn the_federated_chain_yields_a_customer_tenant_token() {
    let emulator = start().await;
    let assertion = uami_assertion(&emulator).await;
    let mi = emulator.shared().tokens.verify(&assertion).unwrap();
    assert_eq!(mi.iss, format!("{LOGIN}/{ISV}/v2.0"));
    assert_eq!((mi.sub.as_str(), mi.oid.as_str(), mi.aud.as_str()), (UAMI_PRINCIPAL_ID, UAMI_PRINCIPAL_ID, EXCHANGE));
    assert_eq!(mi.xms_mirid.as_deref(), Some(UAMI_RESOURCE_ID));
    assert_eq!(mi.idtyp.as_deref(), Some("app"));

    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &assertion, "https://vault.azure.net/.default").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 3000);
    assert!(body["ext_expires_in"].is_i64());
    let claims = emulator.shared().tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.tid, CUSTOMER);
    assert_eq!(claims.oid, SP_IN_CUSTOMER);
    assert_eq!(claims.appid.as_deref(), Some(APP_ID));
    assert_eq!(claims.aud, "https://vault.azure.net");
    assert_eq!(claims.iss, format!("https://sts.windows.net/{CUSTOMER}/"));
}

#[tokio::test]
async fn directory_errors_of_the_exchange() {
    let emulator = start().await;
    let assertion = uami_assertion(&emulator).await;
    let scope = "https://vault.azure.net/.default";
    let (status, body) = exchange(&emulator, CUSTOMER_WITHOUT_SP, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
    assert_eq!(body["error"], "unauthorized_client");
    let (status, body) = exchange(&emulator, CUSTOMER, SINGLE_TENANT_APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
    let (status, body) = exchange(&emulator, "99999999-9999-9999-9999-999999999999", APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 90002);
    let (status, body) = exchange(&emulator, CUSTOMER_WITH_DISABLED_SP, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 7000112);
    let (status, body) = exchange(&emulator, CUSTOMER, "aaaaaaaa-0000-0000-0000-0000000fffff", &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
    // The single-tenant app works in its home tenant.
    let (status, body) = exchange(&emulator, ISV, SINGLE_TENANT_APP_ID, &assertion, scope).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn federated_credential_mismatches_name_the_part() {
    let emulator = start().await;
    let tokens = &emulator.shared().tokens;
    let scope = "https://vault.azure.net/.default";
    let cases = [
        (Claims { iss: format!("{LOGIN}/{CUSTOMER}/v2.0"), ..uami_claims(&emulator) }, "issuer"),
        (Claims { sub: "bbbbbbbb-0000-0000-0000-00000000FFFF".into(), ..uami_claims(&emulator) }, "subject"),
        // Same GUID in another case: subjects are case-sensitive.
        (Claims { sub: UAMI_PRINCIPAL_ID.to_uppercase(), ..uami_claims(&emulator) }, "subject"),
        (Claims { aud: "https://management.azure.com".into(), ..uami_claims(&emulator) }, "audience"),
        (Claims { iss: format!("{LOGIN}/{ISV}/v2.0 "), ..uami_claims(&emulator) }, "issuer"),
    ];
    for (claims, part) in cases {
        let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &tokens.mint(claims), scope).await;
        assert_entra_error(status, &body, 400, 70021);
        assert_eq!(body["error"], "invalid_client");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains("No matching federated identity record found for presented assertion"),
            "{description}"
        );
        assert!(description.contains(&format!("assertion {part} '")), "{part}: {description}");
    }
}

#[tokio::test]
async fn expired_and_foreign_assertions_are_refused() {
    let emulator = start().await;
    let scope = "https://vault.azure.net/.default";
    let assertion = uami_assertion(&emulator).await;
    let other = start().await;
    let foreign = uami_assertion(&other).await;
    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &foreign, scope).await;
    assert_entra_error(status, &body, 400, 50027);
    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, "not-a-jwt", scope).await;
    assert_entra_error(status, &body, 400, 50027);

    Client::new(emulator.url()).advance_clock(std::time::Duration::from_secs(25 * 3600)).await.unwrap();
    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700024);
    // The directory rules come first: a missing service principal is reported even for an expired assertion.
    let (status, body) = exchange(&emulator, CUSTOMER_WITHOUT_SP, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
}

#[tokio::test]
async fn request_shape_errors() {
    let emulator = start().await;
    let assertion = uami_assertion(&emulator).await;
    let jwt = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let base = |scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", APP_ID),
            ("scope", scope),
            ("client_assertion_type", jwt),
        ]
    };
    let mut missing_client = base("https://vault.azure.net/.default");
    missing_client.retain(|(k, _)| *k != "client_id");
    missing_client.push(("client_assertion", &assertion));
    let (status, body) = token_request(&emulator, CUSTOMER, &missing_client).await;
    assert_entra_error(status, &body, 400, 900144);
    assert!(body["error_description"].as_str().unwrap().contains("'client_id'"));

    let mut no_default = base("https://vault.azure.net/keys.read");
    no_default.push(("client_assertion", &assertion));
    let (status, body) = token_request(&emulator, CUSTOMER, &no_default).await;
    assert_entra_error(status, &body, 400, 1002012);
    assert_eq!(body["error"], "invalid_scope");

    let mut two = base("https://vault.azure.net/.default https://management.azure.com/.default");
    two.push(("client_assertion", &assertion));
    let (status, body) = token_request(&emulator, CUSTOMER, &two).await;
    assert_entra_error(status, &body, 400, 70011);

    let mut password = base("https://vault.azure.net/.default");
    password[0] = ("grant_type", "password");
    let (status, body) = token_request(&emulator, CUSTOMER, &password).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn installing_and_removing_the_app_changes_the_outcome_once_replicated() {
    let emulator = start().await;
    let control = Client::new(emulator.url());
    let assertion = uami_assertion(&emulator).await;
    let scope = "https://vault.azure.net/.default";
    // The scenario sets no propagation: a service principal takes the default 120 s to reach token issuance.
    let replicated = std::time::Duration::from_secs(120);
    control
        .apply_changes(&[Change::RemoveServicePrincipal { tenant_id: CUSTOMER.into(), app_id: APP_ID.into() }])
        .await
        .unwrap();
    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &assertion, scope).await;
    assert_eq!(status, 200, "an uninstalled app keeps its tokens until the removal replicates: {body}");
    control.advance_clock(replicated).await.unwrap();
    let (status, body) = exchange(&emulator, CUSTOMER, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
    let sp = ServicePrincipal {
        id: "cccccccc-0000-0000-0000-0000000000ff".into(),
        app_id: APP_ID.into(),
        tenant_id: CUSTOMER_WITHOUT_SP.into(),
        account_enabled: true,
    };
    control.apply_changes(&[Change::AddServicePrincipal { service_principal: sp }]).await.unwrap();
    let (status, body) = exchange(&emulator, CUSTOMER_WITHOUT_SP, APP_ID, &assertion, scope).await;
    assert_entra_error(status, &body, 400, 700016);
    control.advance_clock(replicated).await.unwrap();
    let (status, body) = exchange(&emulator, CUSTOMER_WITHOUT_SP, APP_ID, &assertion, scope).await;
    assert_eq!(status, 200, "{body}");
    let claims = emulator.shared().tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.oid, "cccccccc-0000-0000-0000-0000000000ff");
}

#[tokio::test]
async fn storage_rp_can_use_the_exchange_rules_directly() {
    let emulator = start().await;
    let claims = uami_claims(&emulator);
    let now = emulator.shared().clock.now();
    let world = emulator.shared().world.lock().unwrap();
    let sp = world.directory.federated_exchange(Default::default(), APP_ID, CUSTOMER, &claims, now).unwrap();
    assert_eq!(sp.id, SP_IN_CUSTOMER);
    let error =
        world.directory.federated_exchange(Default::default(), APP_ID, CUSTOMER_WITHOUT_SP, &claims, now).unwrap_err();
    assert_eq!((error.status.as_u16(), error.code), (400, 700016));
    assert!(world.directory.managed_identity_by_resource_id(&UAMI_RESOURCE_ID.to_lowercase()).is_some());
}

#[tokio::test]
async fn msi_endpoint_selects_identities_like_app_service() {
    let emulator = start().await;
    let header = emulator.shared().identity_header.clone();
    let arm = "https://management.azure.com";

    let response = msi(&emulator, arm, None, &header).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], arm);
    assert_eq!(body["client_id"], "dddddddd-0000-0000-0000-00000000d001");
    let expires_on: i64 = body["expires_on"].as_str().expect("expires_on is a string").parse().unwrap();
    assert!(expires_on > emulator.shared().tokens.now());
    let claims = emulator.shared().tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!((claims.oid.as_str(), claims.tid.as_str(), claims.aud.as_str()), (SYSTEM_PRINCIPAL_ID, ISV, arm));
    assert_eq!(claims.iss, format!("https://sts.windows.net/{ISV}/"));

    for id in [
        ("client_id", UAMI_CLIENT_ID),
        ("principal_id", UAMI_PRINCIPAL_ID),
        ("object_id", UAMI_PRINCIPAL_ID),
        ("mi_res_id", UAMI_RESOURCE_ID),
    ] {
        let response = msi(&emulator, arm, Some(id), &header).await;
        assert_eq!(response.status(), 200, "{id:?}");
        let body: Value = response.json().await.unwrap();
        let claims = emulator.shared().tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims.oid, UAMI_PRINCIPAL_ID, "{id:?}");
        assert_eq!(body["client_id"], UAMI_CLIENT_ID);
    }

    let response = msi(&emulator, arm, None, "wrong-secret").await;
    assert_eq!(response.status(), 400);
    // An identity that exists but is not attached to the function app is not available to it.
    let response = msi(&emulator, arm, Some(("client_id", "bbbbbbbb-0000-0000-0000-00000000b011")), &header).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    assert!(body["message"].as_str().unwrap().contains("Managed Identity"));
}
