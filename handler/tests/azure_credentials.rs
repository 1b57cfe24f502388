//! Credentials through our transport: Entra errors surface with their AADSTS code, and tokens are cached.

mod azure_support;

use std::sync::Arc;

use azure_support::{CountingToken, Recorded, Reply, Stub, json, key_vault_challenge, transport};
use cmk_handler::azure::credentials::CustomerIdentity;
use cmk_handler::azure::{KeyVaultClient, TokenSource};
use cmk_handler::cloud::Cloud;
use cmk_handler::error::{AzureService, Error};

const TENANT: &str = "22222222-2222-2222-2222-222222222222";
const APP: &str = "33333333-3333-3333-3333-333333333333";
const VAULT: &str = "https://contoso-kv.vault.azure.net";
const CALLER: CustomerIdentity<'static> = CustomerIdentity { tenant: TENANT, app_client_id: APP, uami_client_id: None };

fn token_request(request: &Recorded) -> bool {
    request.path == format!("/{TENANT}/oauth2/v2.0/token")
}

/// The vault: its challenge without a token, the key with one.
fn vault(request: &Recorded) -> Reply {
    if request.header("authorization").is_none() { key_vault_challenge(TENANT) } else { key_bundle() }
}

fn key_bundle() -> Reply {
    json(
        200,
        serde_json::json!({
            "key": {"kid": format!("{VAULT}/keys/cmk/0123456789abcdef"), "kty": "RSA",
                    "key_ops": ["wrapKey", "unwrapKey"], "n": "AQAB", "e": "AQAB"},
            "attributes": {"enabled": true, "recoveryLevel": "Recoverable", "recoverableDays": 90}
        }),
    )
}

fn key_vault(stub: &Stub) -> (KeyVaultClient, Arc<CountingToken>) {
    let exchange = Arc::new(CountingToken::default());
    let transport = transport(&stub.url);
    let tokens = TokenSource::from_credentials(
        Cloud::Public,
        &transport,
        Arc::new(CountingToken::default()),
        Some(exchange.clone()),
    );
    (KeyVaultClient::new(transport, tokens, azure_support::fast_retry()), exchange)
}

#[tokio::test]
async fn an_entra_400_surfaces_as_an_azure_error_with_the_aadsts_code() {
    let stub = Stub::start(|request, _| {
        if token_request(request) {
            json(
                400,
                serde_json::json!({
                    "error": "unauthorized_client",
                    "error_description": "AADSTS700016: Application with identifier '33333333-…' was not found in the directory.",
                    "error_codes": [700016],
                    "trace_id": "t", "correlation_id": "c"
                }),
            )
        } else {
            vault(request)
        }
    })
    .await;
    let (key_vault, _) = key_vault(&stub);

    let error = key_vault.get_key(&CALLER, VAULT, "cmk", None).await.unwrap_err();

    let Error::Azure(error) = error else { panic!("expected an Azure error, got {error:?}") };
    assert_eq!(error.service, AzureService::Entra);
    assert_eq!(error.status, 400);
    assert_eq!(error.code.as_deref(), Some("unauthorized_client"));
    assert_eq!(error.inner_code.as_deref(), Some("AADSTS700016"));
    assert!(error.message.contains("was not found in the directory"), "{}", error.message);
    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "the challenge, then the token request; no key call without a token: {requests:?}");
    assert!(requests[0].header("authorization").is_none() && requests[0].path == "/keys/cmk");
    assert_eq!(requests[1].header("x-recording-upstream-base-uri"), Some("https://login.microsoftonline.com"));
}

#[tokio::test]
async fn one_customer_token_request_serves_many_calls() {
    let stub = Stub::start(|request, _| {
        if token_request(request) {
            json(200, serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": "customer-token"}))
        } else {
            vault(request)
        }
    })
    .await;
    let (key_vault, exchange) = key_vault(&stub);

    for _ in 0..5 {
        let key = key_vault.get_key(&CALLER, VAULT, "cmk", None).await.unwrap();
        assert_eq!(key.version(), "0123456789abcdef");
    }

    let requests = stub.requests();
    let token_requests: Vec<_> = requests.iter().filter(|r| token_request(r)).collect();
    assert_eq!(token_requests.len(), 1, "tokens are cached per credential and scope");
    assert_eq!(exchange.calls(), 1, "the assertion is fetched once per token request");
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&token_requests[0].body).into_owned().collect();
    assert_eq!(form.get("client_id").map(String::as_str), Some(APP));
    assert_eq!(form.get("client_assertion").map(String::as_str), Some("static-token"));
    assert_eq!(form.get("scope").map(String::as_str), Some("https://vault.azure.net/.default"));
    let vault_requests: Vec<_> =
        requests.iter().filter(|r| !token_request(r) && r.header("authorization").is_some()).collect();
    assert_eq!(vault_requests.len(), 5);
    assert_eq!(requests.len(), 7, "one challenge, one token request, five key reads");
    for request in vault_requests {
        assert_eq!(request.path, "/keys/cmk");
        assert_eq!(request.header("authorization"), Some("Bearer customer-token"));
        assert_eq!(request.header("x-recording-upstream-base-uri"), Some(VAULT));
    }
}

/// Outside App Service (no `IDENTITY_ENDPOINT`), `azure_identity` asks IMDS; the transport sends that to the proxy.
#[tokio::test]
async fn one_managed_identity_token_request_serves_many_calls() {
    assert!(
        std::env::var_os("IDENTITY_ENDPOINT").is_none(),
        "this test exercises the IMDS path; run it without IDENTITY_ENDPOINT"
    );
    let stub = Stub::start(|request, _| {
        assert_eq!(request.path, "/metadata/identity/oauth2/token");
        let expires_on = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json(
            200,
            serde_json::json!({"access_token": "mi-token", "expires_on": expires_on.to_string(), "token_type": "Bearer",
                               "resource": request.query.get("resource")}),
        )
    })
    .await;
    let tokens = TokenSource::managed_identity(Cloud::Public, &transport(&stub.url), Some("uami-client-id")).unwrap();

    for _ in 0..4 {
        let token = tokens.app_token(&Cloud::Public.arm_scope()).await.unwrap();
        assert_eq!(token.secret(), "mi-token");
        assert!(!format!("{token:?}").contains("mi-token"), "Debug must not print the token");
    }

    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].query.get("resource").map(String::as_str), Some("https://management.azure.com"));
    assert_eq!(requests[0].query.get("client_id"), None, "the app's own identity is system-assigned");
    assert_eq!(requests[0].header("x-recording-upstream-base-uri"), Some("http://169.254.169.254"));
}

#[tokio::test]
async fn a_throttled_or_failing_token_endpoint_is_retried_like_any_call() {
    let token_requests = std::sync::atomic::AtomicUsize::new(0);
    let stub = Stub::start(move |request, _| {
        if !token_request(request) {
            return vault(request);
        }
        match token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => (
                429,
                vec![("retry-after", "0".to_owned())],
                r#"{"error":"temporarily_unavailable","error_codes":[50196]}"#.to_owned(),
            ),
            1 => (503, vec![], String::new()),
            _ => json(
                200,
                serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "customer-token"}),
            ),
        }
    })
    .await;
    let (key_vault, _) = key_vault(&stub);

    key_vault.get_key(&CALLER, VAULT, "cmk", None).await.unwrap();

    let paths: Vec<String> = stub.requests().iter().map(|r| r.path.clone()).collect();
    let token_path = format!("/{TENANT}/oauth2/v2.0/token");
    assert_eq!(
        paths,
        ["/keys/cmk".to_owned(), token_path.clone(), token_path.clone(), token_path, "/keys/cmk".to_owned()]
    );
}
