//! The transport seam: test-proxy rewrite, upstream header, allow-list refusal before any token, proxy validation.

mod azure_support;

use std::sync::Arc;
use std::time::Duration;

use azure_support::{CountingToken, Stub, config, json, transport};
use cmk_handler::azure::credentials::CustomerIdentity;
use cmk_handler::azure::{AzureClients, ServiceBusAuth, TokenSource, Transport};
use cmk_handler::cloud::Cloud;

const CALLER: CustomerIdentity<'static> =
    CustomerIdentity { tenant: "tenant", app_client_id: "app", uami_client_id: None };
use cmk_handler::error::Error;

fn clients(stub: &Stub, credential: &Arc<CountingToken>) -> AzureClients {
    let transport = transport(&stub.url);
    let tokens = TokenSource::from_credentials(Cloud::Public, &transport, credential.clone(), Some(credential.clone()));
    let config = config(&stub.url, azure_support::fast_retry());
    AzureClients::with_tokens(&config, transport, tokens.clone(), ServiceBusAuth::Bearer(tokens)).unwrap()
}

#[tokio::test]
async fn requests_go_to_the_proxy_with_the_upstream_origin_and_unchanged_path() {
    let stub = Stub::start(|_, _| json(200, serde_json::json!({"id": "/subscriptions/s/x", "properties": {}}))).await;
    let credential = Arc::new(CountingToken::default());
    let clients = clients(&stub, &credential);
    let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct";

    let account = clients.arm.get_storage_account(id).await.unwrap();

    assert_eq!(account.id(), "/subscriptions/s/x");
    let requests = stub.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, id);
    assert_eq!(request.query.get("api-version").map(String::as_str), Some("2023-05-01"));
    assert_eq!(request.header("x-recording-upstream-base-uri"), Some("https://management.azure.com"));
    assert_eq!(request.header("authorization"), Some("Bearer static-token"));
}

#[tokio::test]
async fn a_host_outside_the_cloud_is_refused_before_any_token_or_request() {
    let stub = Stub::start(|_, _| json(200, serde_json::json!({}))).await;
    let credential = Arc::new(CountingToken::default());
    let clients = clients(&stub, &credential);

    for vault in ["https://evil.example.com", "https://kv.vault.azure.net.evil.com", "http://kv.vault.azure.net"] {
        let error = clients.key_vault.get_key(&CALLER, vault, "key", None).await.unwrap_err();
        assert!(matches!(error, Error::HostNotAllowed { .. }), "{vault}: {error:?}");
    }
    let error = clients.key_vault.wrap_key(&CALLER, "https://evil.example.com/keys/k/v", "RSA-OAEP-256", b"x").await;
    assert!(matches!(error, Err(Error::HostNotAllowed { .. })), "{error:?}");

    assert_eq!(stub.requests().len(), 0, "nothing may be sent to a refused host");
    assert_eq!(credential.calls(), 0, "no token may be requested for a refused host");
}

#[test]
fn only_loopback_http_proxies_are_accepted() {
    let timeout = Duration::from_secs(1);
    for ok in ["http://127.0.0.1:1234", "http://127.1.2.3:80", "http://localhost:9", "http://[::1]:8080"] {
        assert!(Transport::new(Cloud::Public, Some(ok.parse().unwrap()), timeout).is_ok(), "{ok}");
    }
    for bad in ["https://127.0.0.1:1234", "http://10.0.0.1:80", "http://example.com", "http://169.254.169.254"] {
        let error = Transport::new(Cloud::Public, Some(bad.parse().unwrap()), timeout).unwrap_err();
        assert!(error.contains("refusing test proxy"), "{bad}: {error}");
    }
}
