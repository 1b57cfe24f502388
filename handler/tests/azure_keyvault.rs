//! Key Vault's tenant discovery against a stub: the challenge comes first, a token is only ever fetched for the
//! vault's own tenant, and a vault whose name does not resolve waits on the customer.

mod azure_support;

use std::sync::Arc;

use azure_support::{CountingToken, Stub, json, key_vault_challenge, transport};
use cmk_handler::azure::credentials::CustomerIdentity;
use cmk_handler::azure::{KeyVaultClient, TokenSource};
use cmk_handler::cloud::Cloud;
use cmk_handler::error::{CustomerAction, Disposition, Error};

const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const ISV: &str = "11111111-1111-1111-1111-111111111111";
const VAULT: &str = "https://contoso-kv.vault.azure.net/";

fn caller(tenant: &'static str) -> CustomerIdentity<'static> {
    CustomerIdentity { tenant, app_client_id: "88888888-8888-8888-8888-888888888888", uami_client_id: None }
}

fn key_vault(stub: &Stub) -> (KeyVaultClient, Arc<CountingToken>) {
    let transport = transport(&stub.url);
    let exchange = Arc::new(CountingToken::default());
    let tokens = TokenSource::from_credentials(
        Cloud::Public,
        &transport,
        Arc::new(CountingToken::default()),
        Some(exchange.clone()),
    );
    (KeyVaultClient::new(transport, tokens, azure_support::fast_retry()), exchange)
}

fn key() -> azure_support::Reply {
    json(
        200,
        serde_json::json!({"key": {"kid": format!("{VAULT}keys/cmk/0123456789abcdef0123456789abcdef"), "kty": "RSA",
                           "key_ops": ["wrapKey", "unwrapKey"], "n": "AQAB", "e": "AQAB"},
                           "attributes": {"enabled": true, "recoveryLevel": "Recoverable"}}),
    )
}

/// A vault in `vault_tenant`: challenges without a token, a token endpoint for every tenant, keys with one.
async fn vault_in(vault_tenant: &'static str) -> Stub {
    Stub::start(move |request, _| {
        if request.path.ends_with("/oauth2/v2.0/token") {
            return json(200, serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "t"}));
        }
        match request.header("authorization") {
            None => key_vault_challenge(vault_tenant),
            Some(_) => key(),
        }
    })
    .await
}

#[tokio::test]
async fn the_vault_tenant_comes_from_its_challenge_once_per_vault() {
    let stub = vault_in(CUSTOMER).await;
    let (key_vault, exchange) = key_vault(&stub);

    for _ in 0..3 {
        key_vault.get_key(&caller(CUSTOMER), VAULT, "cmk", None).await.unwrap();
    }

    let requests = stub.requests();
    let unauthenticated = requests.iter().filter(|r| r.path == "/keys/cmk" && r.header("authorization").is_none());
    assert_eq!(unauthenticated.count(), 1, "one challenge for the vault, remembered");
    assert_eq!(requests.iter().filter(|r| r.path == format!("/{CUSTOMER}/oauth2/v2.0/token")).count(), 1);
    assert_eq!(requests.len(), 5, "challenge, token, three key reads");
    assert!(exchange.calls() >= 1);
    assert_eq!(key_vault.known_vault_tenant("contoso-kv.vault.azure.net").as_deref(), Some(CUSTOMER));
}

/// The message names a tenant (here the ISV's own) that does not own the vault: no token is fetched for it, and none
/// is sent; the outcome is permanent and names both tenants.
#[tokio::test]
async fn a_vault_of_another_tenant_never_sees_a_token() {
    let stub = vault_in(CUSTOMER).await;
    let (key_vault, exchange) = key_vault(&stub);

    let error = key_vault.get_key(&caller(ISV), VAULT, "cmk", None).await.unwrap_err();

    assert_eq!((error.reason_code(), error.disposition()), ("VaultTenantMismatch", Disposition::Permanent));
    let text = error.to_string();
    assert!(text.contains(CUSTOMER) && text.contains(ISV), "{text}");
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "only the challenge: {:?}", requests.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert!(requests.iter().all(|r| r.header("authorization").is_none()));
    assert_eq!(exchange.calls(), 0, "no assertion, no token");
}

#[tokio::test]
async fn a_challenge_for_another_audience_is_refused() {
    let stub = Stub::start(|_, _| {
        let mut reply = key_vault_challenge(CUSTOMER);
        reply.1[1].1 =
            format!("Bearer authorization=\"https://login.windows.net/{CUSTOMER}\", resource=\"https://evil.example\"");
        reply
    })
    .await;
    let (key_vault, exchange) = key_vault(&stub);

    let error = key_vault.get_key(&caller(CUSTOMER), VAULT, "cmk", None).await.unwrap_err();

    assert_eq!(error.reason_code(), "BadResponse", "{error}");
    assert_eq!(exchange.calls(), 0);
}

/// The test proxy reports a vault host without a DNS record the way forward proxies do (RFC 9209); the handler sees
/// the same error as from its own resolver.
#[tokio::test]
async fn a_vault_name_that_does_not_resolve_waits_on_the_customer() {
    let stub = Stub::start(|_, _| {
        (502, vec![("proxy-status", "azure-emulator; error=dns_error; rcode=\"NXDOMAIN\"".to_owned())], String::new())
    })
    .await;
    let (key_vault, exchange) = key_vault(&stub);

    let error = key_vault.get_key(&caller(CUSTOMER), "https://nosuchvault.vault.azure.net/", "cmk", None).await;
    let error = error.unwrap_err();

    assert!(matches!(&error, Error::Transport(_)), "{error:?}");
    assert_eq!(error.disposition(), Disposition::WaitingOnCustomer);
    assert_eq!(error.reason_code(), "VaultNotFound");
    assert_eq!(error.customer_action(), Some(CustomerAction::VaultNotFound));
    assert!(error.to_string().contains("nosuchvault.vault.azure.net"), "{error}");
    assert_eq!(stub.requests().len(), 1, "a name that does not resolve is not retried in the invocation");
    assert_eq!(exchange.calls(), 0);
}

/// A vault that stops taking a cached token before it runs out (a revocation, or a clock ahead of ours) answers 401
/// with its challenge: one more try goes with a freshly exchanged token, as the Azure SDKs' challenge policy does.
#[tokio::test]
async fn a_refused_token_is_exchanged_again_once() {
    let tokens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let issued = tokens.clone();
    let stub = Stub::start(move |request, _| {
        if request.path.ends_with("/oauth2/v2.0/token") {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            return json(200, serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": format!("t{n}")}));
        }
        match request.header("authorization") {
            Some("Bearer t1") => {
                let mut reply = key_vault_challenge(CUSTOMER);
                reply.2 = r#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is unauthorized: the token expired."}}"#.to_owned();
                reply
            }
            Some(_) => key(),
            None => key_vault_challenge(CUSTOMER),
        }
    })
    .await;
    let (key_vault, exchange) = key_vault(&stub);

    key_vault.get_key(&caller(CUSTOMER), VAULT, "cmk", None).await.unwrap();

    let keys: Vec<_> = stub.requests().into_iter().filter(|r| r.path == "/keys/cmk").collect();
    let sent: Vec<_> = keys.iter().map(|r| r.header("authorization").unwrap_or("none").to_owned()).collect();
    assert_eq!(
        sent,
        ["none", "Bearer t1", "none", "Bearer t2"],
        "challenge, refused token, challenge again, fresh token"
    );
    assert_eq!(tokens.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(exchange.calls(), 2, "the assertion is made again for the fresh token");
}

/// A vault that refuses every token is asked twice, not until the budget runs out; the refusal is the outcome.
#[tokio::test]
async fn a_vault_that_refuses_every_token_is_tried_twice() {
    let stub = Stub::start(|request, _| {
        if request.path.ends_with("/oauth2/v2.0/token") {
            return json(200, serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "t"}));
        }
        let mut reply = key_vault_challenge(CUSTOMER);
        if request.header("authorization").is_some() {
            reply.2 = r#"{"error":{"code":"Unauthorized","message":"AKV10022: Invalid audience."}}"#.to_owned();
        }
        reply
    })
    .await;
    let (key_vault, _) = key_vault(&stub);

    let error = key_vault.get_key(&caller(CUSTOMER), VAULT, "cmk", None).await.unwrap_err();

    assert_eq!(error.disposition(), Disposition::Permanent, "{error}");
    let authorized =
        stub.requests().iter().filter(|r| r.header("authorization").is_some() && r.path == "/keys/cmk").count();
    assert_eq!(authorized, 2);
}
