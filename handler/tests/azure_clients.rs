//! ARM, Graph and Key Vault request shapes against a stub proxy: paths, api-versions, bodies, and typed results.

mod azure_support;

use std::sync::Arc;

use azure_support::{CountingToken, Stub, json, transport};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cmk_handler::azure::credentials::CustomerIdentity;
use cmk_handler::azure::graph::{FicSpec, Upserted};
use cmk_handler::azure::{AzureClients, ServiceBusAuth, TokenSource};
use cmk_handler::cloud::Cloud;

const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const CALLER: CustomerIdentity<'static> =
    CustomerIdentity { tenant: TENANT, app_client_id: "app", uami_client_id: None };

const ACCOUNT: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";
const UAMI: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk";

fn clients(stub: &Stub) -> AzureClients {
    let transport = transport(&stub.url);
    let credential = Arc::new(CountingToken::default());
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, credential.clone(), Some(credential));
    let config = azure_support::config(&stub.url, azure_support::fast_retry());
    AzureClients::with_tokens(&config, transport, tokens.clone(), ServiceBusAuth::Bearer(tokens)).unwrap()
}

#[tokio::test]
async fn graph_upserts_federated_credentials_with_prefer_create_if_missing() {
    let stub =
        Stub::start(|_, index| if index == 0 { (201, vec![], String::new()) } else { (204, vec![], String::new()) })
            .await;
    let clients = clients(&stub);
    let spec = FicSpec {
        issuer: "https://login.microsoftonline.com/isv-tenant/v2.0".to_owned(),
        subject: "principal-id".to_owned(),
        audiences: vec!["api://AzureADTokenExchange".to_owned()],
        description: None,
    };

    assert_eq!(
        clients.graph.upsert_federated_credential("app-object", "cmk-fic", &spec).await.unwrap(),
        Upserted::Created
    );
    assert_eq!(
        clients.graph.upsert_federated_credential("app-object", "cmk-fic", &spec).await.unwrap(),
        Upserted::Updated
    );

    let request = &stub.requests()[0];
    assert_eq!(request.method.as_str(), "PATCH");
    assert_eq!(request.path, "/v1.0/applications/app-object/federatedIdentityCredentials(name='cmk-fic')");
    assert_eq!(request.header("prefer"), Some("create-if-missing"));
    assert_eq!(request.header("x-recording-upstream-base-uri"), Some("https://graph.microsoft.com"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "cmk-fic", "issuer": "https://login.microsoftonline.com/isv-tenant/v2.0",
                           "subject": "principal-id", "audiences": ["api://AzureADTokenExchange"]})
    );
}

#[tokio::test]
async fn graph_lists_federated_credentials_across_pages() {
    let stub = Stub::start(|request, _| {
        if request.query.contains_key("page") {
            json(200, serde_json::json!({"value": [{"id": "2", "name": "b", "issuer": "i", "subject": "s2", "audiences": []}]}))
        } else {
            json(
                200,
                serde_json::json!({"value": [{"id": "1", "name": "a", "issuer": "i", "subject": "s1", "audiences": ["x"]}],
                   "@odata.nextLink": "https://graph.microsoft.com/v1.0/applications/app/federatedIdentityCredentials?page=2"}),
            )
        }
    })
    .await;

    let all = clients(&stub).graph.list_federated_credentials("app").await.unwrap();

    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn arm_reads_identities_and_registers_features_and_providers() {
    let stub = Stub::start(|request, _| match request.path.as_str() {
        UAMI => json(
            200,
            serde_json::json!({"id": UAMI, "properties": {"clientId": "client", "principalId": "principal", "tenantId": "tenant"}}),
        ),
        p if p.contains("/Microsoft.Features/") => {
            json(200, serde_json::json!({"name": "Microsoft.Storage/FederatedClientIdentity", "properties": {"state": "Registering"}}))
        }
        _ => json(200, serde_json::json!({"namespace": "Microsoft.Storage", "registrationState": "Registered"})),
    })
    .await;
    let arm = clients(&stub).arm;

    let identity = arm.get_user_assigned_identity(UAMI).await.unwrap();
    let feature = arm.register_feature("s", "Microsoft.Storage", "FederatedClientIdentity").await.unwrap();
    let provider = arm.register_provider("s", "Microsoft.Storage").await.unwrap();

    assert_eq!(
        (identity.client_id.as_str(), identity.principal_id.as_str(), identity.tenant_id.as_str()),
        ("client", "principal", "tenant")
    );
    assert_eq!(feature.properties.state, "Registering");
    assert_eq!(provider.registration_state, "Registered");
    let requests = stub.requests();
    let seen: Vec<(String, String, Option<String>)> =
        requests.iter().map(|r| (r.method.to_string(), r.path.clone(), r.query.get("api-version").cloned())).collect();
    assert_eq!(
        seen,
        vec![
            ("GET".to_owned(), UAMI.to_owned(), Some("2023-01-31".to_owned())),
            (
                "POST".to_owned(),
                "/subscriptions/s/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity/register"
                    .to_owned(),
                Some("2021-07-01".to_owned())
            ),
            ("POST".to_owned(), "/subscriptions/s/providers/Microsoft.Storage/register".to_owned(), Some("2021-04-01".to_owned())),
        ]
    );
}

#[tokio::test]
async fn a_storage_patch_answered_202_follows_the_async_operation_then_reads_the_account() {
    let stub = Stub::start(|request, _| match (request.method.as_str(), request.path.as_str()) {
        ("PATCH", _) => (
            202,
            vec![
                (
                    "azure-asyncoperation",
                    "https://management.azure.com/operations/op1?api-version=2023-05-01".to_owned(),
                ),
                ("retry-after", "0".to_owned()),
            ],
            String::new(),
        ),
        (_, "/operations/op1") => json(200, serde_json::json!({"status": "Succeeded"})),
        _ => json(
            200,
            serde_json::json!({"id": ACCOUNT, "properties": {"encryption": {"keySource": "Microsoft.Keyvault"}}}),
        ),
    })
    .await;
    let arm = clients(&stub).arm;

    let account = arm.update_storage_account(ACCOUNT, &serde_json::json!({"properties": {}})).await.unwrap();

    assert_eq!(account.encryption().unwrap().key_source.as_deref(), Some("Microsoft.Keyvault"));
    let methods: Vec<String> = stub.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(methods, [format!("PATCH {ACCOUNT}"), "GET /operations/op1".to_owned(), format!("GET {ACCOUNT}")]);
}

#[tokio::test]
async fn key_vault_wraps_and_unwraps_with_base64url_without_padding() {
    let stub = Stub::start(|request, _| {
        if request.path == format!("/{TENANT}/oauth2/v2.0/token") {
            return json(
                200,
                serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "kv-token"}),
            );
        }
        if request.header("authorization").is_none() {
            return azure_support::key_vault_challenge(TENANT);
        }
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let encoded = body["value"].as_str().unwrap();
        assert!(!encoded.contains('='), "no padding on the wire: {encoded}");
        let reversed: Vec<u8> = URL_SAFE_NO_PAD.decode(encoded).unwrap().into_iter().rev().collect();
        json(200, serde_json::json!({"kid": "k", "value": URL_SAFE_NO_PAD.encode(reversed)}))
    })
    .await;
    let key_vault = clients(&stub).key_vault;
    let kid = "https://contoso-kv.vault.azure.net/keys/cmk/0123456789abcdef";

    let wrapped = key_vault.wrap_key(&CALLER, kid, "RSA-OAEP-256", &[1, 2, 3, 251, 255]).await.unwrap();
    let unwrapped = key_vault.unwrap_key(&CALLER, kid, "RSA-OAEP-256", &wrapped).await.unwrap();

    assert_eq!(wrapped, [255, 251, 3, 2, 1]);
    assert_eq!(unwrapped, [1, 2, 3, 251, 255]);
    let requests = stub.requests();
    let paths: Vec<String> = requests.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/keys/cmk/0123456789abcdef/wrapkey".to_owned(),
            format!("/{TENANT}/oauth2/v2.0/token"),
            "/keys/cmk/0123456789abcdef/wrapkey".to_owned(),
            "/keys/cmk/0123456789abcdef/unwrapkey".to_owned()
        ],
        "the challenge first, without a token or a body; then the token; then the calls"
    );
    assert!(requests[0].body.is_empty());
    let body: serde_json::Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(body["alg"], "RSA-OAEP-256");
    assert_eq!(requests[2].query.get("api-version").map(String::as_str), Some("7.4"));
    assert_eq!(requests[2].header("authorization"), Some("Bearer kv-token"));
}

/// `StorageAccounts_Create` answered 202: the `Location` is polled (its `Retry-After` honoured) until it answers 200
/// with the account, which is what the call returns; a monitor off the ARM endpoint is refused (it would get an ARM
/// token).
#[tokio::test]
async fn a_storage_create_follows_its_location_to_the_account() {
    let location = "https://management.azure.com/subscriptions/s/providers/Microsoft.Storage/operations/op1?monitor=true&api-version=2023-05-01";
    let stub = Stub::start(move |request, index| match request.method.as_str() {
        "PUT" => (202, vec![("location", location.to_owned()), ("retry-after", "0".to_owned())], String::new()),
        _ if index == 1 => (202, vec![("retry-after", "0".to_owned())], String::new()),
        _ => json(200, serde_json::json!({ "id": ACCOUNT, "properties": { "provisioningState": "Succeeded" } })),
    })
    .await;
    let account = clients(&stub)
        .arm
        .create_storage_account(ACCOUNT, &serde_json::json!({ "location": "westeurope" }))
        .await
        .unwrap();
    assert_eq!(account.id(), ACCOUNT);
    let calls: Vec<String> = stub.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let poll = "GET /subscriptions/s/providers/Microsoft.Storage/operations/op1".to_owned();
    assert_eq!(calls, [format!("PUT {ACCOUNT}"), poll.clone(), poll], "the account comes from the last poll");

    let elsewhere = Stub::start(|_, _| {
        (202, vec![("location", "https://contoso-kv.vault.azure.net/op1".to_owned())], String::new())
    })
    .await;
    let refused = clients(&elsewhere).arm.create_storage_account(ACCOUNT, &serde_json::json!({})).await.unwrap_err();
    assert!(refused.to_string().contains("not on the ARM endpoint"), "{refused}");
    assert_eq!(elsewhere.requests().len(), 1, "no poll goes off the ARM endpoint");
}
