//! Emulated ARM: authentication and authorization errors, feature and provider polling, user-assigned identities,
//! and the storage account PATCH with each Storage RP error and the identity merge rules.

use azure_emulator::cloud::Cloud;
use azure_emulator::control::AzureClient;
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::keyvault::deterministic_version;
use azure_emulator::limits::LimitsConfig;
use azure_emulator::scenario::{Change, RoleAssignment};
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::Method;
use serde_json::{Value, json};

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const SUB: &str = "00000000-0000-0000-0000-000000000001";
/// Contributor on the subscription.
const CALLER: &str = "f0000000-0000-0000-0000-000000000001";
/// No role at all.
const DENIED: &str = "de000000-0000-0000-0000-000000000001";
/// A custom role with storage read and write on `rg-isv`, nothing on the identities.
const STORAGE_ONLY: &str = "5a000000-0000-0000-0000-000000000001";
/// The scenario does not set `propagation`: role assignments take the documented 10 minutes.
const ROLE_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(600);
const APP_ID: &str = "a1111111-1111-1111-1111-111111111111";
const SP_IN_CUSTOMER: &str = "5e000000-0000-0000-0000-000000000002";
const ARM: &str = "https://management.azure.com";
const UAMI: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";
const NO_FIC_UAMI: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/no-fic-uami";
const ACCOUNT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/isvdata1";

struct Env {
    emulator: Emulator,
    client: AzureClient,
    token: String,
}

async fn start() -> Env {
    let scenario: Scenario = serde_json::from_str(include_str!("data/arm/cross_tenant.json")).expect("scenario parses");
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let client = AzureClient::new(emulator.url());
    let token = mint(&emulator, ISV, CALLER, "https://management.azure.com/");
    Env { emulator, client, token }
}

fn mint(emulator: &Emulator, tenant: &str, oid: &str, resource: &str) -> String {
    let tokens = &emulator.shared().tokens;
    let subject = Subject { tenant_id: tenant, object_id: oid, client_id: oid, mi_resource_id: None };
    tokens.mint(Claims::issue(Cloud::Public, &subject, resource, tokens.now(), 3600))
}

impl Env {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, &format!("{ARM}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn patch_account(&self, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, &format!("{ACCOUNT}?api-version=2023-05-01"), Some(&self.token), Some(body)).await
    }

    async fn get_account(&self) -> Value {
        let (status, body) =
            self.call(Method::GET, &format!("{ACCOUNT}?api-version=2023-05-01"), Some(&self.token), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// The PATCH from the spec example, pointed at the scenario's vault and identity.
fn cmk_body(vault_uri: &str, key: &str, uami: &str, app_id: &str) -> Value {
    json!({
        "identity": { "type": "UserAssigned", "userAssignedIdentities": { uami: {} } },
        "properties": { "encryption": {
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": { "keyvaulturi": vault_uri, "keyname": key, "keyversion": "" },
            "identity": { "userAssignedIdentity": uami, "federatedIdentityClientId": app_id },
            "services": { "blob": { "enabled": true, "keyType": "Account" }, "file": { "enabled": true, "keyType": "Account" } }
        } }
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn authentication_and_authorization_errors_look_like_arm() {
    let env = start().await;
    let path = format!("{ACCOUNT}?api-version=2023-05-01");
    let (status, body) = env.call(Method::GET, &path, None, None).await;
    assert_eq!((status, code(&body)), (401, "AuthenticationFailed"));
    let vault_token = mint(&env.emulator, ISV, CALLER, "https://vault.azure.net");
    let (status, body) = env.call(Method::GET, &path, Some(&vault_token), None).await;
    assert_eq!((status, code(&body)), (401, "InvalidAuthenticationTokenAudience"));
    let (status, body) = env.call(Method::GET, &path, Some("not-a-token"), None).await;
    assert_eq!((status, code(&body)), (401, "InvalidAuthenticationToken"));
    env.emulator.shared().clock.advance(std::time::Duration::from_secs(3601));
    let (status, body) = env.call(Method::GET, &path, Some(&env.token), None).await;
    assert_eq!((status, code(&body)), (401, "ExpiredAuthenticationToken"));
    let foreign = mint(&env.emulator, CUSTOMER, CALLER, "https://management.azure.com/");
    let (status, body) = env.call(Method::GET, &path, Some(&foreign), None).await;
    assert_eq!((status, code(&body)), (401, "InvalidAuthenticationTokenTenant"));
    let denied = mint(&env.emulator, ISV, DENIED, "https://management.azure.com/");
    let (status, body) = env.call(Method::GET, &path, Some(&denied), None).await;
    assert_eq!((status, code(&body)), (403, "AuthorizationFailed"));
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "The client '{DENIED}' with object id '{DENIED}' does not have authorization to perform action 'Microsoft.Storage/storageAccounts/read' over scope '{ACCOUNT}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        )
    );
}

#[tokio::test]
async fn role_assignments_decide_and_propagate() {
    let env = start().await;
    let path = format!("{ACCOUNT}?api-version=2023-05-01");
    let reader = mint(&env.emulator, ISV, DENIED, "https://management.azure.com/");
    let grant = Change::GrantRole {
        vault: None,
        assignment: RoleAssignment {
            principal_id: DENIED.into(),
            role: "Reader".into(),
            scope: format!("/subscriptions/{SUB}/resourceGroups/rg-isv"),
            description: None,
        },
    };
    env.emulator.shared().apply(&[grant]).unwrap();
    let (status, body) = env.call(Method::GET, &path, Some(&reader), None).await;
    assert_eq!((status, code(&body)), (403, "AuthorizationFailed"), "a new assignment is not in force yet");
    advance(&env, ROLE_PROPAGATION - std::time::Duration::from_secs(1));
    assert_eq!(env.call(Method::GET, &path, Some(&reader), None).await.0, 403, "one second before propagation");
    advance(&env, std::time::Duration::from_secs(1));
    assert_eq!(env.call(Method::GET, &path, Some(&reader), None).await.0, 200, "inherited from the resource group");
    // Reader has `*/read` only: no write, and nothing outside its resource group.
    let (status, body) = env.call(Method::PATCH, &path, Some(&reader), Some(json!({ "tags": {} }))).await;
    assert_eq!((status, code(&body)), (403, "AuthorizationFailed"));
    assert!(body["error"]["message"].as_str().unwrap().contains("'Microsoft.Storage/storageAccounts/write'"));
    let feature = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity?api-version=2021-07-01"
    );
    let (status, body) = env.call(Method::GET, &feature, Some(&reader), None).await;
    assert_eq!((status, code(&body)), (403, "AuthorizationFailed"), "the subscription is above the assignment");
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("over scope '/subscriptions/{SUB}'")));

    // A revocation propagates too: the caller keeps reading until it has.
    let revoke = Change::RevokeRole { vault: None, principal_id: DENIED.into(), role: "Reader".into(), scope: None };
    env.emulator.shared().apply(&[revoke]).unwrap();
    assert_eq!(env.call(Method::GET, &path, Some(&reader), None).await.0, 200);
    advance(&env, ROLE_PROPAGATION);
    assert_eq!(env.call(Method::GET, &path, Some(&reader), None).await.0, 403);
}

#[tokio::test]
async fn attaching_an_identity_needs_assign_on_it() {
    let env = start().await;
    let token = mint(&env.emulator, ISV, STORAGE_ONLY, "https://management.azure.com/");
    let path = format!("{ACCOUNT}?api-version=2023-05-01");
    let body = cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID);
    let (status, answer) = env.call(Method::PATCH, &path, Some(&token), Some(body.clone())).await;
    assert_eq!((status, code(&answer)), (403, "LinkedAuthorizationFailed"), "{answer}");
    assert_eq!(
        answer["error"]["message"],
        format!(
            "The client '{STORAGE_ONLY}' with object id '{STORAGE_ONLY}' has permission to perform action 'Microsoft.Storage/storageAccounts/write' on scope '{ACCOUNT}'; however, it does not have permission to perform action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '{UAMI}' (respectively) or the linked scope(s) are invalid."
        )
    );
    // Managed Identity Operator's `userAssignedIdentities/*/assign/action` grants it, once propagated.
    let grant = Change::GrantRole {
        vault: None,
        assignment: RoleAssignment {
            principal_id: STORAGE_ONLY.into(),
            role: "f1a07417-d97a-45cb-824c-7a7467783830".into(),
            scope: UAMI.into(),
            description: None,
        },
    };
    env.emulator.shared().apply(&[grant]).unwrap();
    assert_eq!(env.call(Method::PATCH, &path, Some(&token), Some(body.clone())).await.0, 403);
    advance(&env, ROLE_PROPAGATION);
    let (status, answer) = env.call(Method::PATCH, &path, Some(&token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    // Its `*/read` also reads the identity; the custom role does not reach other identities' writes.
    let identity = format!("{UAMI}?api-version=2023-01-31");
    assert_eq!(env.call(Method::GET, &identity, Some(&token), None).await.0, 200);
    let (status, answer) =
        env.call(Method::PUT, &identity, Some(&token), Some(json!({ "location": "westeurope" }))).await;
    assert_eq!((status, code(&answer)), (403, "AuthorizationFailed"));
}

fn advance(env: &Env, by: std::time::Duration) {
    env.emulator.shared().clock.advance(by);
}

#[tokio::test]
async fn addressing_errors_look_like_arm() {
    let env = start().await;
    let token = Some(env.token.as_str());
    let cases = [
        (format!("{ACCOUNT}?api-version=2019-01-01"), 400, "NoRegisteredProviderFound"),
        (ACCOUNT.to_owned(), 400, "MissingApiVersionParameter"),
        (
            format!("{}?api-version=2023-05-01", ACCOUNT.replace(SUB, "00000000-0000-0000-0000-000000000009")),
            404,
            "SubscriptionNotFound",
        ),
        (format!("{}?api-version=2023-05-01", ACCOUNT.replace(SUB, "not-a-guid")), 400, "InvalidSubscriptionId"),
        (format!("{}?api-version=2023-05-01", ACCOUNT.replace("rg-isv", "rg-missing")), 404, "ResourceGroupNotFound"),
        (format!("{}?api-version=2023-05-01", ACCOUNT.replace("isvdata1", "missing1")), 404, "ResourceNotFound"),
        (
            format!("/subscriptions/{SUB}/providers/Microsoft.Storage?api-version=1999-01-01"),
            400,
            "InvalidApiVersionParameter",
        ),
    ];
    for (path, status, expected) in cases {
        let (got, body) = env.call(Method::GET, &path, token, None).await;
        assert_eq!((got, code(&body)), (status, expected), "{path}: {body}");
    }
}

#[tokio::test]
async fn feature_and_provider_registration_complete_after_the_configured_polls() {
    let env = start().await;
    let token = Some(env.token.as_str());
    let feature = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity"
    );
    let (status, body) = env.call(Method::GET, &format!("{feature}?api-version=2021-07-01"), token, None).await;
    assert_eq!((status, body["properties"]["state"].as_str()), (200, Some("NotRegistered")));
    let (status, body) =
        env.call(Method::POST, &format!("{feature}/register?api-version=2021-07-01"), token, None).await;
    assert_eq!((status, body["properties"]["state"].as_str()), (200, Some("Registering")));
    assert_eq!(body["name"], "Microsoft.Storage/FederatedClientIdentity");
    assert_eq!(body["type"], "Microsoft.Features/providers/features");
    let mut states = Vec::new();
    for _ in 0..3 {
        let (_, body) = env.call(Method::GET, &format!("{feature}?api-version=2021-07-01"), token, None).await;
        states.push(body["properties"]["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["Registering", "Registered", "Registered"]);

    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Web");
    let (_, body) = env.call(Method::POST, &format!("{provider}/register?api-version=2021-04-01"), token, None).await;
    assert_eq!(body["registrationState"], "Registering");
    assert_eq!(body["namespace"], "Microsoft.Web");
    let (_, body) = env.call(Method::GET, &format!("{provider}?api-version=2021-04-01"), token, None).await;
    assert_eq!(body["registrationState"], "Registering");
    let (_, body) = env.call(Method::GET, &format!("{provider}?api-version=2021-04-01"), token, None).await;
    assert_eq!(body["registrationState"], "Registered");
}

#[tokio::test]
async fn identity_put_creates_once_and_registers_in_the_directory() {
    let env = start().await;
    let token = Some(env.token.as_str());
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/new-uami?api-version=2023-01-31"
    );
    let (status, created) =
        env.call(Method::PUT, &path, token, Some(json!({ "location": "westeurope", "tags": { "k": "v" } }))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["tenantId"], ISV);
    assert!(created["id"].as_str().unwrap().contains("/resourcegroups/rg-isv/"), "ARM lower-cases resourcegroups here");
    let (status, again) = env.call(Method::PUT, &path, token, Some(json!({ "location": "westeurope" }))).await;
    assert_eq!(status, 200);
    assert_eq!(again["properties"]["principalId"], created["properties"]["principalId"]);
    let (status, got) = env.call(Method::GET, &path, token, None).await;
    assert_eq!((status, &got["properties"]["clientId"]), (200, &created["properties"]["clientId"]));
    let registered = {
        let world = env.emulator.shared().world.lock().unwrap();
        let identity = world.directory.managed_identity_by_resource_id(created["id"].as_str().unwrap());
        identity.expect("in the directory").principal_id.clone()
    };
    assert_eq!(registered, created["properties"]["principalId"].as_str().unwrap());

    let (status, body) =
        env.call(Method::PUT, &path, token, Some(json!({ "location": "westeurope", "colour": "blue" }))).await;
    assert_eq!((status, code(&body)), (400, "InvalidRequestContent"));
    let (status, body) = env
        .call(Method::PUT, &path.replace("rg-isv", "rg-nowhere"), token, Some(json!({ "location": "westeurope" })))
        .await;
    assert_eq!((status, code(&body)), (404, "ResourceGroupNotFound"));
}

#[tokio::test]
async fn cross_tenant_cmk_patch_fills_what_storage_reports() {
    let env = start().await;
    let (status, body) = env.patch_account(cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID)).await;
    assert_eq!(status, 200, "{body}");
    let latest = deterministic_version("custvault.vault.azure.net", "cmk", 1);
    let encryption = &body["properties"]["encryption"];
    assert_eq!(encryption["keySource"], "Microsoft.Keyvault");
    assert_eq!(
        encryption["keyvaultproperties"]["currentVersionedKeyIdentifier"],
        format!("https://custvault.vault.azure.net/keys/cmk/{latest}")
    );
    assert_eq!(encryption["keyvaultproperties"]["keyversion"], "");
    assert!(encryption["keyvaultproperties"]["lastKeyRotationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(encryption["keyvaultproperties"].get("currentVersionedKeyExpirationTimestamp").is_none());
    assert_eq!(encryption["identity"]["federatedIdentityClientId"], APP_ID);
    assert_eq!(encryption["identity"]["userAssignedIdentity"], UAMI.replace("resourceGroups", "resourcegroups"));
    assert_eq!(encryption["services"]["blob"]["keyType"], "Account");
    assert_eq!(encryption["services"]["file"]["enabled"], true);
    assert_eq!(body["identity"]["type"], "UserAssigned");
    assert_eq!(body["identity"]["userAssignedIdentities"][UAMI]["principalId"], "e0000000-0000-0000-0000-000000000001");
    assert_eq!(body["identity"]["userAssignedIdentities"][UAMI]["clientId"], "c0000000-0000-0000-0000-000000000001");
    assert_eq!(env.get_account().await, body, "GET shows what the PATCH answered");

    // Pinning a version that expires reports its expiry; going back to Microsoft-managed keys drops the vault.
    let mut pinned = cmk_body("https://custvault.vault.azure.net", "expiring-key", UAMI, APP_ID);
    pinned["properties"]["encryption"]["keySource"] = json!("microsoft.keyvault");
    let (status, body) = env.patch_account(pinned).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
    assert_eq!(
        body["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyExpirationTimestamp"],
        "2100-01-01T00:00:00.0000000Z"
    );
    let (status, body) =
        env.patch_account(json!({ "properties": { "encryption": { "keySource": "Microsoft.Storage" } } })).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["properties"]["encryption"].get("keyvaultproperties").is_none());
    assert_eq!(
        body["properties"]["encryption"]["identity"]["federatedIdentityClientId"], APP_ID,
        "encryption identity stays"
    );
}

#[tokio::test]
async fn managed_hsm_key_with_key_scoped_role_works() {
    let env = start().await;
    let (status, body) =
        env.patch_account(cmk_body("https://custhsm.managedhsm.azure.net", "hsmkey", UAMI, APP_ID)).await;
    assert_eq!(status, 200, "{body}");
    let kid = body["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"].as_str().unwrap();
    assert!(kid.starts_with("https://custhsm.managedhsm.azure.net/keys/hsmkey/"), "{kid}");
}

#[tokio::test]
async fn each_storage_rp_error_leaves_the_account_unchanged() {
    let env = start().await;
    // More than the Storage RP's 10 writes per second go out here; this test is about validation, not limits.
    let unthrottled = LimitsConfig { throttling: false, ..LimitsConfig::default() };
    env.emulator.shared().limits.configure(unthrottled).unwrap();
    let before = env.get_account().await;
    let vault = "https://custvault.vault.azure.net";
    let mut not_attached = cmk_body(vault, "cmk", UAMI, APP_ID);
    not_attached["identity"] = json!({ "type": "UserAssigned", "userAssignedIdentities": { NO_FIC_UAMI: {} } });
    let mut unknown_member = cmk_body(vault, "cmk", UAMI, APP_ID);
    unknown_member["properties"]["encryption"]["keyvaultproperties"]["keyUrl"] = json!("x");
    let mut ill_typed = cmk_body(vault, "cmk", UAMI, APP_ID);
    ill_typed["properties"]["encryption"]["services"]["blob"]["enabled"] = json!("true");
    let mut bad_source = cmk_body(vault, "cmk", UAMI, APP_ID);
    bad_source["properties"]["encryption"]["keySource"] = json!("Microsoft.Vault");
    let missing_uami = UAMI.replace("cmk-uami", "ghost-uami");
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        ("identity not on the account", not_attached, 400, "BadRequest", "Missing pre-requisites"),
        (
            "purge protection off",
            cmk_body("https://nopurgevault.vault.azure.net", "cmk", UAMI, APP_ID),
            400,
            "KeyVaultPolicyError",
            "recoverable is not set",
        ),
        (
            "no role for the app",
            cmk_body("https://norolevault.vault.azure.net", "cmk", UAMI, APP_ID),
            400,
            "KeyVaultAuthenticationFailure",
            "authentication issue",
        ),
        (
            "disabled key",
            cmk_body(vault, "disabled-key", UAMI, APP_ID),
            400,
            "KeyVaultAuthenticationFailure",
            "authentication issue",
        ),
        (
            "expired key",
            cmk_body(vault, "expired-key", UAMI, APP_ID),
            400,
            "KeyVaultAuthenticationFailure",
            "authentication issue",
        ),
        (
            "missing key",
            cmk_body(vault, "nokey", UAMI, APP_ID),
            400,
            "KeyVaultEncryptionKeyNotFound",
            "key vault key is not found",
        ),
        (
            "unknown vault",
            cmk_body("https://novault.vault.azure.net", "cmk", UAMI, APP_ID),
            400,
            "KeyVaultVaultNotFound",
            "not found",
        ),
        (
            "FIC does not name this identity",
            cmk_body(vault, "cmk", NO_FIC_UAMI, APP_ID),
            400,
            "KeyVaultAuthenticationFailure",
            "authentication issue",
        ),
        (
            "app unknown in the vault tenant",
            cmk_body(vault, "cmk", UAMI, "a9999999-9999-9999-9999-999999999999"),
            400,
            "KeyVaultAuthenticationFailure",
            "authentication issue",
        ),
        ("unknown member", unknown_member, 400, "InvalidRequestContent", "Could not find member 'keyUrl'"),
        ("ill-typed member", ill_typed, 400, "InvalidRequestContent", "System.Boolean"),
        ("bad key source", bad_source, 400, "InvalidRequestPropertyValue", "keySource"),
        (
            "identity does not exist",
            cmk_body(vault, "cmk", &missing_uami, APP_ID),
            400,
            "FailedIdentityOperation",
            "ghost-uami",
        ),
        (
            "malformed identity id",
            cmk_body(vault, "cmk", "cmk-uami", APP_ID),
            400,
            "LinkedInvalidPropertyId",
            "cmk-uami",
        ),
    ];
    for (name, body, status, expected_code, message) in cases {
        let (got, answer) = env.patch_account(body).await;
        assert_eq!((got, code(&answer)), (status, expected_code), "{name}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(message), "{name}: {answer}");
        assert_eq!(env.get_account().await, before, "{name} changed the account");
    }
}

#[tokio::test]
async fn revoking_the_role_breaks_the_next_patch() {
    let env = start().await;
    let body = cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID);
    assert_eq!(env.patch_account(body.clone()).await.0, 200);
    let revoke = Change::RevokeRole {
        vault: Some("custvault".into()),
        principal_id: SP_IN_CUSTOMER.into(),
        role: "Key Vault Crypto Service Encryption User".into(),
        scope: None,
    };
    env.emulator.shared().apply(&[revoke]).unwrap();
    assert_eq!(env.patch_account(body.clone()).await.0, 200, "the revocation has not propagated yet");
    advance(&env, ROLE_PROPAGATION);
    let (status, answer) = env.patch_account(body).await;
    assert_eq!((status, code(&answer)), (400, "KeyVaultAuthenticationFailure"));
}

#[tokio::test]
async fn identity_merge_rules() {
    let env = start().await;
    let (status, body) = env.patch_account(json!({ "identity": { "type": "SystemAssigned" } })).await;
    assert_eq!(status, 200, "{body}");
    let system_principal = body["identity"]["principalId"].as_str().unwrap().to_owned();
    assert_eq!(body["identity"]["tenantId"], ISV);

    let (_, body) = env
        .patch_account(
            json!({ "identity": { "type": "SystemAssigned,UserAssigned", "userAssignedIdentities": { UAMI: {} } } }),
        )
        .await;
    assert_eq!(body["identity"]["type"], "SystemAssigned,UserAssigned");
    assert_eq!(body["identity"]["principalId"], system_principal.as_str(), "the system identity survives");
    assert_eq!(body["identity"]["userAssignedIdentities"][UAMI]["clientId"], "c0000000-0000-0000-0000-000000000001");

    let (_, body) = env
        .patch_account(json!({ "identity": { "type": "SystemAssigned,UserAssigned", "userAssignedIdentities": { NO_FIC_UAMI: {} } } }))
        .await;
    assert_eq!(body["identity"]["userAssignedIdentities"].as_object().unwrap().len(), 2, "entries merge: {body}");

    let (_, body) = env
        .patch_account(json!({ "identity": { "type": "SystemAssigned,UserAssigned", "userAssignedIdentities": { NO_FIC_UAMI: null } } }))
        .await;
    let users = body["identity"]["userAssignedIdentities"].as_object().unwrap();
    assert_eq!(users.keys().collect::<Vec<_>>(), [UAMI], "null removes: {body}");

    let (_, body) = env.patch_account(json!({ "identity": { "type": "UserAssigned" } })).await;
    assert_eq!(body["identity"]["type"], "UserAssigned");
    assert!(body["identity"].get("principalId").is_none(), "UserAssigned alone drops the system identity: {body}");

    let (status, answer) = env
        .patch_account(json!({ "identity": { "type": "UserAssigned", "userAssignedIdentities": { UAMI: null } } }))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (400, "InvalidRequestPropertyValue"),
        "removing the last one under UserAssigned"
    );

    let (status, answer) = env.patch_account(json!({ "identity": { "type": "Everything" } })).await;
    assert_eq!((status, code(&answer)), (400, "InvalidRequestPropertyValue"));

    let (_, body) = env.patch_account(json!({ "identity": { "type": "None" } })).await;
    assert_eq!(body["identity"], json!({ "type": "None" }));

    // With CMK on, detaching the encryption identity is refused, as the RP needs it to reach the key.
    assert_eq!(env.patch_account(cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID)).await.0, 200);
    let (status, answer) = env.patch_account(json!({ "identity": { "type": "SystemAssigned" } })).await;
    assert_eq!((status, code(&answer)), (400, "BadRequest"), "{answer}");
}

/// `StorageAccounts_List` and `_ListByResourceGroup`: pages of `value` with a `nextLink` to follow, every account
/// once, each page valid against the spec's response schema; authorized at the listed scope.
#[tokio::test]
async fn storage_accounts_are_listed_in_pages_by_subscription_and_resource_group() {
    let mut scenario: Scenario =
        serde_json::from_str(include_str!("data/arm/cross_tenant.json")).expect("scenario parses");
    for n in 0..249 {
        let mut account = scenario.storage_accounts[0].clone();
        account.id = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/bulk{n:04}"
        );
        account.encryption = None;
        scenario.storage_accounts.push(account);
    }
    let total = scenario.storage_accounts.len();
    let in_group = scenario.storage_accounts.iter().filter(|a| a.id.contains("/resourceGroups/rg-isv/")).count();
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let env = Env {
        client: AzureClient::new(emulator.url()),
        token: mint(&emulator, ISV, CALLER, "https://management.azure.com/"),
        emulator,
    };
    let list_response = azure_emulator::openapi::STORAGE.response("StorageAccounts_List", "200");
    for scope in [format!("/subscriptions/{SUB}"), format!("/subscriptions/{SUB}/resourceGroups/rg-isv")] {
        let mut url = format!("{scope}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01");
        let (mut names, mut pages) = (Vec::new(), 0);
        loop {
            let (status, page) = env.call(Method::GET, &url, Some(&env.token), None).await;
            assert_eq!(status, 200, "{page}");
            let violations = list_response.check_response(&page);
            assert!(violations.is_empty(), "{violations:?}");
            pages += 1;
            names.extend(page["value"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_owned()));
            match page["nextLink"].as_str() {
                Some(next) => url = next.strip_prefix(ARM).expect("nextLink on ARM").to_owned(),
                None => break,
            }
        }
        let in_scope = if scope.contains("resourceGroups") { in_group } else { total };
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((names.len(), unique.len()), (in_scope, in_scope), "{scope}: every account once");
        assert_eq!(pages, in_scope.div_ceil(100), "{scope}");
        assert!(pages > 1, "paging is exercised");
    }
    // Read on one resource group does not list the subscription.
    let narrow = mint(&env.emulator, ISV, STORAGE_ONLY, "https://management.azure.com/");
    let path = format!("/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01");
    let (status, body) = env.call(Method::GET, &path, Some(&narrow), None).await;
    assert_eq!((status, code(&body)), (403, "AuthorizationFailed"), "{body}");
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01"
    );
    let (status, body) = env.call(Method::GET, &path, Some(&env.token), None).await;
    assert_eq!((status, code(&body)), (404, "ResourceGroupNotFound"), "{body}");
}

/// `StorageAccounts_Create` with the customer's key from the first PUT (the spec's example
/// `StorageAccountCreateUserAssignedIdentityWithFederatedIdentityClientId`, pointed at the scenario).
fn create_body(location: &str, vault: &str) -> Value {
    let mut body = cmk_body(vault, "cmk", UAMI, APP_ID);
    body["sku"] = json!({ "name": "Standard_LRS" });
    body["kind"] = json!("StorageV2");
    body["location"] = json!(location);
    body["tags"] = json!({ "cmk-onboarding-id": "obd-new" });
    body
}

const NEW_ACCOUNT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/isvnew1";

impl Env {
    /// Status, `Location`, `Retry-After` and body of one call.
    async fn call_with_headers(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, Option<String>, Value) {
        let mut request = self.client.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let (status, location, retry_after) = (response.status().as_u16(), header("location"), header("retry-after"));
        let text = response.text().await.expect("body");
        (status, location, retry_after, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn create_is_a_long_running_put_checked_like_a_patch() {
    let env = start().await;
    let url = format!("{ARM}{NEW_ACCOUNT}?api-version=2023-05-01");
    let (status, location, retry_after, body) = env
        .call_with_headers(Method::PUT, &url, Some(create_body("westeurope", "https://custvault.vault.azure.net")))
        .await;
    assert_eq!(status, 202, "{body}");
    let location = location.expect("202 names its Location");
    assert!(
        location.starts_with(&format!("{ARM}/subscriptions/{SUB}/providers/Microsoft.Storage/operations/")),
        "{location}"
    );
    assert!(location.ends_with("?monitor=true&api-version=2023-05-01"), "{location}");
    let retry_after: u64 = retry_after.expect("and a Retry-After").parse().unwrap();
    assert!((1..=17).contains(&retry_after), "{retry_after}");

    // Until the creation time has passed: the account shows Creating, the operation answers 202 again, and a
    // write to the account waits for it.
    let (status, _, _, creating) = env.call_with_headers(Method::GET, &url, None).await;
    assert_eq!((status, creating["properties"]["provisioningState"].as_str()), (200, Some("Creating")), "{creating}");
    let (status, again, _, _) = env.call_with_headers(Method::GET, &location, None).await;
    assert_eq!((status, again.as_deref()), (202, Some(location.as_str())));
    let (status, _, _, busy) = env.call_with_headers(Method::PATCH, &url, Some(json!({ "tags": {} }))).await;
    assert_eq!((status, code(&busy)), (409, "StorageAccountOperationInProgress"));

    advance(&env, std::time::Duration::from_secs(3));
    let (status, _, _, done) = env.call_with_headers(Method::GET, &location, None).await;
    assert_eq!(status, 200, "{done}");
    let violations = azure_emulator::openapi::STORAGE.response("StorageAccounts_Create", "200").check_response(&done);
    assert!(violations.is_empty(), "{violations:?}");
    let encryption = &done["properties"]["encryption"];
    assert_eq!(done["properties"]["provisioningState"], "Succeeded");
    assert_eq!(done["location"], "westeurope");
    assert_eq!(done["tags"]["cmk-onboarding-id"], "obd-new");
    assert_eq!(encryption["keySource"], "Microsoft.Keyvault");
    let latest = deterministic_version("custvault.vault.azure.net", "cmk", 1);
    assert_eq!(
        encryption["keyvaultproperties"]["currentVersionedKeyIdentifier"],
        format!("https://custvault.vault.azure.net/keys/cmk/{latest}")
    );
    assert_eq!(env.call_with_headers(Method::GET, &url, None).await.3, done, "GET shows what the operation answered");

    // The same PUT again is an update with the same properties: 200 at once, nothing changes. Another location is
    // refused.
    let (status, _, _, same) = env
        .call_with_headers(Method::PUT, &url, Some(create_body("westeurope", "https://custvault.vault.azure.net")))
        .await;
    assert_eq!((status, &same), (200, &done));
    let (status, _, _, moved) = env
        .call_with_headers(Method::PUT, &url, Some(create_body("eastus", "https://custvault.vault.azure.net")))
        .await;
    assert_eq!((status, code(&moved)), (409, "InvalidResourceLocation"), "{moved}");
}

#[tokio::test]
async fn create_refuses_what_azure_refuses_and_creates_nothing() {
    let mut scenario: Scenario = serde_json::from_str(include_str!("data/arm/cross_tenant.json")).unwrap();
    scenario.taken_storage_account_names = vec!["takenelsewhere".into()];
    let mut elsewhere = scenario.storage_accounts[0].clone();
    elsewhere.id = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.Storage/storageAccounts/isvelsewhere"
    );
    scenario.storage_accounts.push(elsewhere);
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.unwrap();
    let env = Env {
        client: AzureClient::new(emulator.url()),
        token: mint(&emulator, ISV, CALLER, "https://management.azure.com/"),
        emulator,
    };
    let put = |name: &str, body: Value| {
        let url = format!(
            "{ARM}/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/{name}?api-version=2023-05-01"
        );
        let env = &env;
        async move { env.call_with_headers(Method::PUT, &url, Some(body)).await }
    };
    let good = || create_body("westeurope", "https://custvault.vault.azure.net");
    let mut unknown_member = good();
    unknown_member["properties"]["color"] = json!("blue");
    let mut no_sku = good();
    no_sku.as_object_mut().unwrap().remove("sku");
    let cases = [
        ("takenelsewhere", good(), 409, "StorageAccountAlreadyTaken"),
        (
            "isvnew2",
            create_body("atlantis", "https://custvault.vault.azure.net"),
            400,
            "LocationNotAvailableForResourceType",
        ),
        (
            "isvnew3",
            create_body("westeurope", "https://norolevault.vault.azure.net"),
            400,
            "KeyVaultAuthenticationFailure",
        ),
        ("isvnew4", create_body("westeurope", "https://nopurgevault.vault.azure.net"), 400, "KeyVaultPolicyError"),
        ("isvnew5", unknown_member, 400, "InvalidRequestContent"),
        ("isvnew6", no_sku, 400, "InvalidRequestContent"),
    ];
    for (name, body, status, error) in cases {
        let (got, _, _, answer) = put(name, body).await;
        assert_eq!((got, code(&answer)), (status, error), "{name}: {answer}");
        let url = format!(
            "{ARM}/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/{name}?api-version=2023-05-01"
        );
        assert_eq!(env.call_with_headers(Method::GET, &url, None).await.0, 404, "{name} was not created");
    }

    // Names are global: one that exists in another group of the same subscription is StorageAccountAlreadyExists.
    let (status, _, _, answer) = put("isvelsewhere", good()).await;
    assert_eq!((status, code(&answer)), (409, "StorageAccountAlreadyExists"), "{answer}");

    // Creating is a write: a caller without it is refused before anything else.
    let denied = mint(&env.emulator, ISV, DENIED, "https://management.azure.com/");
    let url = format!(
        "{ARM}/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/isvnew8?api-version=2023-05-01"
    );
    let response = env.client.request(Method::PUT, &url).bearer_auth(denied).json(&good()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

/// Auto-rotation: with no version pinned, the Storage RP checks the vault for a new version once a day (on the
/// emulator's clock, counted from the PATCH) and moves the account to the newest version that existed at that check;
/// a pinned version stays; `RunStorageKeyCheck` brings the check due now.
#[tokio::test]
async fn the_daily_key_check_picks_up_a_rotated_version() {
    let mut env = start().await;
    // Tokens live an hour; the clock moves days.
    let renew = |env: &mut Env| env.token = mint(&env.emulator, ISV, CALLER, "https://management.azure.com/");
    let (status, body) = env.patch_account(cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID)).await;
    assert_eq!(status, 200, "{body}");
    let current = |body: &Value| {
        body["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let stamp =
        |body: &Value| body["properties"]["encryption"]["keyvaultproperties"]["lastKeyRotationTimestamp"].clone();
    let version = |n| deterministic_version("custvault.vault.azure.net", "cmk", n);
    let (v1, v2, v3) = (version(1), version(2), version(3));
    assert_eq!(current(&body), v1);
    let first_stamp = stamp(&body);

    advance(&env, std::time::Duration::from_secs(3600));
    renew(&mut env);
    env.emulator.shared().apply(&[Change::RotateKey { vault: "custvault".into(), key: "cmk".into() }]).unwrap();
    advance(&env, std::time::Duration::from_secs(22 * 3600));
    renew(&mut env);
    assert_eq!(current(&env.get_account().await), v1, "23 hours after the PATCH: not checked yet");
    advance(&env, std::time::Duration::from_secs(3600));
    renew(&mut env);
    let picked = env.get_account().await;
    assert_eq!(current(&picked), v2, "the daily check picked up the new version");
    assert_ne!(stamp(&picked), first_stamp, "lastKeyRotationTimestamp moves with it");

    // A rotation after a check waits for the next one; the control change runs it now.
    advance(&env, std::time::Duration::from_secs(60));
    renew(&mut env);
    env.emulator.shared().apply(&[Change::RotateKey { vault: "custvault".into(), key: "cmk".into() }]).unwrap();
    assert_eq!(current(&env.get_account().await), v2);
    env.emulator.shared().apply(&[Change::RunStorageKeyCheck { account: ACCOUNT.into() }]).unwrap();
    assert_eq!(current(&env.get_account().await), v3);

    // A pinned version is never moved.
    let mut pinned = cmk_body("https://custvault.vault.azure.net", "cmk", UAMI, APP_ID);
    pinned["properties"]["encryption"]["keyvaultproperties"]["keyversion"] = json!(v1);
    assert_eq!(env.patch_account(pinned).await.0, 200);
    env.emulator.shared().apply(&[Change::RotateKey { vault: "custvault".into(), key: "cmk".into() }]).unwrap();
    advance(&env, std::time::Duration::from_secs(2 * 24 * 3600));
    renew(&mut env);
    assert_eq!(current(&env.get_account().await), v1);
}
