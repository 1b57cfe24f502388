//! Emulated Key Vault and Managed HSM: the bearer challenge, tenant and audience checks, RBAC, key states,
//! recovery levels, paging, and a real RSA wrap/unwrap round trip.

use azure_emulator::cloud::Cloud;
use azure_emulator::control::AzureClient;
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::keyvault::deterministic_version;
use azure_emulator::scenario::{Change, Key, RoleAssignment};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const ISV: &str = "11111111-1111-1111-1111-111111111111";
const ENCRYPTION_USER: &str = "0e000000-0000-0000-0000-000000000001";
const READER: &str = "0e000000-0000-0000-0000-000000000002";
const OFFICER: &str = "0e000000-0000-0000-0000-000000000003";
const SCOPED_USER: &str = "0e000000-0000-0000-0000-000000000004";
const STRANGER: &str = "0e000000-0000-0000-0000-000000000009";
/// Key Vault Crypto User on the resource group of vault `kvarm` (an Azure role assignment, not a vault-local one).
const RG_CRYPTO_USER: &str = "0e000000-0000-0000-0000-000000000005";
const KV: &str = "https://kv1.vault.azure.net";
const VAULT_RESOURCE: &str = "https://vault.azure.net";

struct Env {
    emulator: Emulator,
    client: AzureClient,
}

async fn start() -> Env {
    let scenario: Scenario = serde_json::from_str(include_str!("data/keyvault/vaults.json")).expect("scenario parses");
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let client = AzureClient::new(emulator.url());
    Env { emulator, client }
}

impl Env {
    fn token(&self, tenant: &str, oid: &str, resource: &str) -> String {
        let tokens = &self.emulator.shared().tokens;
        let subject = Subject { tenant_id: tenant, object_id: oid, client_id: oid, mi_resource_id: None };
        tokens.mint(Claims::issue(Cloud::Public, &subject, resource, tokens.now(), 3600))
    }

    async fn send(&self, method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// Calls as `oid` in the customer tenant with a Key Vault token.
    async fn call(&self, method: Method, url: &str, oid: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.token(CUSTOMER, oid, VAULT_RESOURCE);
        let response = self.send(method, url, Some(&token), body).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn inner(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["innererror"]["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn challenge_names_the_vault_tenant_and_resource() {
    let env = start().await;
    let response = env.send(Method::GET, &format!("{KV}/keys/cmk?api-version=7.4"), None, None).await;
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{CUSTOMER}\", resource=\"https://vault.azure.net\""
        )
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "error": { "code": "Unauthorized", "message": "Request is missing a Bearer or PoP token." } })
    );

    let response = env.send(Method::GET, "https://hsm1.managedhsm.azure.net/keys/hk?api-version=7.4", None, None).await;
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.ends_with("resource=\"https://managedhsm.azure.net\""), "{challenge}");
}

#[tokio::test]
async fn foreign_tenant_and_wrong_audience_are_refused() {
    let env = start().await;
    let url = format!("{KV}/keys/cmk?api-version=7.4");
    let isv_token = env.token(ISV, ENCRYPTION_USER, VAULT_RESOURCE);
    let response = env.send(Method::GET, &url, Some(&isv_token), None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().starts_with("AKV10032: Invalid issuer."), "{body}");

    let arm_token = env.token(CUSTOMER, ENCRYPTION_USER, "https://management.azure.com/");
    let response = env.send(Method::GET, &url, Some(&arm_token), None).await;
    assert_eq!(response.status(), 401);
    let hsm_token = env.token(CUSTOMER, ENCRYPTION_USER, "https://managedhsm.azure.net");
    assert_eq!(env.send(Method::GET, &url, Some(&hsm_token), None).await.status(), 401);
}

/// A vault that does not exist has no DNS record; the emulator, in the test proxy's place, says so as a forward
/// proxy does (RFC 9209), so a client can tell it from a network blip.
#[tokio::test]
async fn unknown_vault_is_reported_as_a_dns_failure() {
    let env = start().await;
    let token = env.token(CUSTOMER, ENCRYPTION_USER, VAULT_RESOURCE);
    let response =
        env.client.get("https://nosuchvault.vault.azure.net/keys/k?api-version=7.4").bearer_auth(token).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 502);
    let proxy_status = response.headers()["proxy-status"].to_str().unwrap().to_owned();
    assert!(proxy_status.contains("error=dns_error"), "{proxy_status}");
}

#[tokio::test]
async fn get_key_shapes_and_versions() {
    let env = start().await;
    let latest = deterministic_version("kv1.vault.azure.net", "cmk", 2);
    for url in [
        format!("{KV}/keys/cmk?api-version=7.4"),
        format!("{KV}/keys/cmk/?api-version=7.4"),
        format!("{KV}/keys/CMK/{latest}?api-version=7.4"),
    ] {
        let (status, body) = env.call(Method::GET, &url, ENCRYPTION_USER, None).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["key"]["kid"], format!("{KV}/keys/cmk/{latest}"));
        assert_eq!(body["key"]["kty"], "RSA");
        let n = URL_SAFE_NO_PAD.decode(body["key"]["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus");
        assert_eq!(body["key"]["e"], "AQAB");
        assert_eq!(body["attributes"]["recoveryLevel"], "Recoverable");
        assert_eq!(body["attributes"]["recoverableDays"], 90);
    }
    assert_eq!(latest.len(), 32);
    assert!(latest.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let (status, page) =
        env.call(Method::GET, &format!("{KV}/keys/cmk/versions?api-version=7.4&maxresults=2"), READER, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    let next = page["nextLink"].as_str().expect("a second page").to_owned();
    let (_, rest) = env.call(Method::GET, &next, READER, None).await;
    assert_eq!(rest["value"].as_array().unwrap().len(), 1);
    assert!(rest["nextLink"].is_null());

    let (status, body) = env.call(Method::GET, &format!("{KV}/keys/nokey?api-version=7.4"), READER, None).await;
    assert_eq!((status, inner(&body).0), (404, "KeyNotFound"));
    let (status, body) = env.call(Method::GET, &format!("{KV}/keys/cmk?api-version=1.0"), READER, None).await;
    assert_eq!((status, inner(&body).0), (400, "BadParameter"));
}

#[tokio::test]
async fn wrap_unwrap_round_trip_with_each_algorithm() {
    let env = start().await;
    let plaintext = URL_SAFE_NO_PAD.encode([7_u8; 32]);
    for alg in ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"] {
        let (status, wrapped) = env
            .call(
                Method::POST,
                &format!("{KV}/keys/cmk//wrapkey?api-version=7.4"),
                ENCRYPTION_USER,
                Some(json!({ "alg": alg, "value": plaintext })),
            )
            .await;
        assert_eq!(status, 200, "{alg}: {wrapped}");
        let kid = wrapped["kid"].as_str().unwrap();
        assert_ne!(wrapped["value"], plaintext.as_str());
        let (status, unwrapped) = env
            .call(
                Method::POST,
                &format!("{kid}/unwrapkey?api-version=7.4"),
                ENCRYPTION_USER,
                Some(json!({ "alg": alg, "value": wrapped["value"] })),
            )
            .await;
        assert_eq!(status, 200, "{alg}: {unwrapped}");
        assert_eq!(unwrapped["value"], plaintext.as_str(), "{alg}");
    }
    let (status, body) = env
        .call(
            Method::POST,
            &format!("{KV}/keys/cmk//wrapkey?api-version=7.4"),
            ENCRYPTION_USER,
            Some(json!({ "alg": "A256KW", "value": plaintext })),
        )
        .await;
    assert_eq!((status, inner(&body).0), (400, "BadParameter"));
}

#[tokio::test]
async fn rbac_decides_per_action_and_scope() {
    let env = start().await;
    let wrap = json!({ "alg": "RSA-OAEP-256", "value": URL_SAFE_NO_PAD.encode([1_u8; 32]) });
    let wrap_url = |key: &str| format!("{KV}/keys/{key}//wrapkey?api-version=7.4");
    let (status, _) = env.call(Method::GET, &format!("{KV}/keys/cmk?api-version=7.4"), READER, None).await;
    assert_eq!(status, 200, "the reader reads");
    let (status, body) = env.call(Method::POST, &wrap_url("cmk"), READER, Some(wrap.clone())).await;
    assert_eq!((status, inner(&body)), (403, ("Forbidden", "ForbiddenByRbac")));
    assert!(body["error"]["message"].as_str().unwrap().contains("Microsoft.KeyVault/vaults/keys/wrap/action"));
    let (status, body) = env.call(Method::GET, &format!("{KV}/keys/cmk?api-version=7.4"), STRANGER, None).await;
    assert_eq!((status, inner(&body).1), (403, "ForbiddenByRbac"));
    let (status, body) = env.call(Method::GET, &format!("{KV}/keys/nokey?api-version=7.4"), STRANGER, None).await;
    assert_eq!((status, inner(&body).1), (403, "ForbiddenByRbac"), "RBAC is checked before existence");
    let (status, _) = env.call(Method::POST, &wrap_url("scoped"), SCOPED_USER, Some(wrap.clone())).await;
    assert_eq!(status, 200, "key-scoped role on its key");
    let (status, _) = env.call(Method::POST, &wrap_url("cmk"), SCOPED_USER, Some(wrap.clone())).await;
    assert_eq!(status, 403, "key-scoped role on another key");
    let (status, _) = env
        .call(
            Method::POST,
            &format!("{KV}/keys/fresh/create?api-version=7.4"),
            ENCRYPTION_USER,
            Some(json!({ "kty": "RSA" })),
        )
        .await;
    assert_eq!(status, 403, "the encryption user cannot create keys");

    // An Azure role assignment above a vault with a resource id (its resource group) reaches its keys.
    let arm_vault_wrap = "https://kvarm.vault.azure.net/keys/k//wrapkey?api-version=7.4";
    let (status, _) = env.call(Method::POST, arm_vault_wrap, RG_CRYPTO_USER, Some(wrap.clone())).await;
    assert_eq!(status, 200, "inherited from the resource group");
    let (status, body) = env.call(Method::POST, &wrap_url("cmk"), RG_CRYPTO_USER, Some(wrap.clone())).await;
    assert_eq!((status, inner(&body).1), (403, "ForbiddenByRbac"), "kv1 is not in that resource group");

    // Run-time grants and revocations take the (default) 10 minutes to reach Key Vault.
    let propagation = std::time::Duration::from_secs(600);
    let grant = Change::GrantRole {
        vault: Some("kv1".into()),
        assignment: RoleAssignment {
            principal_id: STRANGER.into(),
            role: "Key Vault Crypto Service Encryption User".into(),
            scope: "/".into(),
            description: None,
        },
    };
    env.emulator.shared().apply(&[grant]).unwrap();
    let (status, body) = env.call(Method::POST, &wrap_url("cmk"), STRANGER, Some(wrap.clone())).await;
    assert_eq!((status, inner(&body).1), (403, "ForbiddenByRbac"), "granted, not yet propagated");
    assert!(body["error"]["message"].as_str().unwrap().contains("please observe propagation time"));
    env.emulator.shared().clock.advance(propagation);
    let (status, _) = env.call(Method::POST, &wrap_url("cmk"), STRANGER, Some(wrap.clone())).await;
    assert_eq!(status, 200, "granted at run time, propagated");
    let revoke = Change::RevokeRole {
        vault: Some("kv1".into()),
        principal_id: STRANGER.into(),
        role: "Key Vault Crypto Service Encryption User".into(),
        scope: None,
    };
    env.emulator.shared().apply(&[revoke]).unwrap();
    let (status, _) = env.call(Method::POST, &wrap_url("cmk"), STRANGER, Some(wrap.clone())).await;
    assert_eq!(status, 200, "revoked, not yet propagated");
    env.emulator.shared().clock.advance(propagation);
    let (status, _) = env.call(Method::POST, &wrap_url("cmk"), STRANGER, Some(wrap)).await;
    assert_eq!(status, 403, "revoked at run time, propagated");
}

#[tokio::test]
async fn key_state_errors() {
    let env = start().await;
    let wrap = json!({ "alg": "RSA-OAEP", "value": URL_SAFE_NO_PAD.encode([2_u8; 32]) });
    let (status, body) = env.call(Method::GET, &format!("{KV}/keys/off?api-version=7.4"), ENCRYPTION_USER, None).await;
    assert_eq!((status, inner(&body)), (403, ("Forbidden", "KeyDisabled")), "a disabled key's GET is refused");
    assert_eq!(body["error"]["message"], "Operation get is not allowed on a disabled key.");
    let (status, body) =
        env.call(Method::GET, &format!("{KV}/keys/off/versions?api-version=7.4"), ENCRYPTION_USER, None).await;
    assert_eq!((status, &body["value"][0]["attributes"]["enabled"]), (200, &json!(false)), "listed as disabled");
    let (status, body) = env
        .call(Method::POST, &format!("{KV}/keys/off//wrapkey?api-version=7.4"), ENCRYPTION_USER, Some(wrap.clone()))
        .await;
    assert_eq!((status, inner(&body)), (403, ("Forbidden", "KeyDisabled")));
    let (status, body) = env
        .call(
            Method::POST,
            &format!("{KV}/keys/wraponly//unwrapkey?api-version=7.4"),
            ENCRYPTION_USER,
            Some(wrap.clone()),
        )
        .await;
    assert_eq!((status, inner(&body).1), (403, "KeyOperationForbidden"));
    let (status, body) = env
        .call(Method::POST, &format!("{KV}/keys/future//wrapkey?api-version=7.4"), ENCRYPTION_USER, Some(wrap.clone()))
        .await;
    assert_eq!((status, inner(&body).1), (403, "KeyNotYetValidOrExpired"));

    // Expiry stops new wraps; data wrapped before still unwraps.
    let (_, wrapped) = env
        .call(Method::POST, &format!("{KV}/keys/cmk//wrapkey?api-version=7.4"), ENCRYPTION_USER, Some(wrap.clone()))
        .await;
    let kid = wrapped["kid"].as_str().unwrap().to_owned();
    let (status, updated) = env
        .call(Method::PATCH, &format!("{kid}?api-version=7.4"), OFFICER, Some(json!({ "attributes": { "exp": 1000 } })))
        .await;
    assert_eq!((status, &updated["attributes"]["exp"]), (200, &json!(1000)));
    let (status, _) =
        env.call(Method::POST, &format!("{kid}/wrapkey?api-version=7.4"), ENCRYPTION_USER, Some(wrap)).await;
    assert_eq!(status, 403);
    let (status, _) = env
        .call(
            Method::POST,
            &format!("{kid}/unwrapkey?api-version=7.4"),
            ENCRYPTION_USER,
            Some(json!({ "alg": "RSA-OAEP", "value": wrapped["value"] })),
        )
        .await;
    assert_eq!(status, 200);

    env.emulator
        .shared()
        .apply(&[Change::SetKeyEnabled { vault: "kv1".into(), key: "off".into(), enabled: true }])
        .unwrap();
    let (_, body) = env.call(Method::GET, &format!("{KV}/keys/off?api-version=7.4"), ENCRYPTION_USER, None).await;
    assert_eq!(body["attributes"]["enabled"], true);
}

#[tokio::test]
async fn create_update_and_add_key_make_new_versions() {
    let env = start().await;
    let (status, created) = env
        .call(
            Method::POST,
            &format!("{KV}/keys/fresh/create?api-version=7.4"),
            OFFICER,
            Some(json!({ "kty": "RSA", "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"] })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(URL_SAFE_NO_PAD.decode(created["key"]["n"].as_str().unwrap()).unwrap().len(), 384);
    assert_eq!(created["key"]["key_ops"], json!(["wrapKey", "unwrapKey"]));
    let (status, body) = env
        .call(
            Method::POST,
            &format!("{KV}/keys/bad/create?api-version=7.4"),
            OFFICER,
            Some(json!({ "kty": "RSA", "key_size": 1024 })),
        )
        .await;
    assert_eq!((status, inner(&body).0), (400, "BadParameter"));

    let kid = created["key"]["kid"].as_str().unwrap();
    let (status, disabled) = env
        .call(
            Method::PATCH,
            &format!("{kid}?api-version=7.4"),
            OFFICER,
            Some(json!({ "attributes": { "enabled": false } })),
        )
        .await;
    assert_eq!((status, &disabled["attributes"]["enabled"]), (200, &json!(false)));

    let key = Key {
        name: "fresh".into(),
        kty: "RSA".into(),
        size: 2048,
        enabled: true,
        key_ops: None,
        exp: None,
        nbf: None,
        versions: 1,
        tags: [("cmk-consent".to_owned(), "/subscriptions/s/x".to_owned())].into(),
    };
    env.emulator.shared().apply(&[Change::AddKey { vault: "kv1".into(), key }]).unwrap();
    let (_, latest) = env.call(Method::GET, &format!("{KV}/keys/fresh?api-version=7.4"), OFFICER, None).await;
    assert_ne!(latest["key"]["kid"], created["key"]["kid"], "the added version is now the latest");
    assert_eq!(latest["tags"], json!({ "cmk-consent": "/subscriptions/s/x" }), "GET key returns the version's tags");
    // The control surface replaces the latest version's tags, as update-key without a version does.
    let tags = [("cmk-consent-a".to_owned(), "/subscriptions/s/a".to_owned())].into();
    env.emulator.shared().apply(&[Change::SetKeyTags { vault: "kv1".into(), key: "fresh".into(), tags }]).unwrap();
    let (_, tagged) = env.call(Method::GET, &format!("{KV}/keys/fresh?api-version=7.4"), OFFICER, None).await;
    assert_eq!(tagged["tags"], json!({ "cmk-consent-a": "/subscriptions/s/a" }));
    // And so does Key Vault's own update-key API (validated against the spec, `KeyUpdateParameters.tags`).
    let (status, updated) = env
        .call(
            Method::PATCH,
            &format!("{KV}/keys/fresh?api-version=7.4"),
            OFFICER,
            Some(json!({ "tags": { "cmk-consent": "/subscriptions/s/b" } })),
        )
        .await;
    assert_eq!((status, &updated["tags"]), (200, &json!({ "cmk-consent": "/subscriptions/s/b" })));
    let (_, versions) =
        env.call(Method::GET, &format!("{KV}/keys/fresh/versions?api-version=7.4"), OFFICER, None).await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn recovery_level_follows_the_vault_settings() {
    let env = start().await;
    let cases = [
        ("nosoftdelete", "Purgeable", Value::Null),
        ("nopurge", "Recoverable+Purgeable", json!(90)),
        ("shortretention", "CustomizedRecoverable", json!(30)),
        ("shortnopurge", "CustomizedRecoverable+Purgeable", json!(7)),
    ];
    for (vault, level, days) in cases {
        let (status, body) = env
            .call(Method::GET, &format!("https://{vault}.vault.azure.net/keys/k?api-version=7.4"), READER, None)
            .await;
        assert_eq!(status, 200, "{vault}: {body}");
        assert_eq!(body["attributes"]["recoveryLevel"], level, "{vault}");
        assert_eq!(body["attributes"]["recoverableDays"], days, "{vault}");
    }
    env.emulator.shared().apply(&[Change::SetPurgeProtection { vault: "nopurge".into(), enabled: true }]).unwrap();
    let (_, body) = env.call(Method::GET, "https://nopurge.vault.azure.net/keys/k?api-version=7.4", READER, None).await;
    assert_eq!(body["attributes"]["recoveryLevel"], "Recoverable");
}

#[tokio::test]
async fn managed_hsm_keys_and_dump_without_private_material() {
    let env = start().await;
    let hsm = "https://hsm1.managedhsm.azure.net";
    let token = env.token(CUSTOMER, ENCRYPTION_USER, "https://managedhsm.azure.net");
    let response = env.send(Method::GET, &format!("{hsm}/keys/hk?api-version=7.4"), Some(&token), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["key"]["kid"].as_str().unwrap().starts_with("https://hsm1.managedhsm.azure.net/keys/hk/"));
    assert_eq!(body["key"]["kty"], "RSA-HSM");

    let dump = env.emulator.shared().world.lock().unwrap().vaults.dump();
    let text = dump.to_string();
    assert!(text.contains("hsm1.managedhsm.azure.net/keys/hk/"));
    for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "material"] {
        assert!(!text.contains(private), "dump leaks {private}");
    }
}

/// Deleting and recovering a key (control changes): a deleted key is 404 `KeyNotFound` for every operation, a
/// soft-deleted one comes back with its versions; in a vault without soft delete it is gone for good. A rotation makes
/// a new current version with the deterministic id of its index.
#[tokio::test]
async fn deleted_keys_are_not_found_until_recovered_and_rotation_adds_a_version() {
    let env = start().await;
    let shared = env.emulator.shared();
    let get = |key: &'static str| {
        let env = &env;
        async move { env.call(Method::GET, &format!("{KV}/keys/{key}?api-version=7.4"), READER, None).await }
    };
    let (status, before) = get("cmk").await;
    assert_eq!(status, 200, "{before}");

    shared.apply(&[Change::DeleteKey { vault: "kv1".into(), key: "cmk".into() }]).unwrap();
    let (status, body) = get("cmk").await;
    assert_eq!((status, inner(&body).0), (404, "KeyNotFound"), "{body}");
    assert!(shared.apply(&[Change::DeleteKey { vault: "kv1".into(), key: "cmk".into() }]).is_err(), "already deleted");

    shared.apply(&[Change::RecoverKey { vault: "kv1".into(), key: "cmk".into() }]).unwrap();
    let (status, after) = get("cmk").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["key"]["kid"], before["key"]["kid"], "the same versions are back");

    shared.apply(&[Change::RotateKey { vault: "kv1".into(), key: "cmk".into() }]).unwrap();
    let (_, rotated) = get("cmk").await;
    let fourth = deterministic_version("kv1.vault.azure.net", "cmk", 3);
    assert_eq!(rotated["key"]["kid"], format!("{KV}/keys/cmk/{fourth}"));
    assert!(rotated.get("tags").is_none(), "tags belong to a version: {rotated}");

    shared.apply(&[Change::DeleteKey { vault: "nosoftdelete".into(), key: "k".into() }]).unwrap();
    let recover = shared.apply(&[Change::RecoverKey { vault: "nosoftdelete".into(), key: "k".into() }]);
    assert!(recover.is_err(), "without soft delete a deleted key is gone");
}
