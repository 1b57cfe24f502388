//! Fidelity of the emulated ARM and Key Vault against the official OpenAPI specs in the repository's `specs/azure`,
//! with the emulator's own validator (`azure_emulator::openapi`, the one that checks requests at run time): every
//! body we serve validates against its operation's response schema, the spec's `x-ms-examples` replayed against the
//! emulator give responses of the same shape, and each kind of invalid request is refused as the service refuses it.

use std::path::Path;

use azure_emulator::cloud::Cloud;
use azure_emulator::control::AzureClient;
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::openapi::{self, Schema, Spec};
use azure_emulator::scenario::RoleAssignment;
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use reqwest::Method;
use serde_json::{Value, json};

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const CUSTOMER: &str = "22222222-2222-2222-2222-222222222222";
const SUB: &str = "00000000-0000-0000-0000-000000000001";
const CALLER: &str = "f0000000-0000-0000-0000-000000000001";
const OFFICER: &str = "0f000000-0000-0000-0000-000000000001";
const APP_ID: &str = "a1111111-1111-1111-1111-111111111111";
const ARM: &str = "https://management.azure.com";
const KV: &str = "https://custvault.vault.azure.net";
const UAMI: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";
const ACCOUNT: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/isvdata1";

const STORAGE: Spec = openapi::STORAGE;
const MSI: Spec = openapi::MANAGED_IDENTITY;
const FEATURES: Spec = openapi::FEATURES;
const RESOURCES: Spec = openapi::RESOURCES;
const KEYS: Spec = openapi::KEY_VAULT_KEYS;

/// One of the spec's `x-ms-examples`, read from the repository's `specs/azure`.
fn spec_example(spec: Spec, name: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/azure").join(spec.path());
    let path = file.parent().unwrap().join("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_response(schema: Schema, body: &Value, what: &str) {
    let violations = schema.check_response(body);
    let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(violations.is_empty(), "{what} does not match the spec:\n{}\n{body:#}", text.join("\n"));
}

fn assert_request(schema: Schema, body: &Value, what: &str) {
    if let Err(violations) = schema.check_request(body) {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        panic!("{what} does not match the spec:\n{}\n{body:#}", text.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Responses against the spec examples.

/// Every member of `example` must exist in `ours` with the same JSON type (arrays: first items), except `skip`.
fn shape_differences(example: &Value, ours: &Value, at: &str, skip: &[&str], out: &mut Vec<String>) {
    if skip.contains(&at) {
        return;
    }
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if kind(example) != kind(ours) {
        out.push(format!("{at}: example has {}, emulator has {}", kind(example), kind(ours)));
        return;
    }
    match (example, ours) {
        // Maps keyed by resource id (userAssignedIdentities): compare the values, not the keys.
        (Value::Object(example), Value::Object(ours))
            if example.keys().all(|k| k.starts_with('/')) && !example.is_empty() =>
        {
            match (example.values().next(), ours.values().next()) {
                (Some(first), Some(theirs)) => shape_differences(first, theirs, &format!("{at}{{}}"), skip, out),
                _ => out.push(format!("{at}: the emulator's map is empty")),
            }
        }
        (Value::Object(example), Value::Object(ours)) => {
            for (key, member) in example {
                let child = format!("{at}.{key}");
                match ours.get(key) {
                    Some(theirs) => shape_differences(member, theirs, &child, skip, out),
                    None if skip.contains(&child.as_str()) => {}
                    None => out.push(format!("{child}: missing in the emulator's answer")),
                }
            }
        }
        (Value::Array(example), Value::Array(ours)) => {
            if let (Some(first), Some(theirs)) = (example.first(), ours.first()) {
                shape_differences(first, theirs, &format!("{at}[]"), skip, out);
            }
        }
        _ => {}
    }
}

fn assert_same_shape(example: &Value, ours: &Value, skip: &[&str], what: &str) {
    let mut out = Vec::new();
    shape_differences(example, ours, "$", skip, &mut out);
    assert!(out.is_empty(), "{what}: shape differs from the spec example:\n{}\n{ours:#}", out.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// The emulator under test.

struct Env {
    emulator: Emulator,
    client: AzureClient,
}

async fn start() -> Env {
    let mut scenario: Scenario =
        serde_json::from_str(include_str!("data/arm/cross_tenant.json")).expect("scenario parses");
    let vault = scenario.vaults.iter_mut().find(|v| v.name == "custvault").expect("custvault");
    vault.role_assignments.push(RoleAssignment {
        principal_id: OFFICER.into(),
        role: "Key Vault Crypto Officer".into(),
        scope: "/".into(),
        description: None,
    });
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

    async fn send(&self, method: Method, url: &str, token: Option<String>, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn arm(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let token = self.token(ISV, CALLER, "https://management.azure.com/");
        self.send(method, &format!("{ARM}{path}"), Some(token), body).await
    }

    async fn vault(&self, method: Method, url: &str, body: Option<&Value>) -> (u16, Value) {
        let token = self.token(CUSTOMER, OFFICER, "https://vault.azure.net");
        self.send(method, url, Some(token), body).await
    }
}

/// The federated-identity example's request, pointed at the scenario's identity, app, vault and key.
fn federated_update_request() -> Value {
    let example = spec_example(STORAGE, "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId.json");
    let mut body = example["parameters"]["parameters"].clone();
    body["identity"]["userAssignedIdentities"] = json!({ UAMI: {} });
    let encryption = &mut body["properties"]["encryption"];
    encryption["identity"] = json!({ "userAssignedIdentity": UAMI, "federatedIdentityClientId": APP_ID });
    encryption["keyvaultproperties"]["keyvaulturi"] = json!(KV);
    encryption["keyvaultproperties"]["keyname"] = json!("cmk");
    body
}

#[tokio::test]
async fn storage_account_bodies_and_examples_match_the_spec() {
    let env = start().await;
    let path = format!("{ACCOUNT}?api-version=2023-05-01");

    let (status, before) = env.arm(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_response(STORAGE.response("StorageAccounts_GetProperties", "200"), &before, "GET (Microsoft-managed keys)");

    let request = federated_update_request();
    assert_request(STORAGE.request_body("StorageAccounts_Update"), &request, "PATCH request");
    let (status, patched) = env.arm(Method::PATCH, &path, Some(&request)).await;
    assert_eq!(status, 200, "{patched}");
    assert_response(STORAGE.response("StorageAccounts_Update", "200"), &patched, "PATCH response");
    let example = spec_example(STORAGE, "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId.json");
    assert_same_shape(
        &example["responses"]["200"]["body"],
        &patched,
        &[],
        "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId",
    );

    // With a system-assigned identity too, GET has every member of the CMK example except those of features the
    // emulated account does not have (geo-replication, HNS, routing preference, secondary region).
    let both = json!({ "identity": { "type": "SystemAssigned,UserAssigned", "userAssignedIdentities": { UAMI: {} } } });
    assert_request(STORAGE.request_body("StorageAccounts_Update"), &both, "identity PATCH");
    assert_eq!(env.arm(Method::PATCH, &path, Some(&both)).await.0, 200);
    let (_, got) = env.arm(Method::GET, &path, None).await;
    assert_response(STORAGE.response("StorageAccounts_GetProperties", "200"), &got, "GET (CMK)");
    let example = spec_example(STORAGE, "StorageAccountGetPropertiesCMKEnabled.json");
    let not_emulated = [
        "$.properties.geoReplicationStats",
        "$.properties.isHnsEnabled",
        "$.properties.routingPreference",
        "$.properties.secondaryLocation",
        "$.properties.statusOfSecondary",
        "$.properties.primaryEndpoints.microsoftEndpoints",
        "$.properties.primaryEndpoints.internetEndpoints",
        // Tags are the example's data, not shape.
        "$.tags.key1",
        "$.tags.key2",
    ];
    assert_same_shape(
        &example["responses"]["200"]["body"],
        &got,
        &not_emulated,
        "StorageAccountGetPropertiesCMKEnabled",
    );

    // Error bodies have the RP's ErrorResponse shape.
    let (status, error) = env.arm(Method::PATCH, &path, Some(&json!({ "properties": { "encryption": { "keySource": "Microsoft.Keyvault", "keyvaultproperties": { "keyvaulturi": KV, "keyname": "missing" } } } }))).await;
    assert_eq!(status, 400);
    assert_response(STORAGE.definition("ErrorResponse"), &error, "storage error");
    let (status, error) = env.send(Method::GET, &format!("{ARM}{path}"), None, None).await;
    assert_eq!(status, 401);
    assert_response(STORAGE.definition("ErrorResponse"), &error, "ARM 401");
}

#[tokio::test]
async fn identity_feature_and_provider_bodies_match_the_spec() {
    let env = start().await;
    let example = spec_example(MSI, "IdentityCreate.json");
    let request = example["parameters"]["parameters"].clone();
    assert_request(MSI.request_body("UserAssignedIdentities_CreateOrUpdate"), &request, "identity PUT request");
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identityName?api-version=2023-01-31"
    );
    let (status, created) = env.arm(Method::PUT, &path, Some(&request)).await;
    assert_eq!(status, 201);
    assert_response(MSI.response("UserAssignedIdentities_CreateOrUpdate", "201"), &created, "identity PUT");
    assert_same_shape(&example["responses"]["201"]["body"], &created, &[], "IdentityCreate");
    let (_, got) = env.arm(Method::GET, &path, None).await;
    assert_response(MSI.response("UserAssignedIdentities_Get", "200"), &got, "identity GET");
    let example = spec_example(MSI, "IdentityGet.json");
    assert_same_shape(&example["responses"]["200"]["body"], &got, &[], "IdentityGet");
    let (status, missing) = env.arm(Method::GET, &path.replace("identityName", "nobody"), None).await;
    assert_eq!(status, 404);
    assert_response(MSI.response("UserAssignedIdentities_Get", "default"), &missing, "identity 404");

    let feature = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity"
    );
    let (_, registered) = env.arm(Method::POST, &format!("{feature}/register?api-version=2021-07-01"), None).await;
    assert_response(FEATURES.response("Features_Register", "200"), &registered, "feature register");
    assert_same_shape(
        &spec_example(FEATURES, "registerFeature.json")["responses"]["200"]["body"],
        &registered,
        &[],
        "registerFeature",
    );
    let (_, got) = env.arm(Method::GET, &format!("{feature}?api-version=2021-07-01"), None).await;
    assert_response(FEATURES.response("Features_Get", "200"), &got, "feature get");
    assert_same_shape(&spec_example(FEATURES, "getFeature.json")["responses"]["200"]["body"], &got, &[], "getFeature");
    let (status, missing) = env.arm(Method::GET, &feature, None).await;
    assert_eq!(status, 400, "no api-version");
    assert_response(FEATURES.response("Features_Get", "default"), &missing, "feature error");

    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Storage");
    let (_, registered) = env.arm(Method::POST, &format!("{provider}/register?api-version=2021-04-01"), None).await;
    assert_response(RESOURCES.response("Providers_Register", "200"), &registered, "provider register");
    let (_, got) = env.arm(Method::GET, &format!("{provider}?api-version=2021-04-01"), None).await;
    assert_response(RESOURCES.response("Providers_Get", "200"), &got, "provider get");
    let not_emulated = ["$.resourceTypes[].locationMappings"];
    assert_same_shape(
        &spec_example(RESOURCES, "GetProvider.json")["responses"]["200"]["body"],
        &got,
        &not_emulated,
        "GetProvider",
    );
}

#[tokio::test]
async fn key_vault_bodies_and_examples_match_the_spec() {
    let env = start().await;
    let api = "api-version=7.4";

    let example = spec_example(KEYS, "CreateKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    assert_request(KEYS.request_body("CreateKey"), &request, "create request");
    let (status, created) =
        env.vault(Method::POST, &format!("{KV}/keys/CreateSoftKeyTest/create?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{created}");
    assert_response(KEYS.response("CreateKey", "200"), &created, "create");
    assert_same_shape(&example["responses"]["200"]["body"], &created, &[], "CreateKey-example");

    let (_, got) = env.vault(Method::GET, &format!("{KV}/keys/CreateSoftKeyTest?{api}"), None).await;
    assert_response(KEYS.response("GetKey", "200"), &got, "get");
    assert_same_shape(
        &spec_example(KEYS, "GetKey-example.json")["responses"]["200"]["body"],
        &got,
        &[],
        "GetKey-example",
    );

    let (_, versions) = env.vault(Method::GET, &format!("{KV}/keys/cmk/versions?{api}&maxresults=1"), None).await;
    assert_response(KEYS.response("GetKeyVersions", "200"), &versions, "versions");
    assert_same_shape(
        &spec_example(KEYS, "GetKeyVersions-example.json")["responses"]["200"]["body"],
        &versions,
        &[],
        "GetKeyVersions-example",
    );

    let kid = created["key"]["kid"].as_str().unwrap().to_owned();
    let example = spec_example(KEYS, "wrapKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    assert_request(KEYS.request_body("wrapKey"), &request, "wrap request");
    let (status, wrapped) = env.vault(Method::POST, &format!("{kid}/wrapkey?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{wrapped}");
    assert_response(KEYS.response("wrapKey", "200"), &wrapped, "wrap");
    assert_same_shape(&example["responses"]["200"]["body"], &wrapped, &[], "wrapKey-example");
    let unwrap_request = json!({ "alg": request["alg"], "value": wrapped["value"] });
    assert_request(KEYS.request_body("unwrapKey"), &unwrap_request, "unwrap request");
    let (status, unwrapped) = env.vault(Method::POST, &format!("{kid}/unwrapkey?{api}"), Some(&unwrap_request)).await;
    assert_eq!((status, &unwrapped["value"]), (200, &request["value"]));
    assert_response(KEYS.response("unwrapKey", "200"), &unwrapped, "unwrap");
    assert_same_shape(
        &spec_example(KEYS, "unwrapKey-example.json")["responses"]["200"]["body"],
        &unwrapped,
        &[],
        "unwrapKey-example",
    );

    let example = spec_example(KEYS, "UpdateKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    assert_request(KEYS.request_body("UpdateKey"), &request, "update request");
    let (status, updated) = env.vault(Method::PATCH, &format!("{kid}?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{updated}");
    assert_response(KEYS.response("UpdateKey", "200"), &updated, "update");
    let example_only = ["$.tags"];
    assert_same_shape(&example["responses"]["200"]["body"], &updated, &example_only, "UpdateKey-example");

    // Error bodies: 401 challenge, 403 RBAC and disabled key, 404.
    let error_schema = KEYS.response("GetKey", "default");
    let (status, unauthorized) = env.send(Method::GET, &format!("{KV}/keys/cmk?{api}"), None, None).await;
    assert_eq!(status, 401);
    assert_response(error_schema.clone(), &unauthorized, "401");
    let stranger = env.token(CUSTOMER, "0f000000-0000-0000-0000-00000000dead", "https://vault.azure.net");
    let (status, forbidden) = env.send(Method::GET, &format!("{KV}/keys/cmk?{api}"), Some(stranger), None).await;
    assert_eq!(status, 403);
    assert_response(error_schema.clone(), &forbidden, "403 RBAC");
    let (status, disabled) = env
        .vault(
            Method::POST,
            &format!("{KV}/keys/disabled-key//wrapkey?{api}"),
            Some(&json!({ "alg": "RSA-OAEP", "value": "AAAA" })),
        )
        .await;
    assert_eq!(status, 403);
    assert_response(error_schema.clone(), &disabled, "403 disabled");
    let (status, missing) = env.vault(Method::GET, &format!("{KV}/keys/nothing?{api}"), None).await;
    assert_eq!(status, 404);
    assert_response(error_schema, &missing, "404");
}

// ---------------------------------------------------------------------------------------------------------------
// Requests: each kind of invalid request is refused with the service's code, and changes nothing.

fn error_code(body: &Value) -> (&str, &str) {
    (body["error"]["code"].as_str().unwrap_or_default(), body["error"]["message"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn invalid_storage_and_identity_requests_are_refused() {
    let env = start().await;
    let path = format!("{ACCOUNT}?api-version=2023-05-01");
    let (_, before) = env.arm(Method::GET, &path, None).await;
    let vault_uri_with_path = json!({ "identity": { "type": "UserAssigned", "userAssignedIdentities": { UAMI: {} } },
        "properties": { "encryption": { "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": { "keyvaulturi": format!("{KV}/keys/cmk"), "keyname": "cmk" },
            "identity": { "userAssignedIdentity": UAMI, "federatedIdentityClientId": APP_ID } } } });
    let cases = [
        (
            "unknown member",
            json!({ "properties": { "colour": "blue" } }),
            "InvalidRequestContent",
            "Could not find member 'colour' on object of type 'StorageAccountPropertiesUpdateParameters'. Path 'properties.colour'",
        ),
        (
            "read-only member",
            json!({ "properties": { "encryption": { "keyvaultproperties": { "currentVersionedKeyIdentifier": "x" } } } }),
            "AccountPropertyCannotBeUpdated",
            "The property 'currentVersionedKeyIdentifier' was specified in the input, but it cannot be updated.",
        ),
        (
            "closed enum",
            json!({ "properties": { "accessTier": "Lukewarm" } }),
            "InvalidRequestContent",
            "Error converting value \"Lukewarm\" to type 'AccessTier'. Path 'properties.accessTier'",
        ),
        (
            "wrong type",
            json!({ "properties": { "supportsHttpsTrafficOnly": "yes" } }),
            "InvalidRequestContent",
            "to type 'System.Boolean'. Path 'properties.supportsHttpsTrafficOnly'",
        ),
        (
            "missing required",
            json!({ "identity": {} }),
            "InvalidRequestContent",
            "Required property 'type' not found in JSON. Path 'identity'",
        ),
        ("vault URI with a path", vault_uri_with_path, "InvalidRequestPropertyValue", "keyvaulturi"),
    ];
    for (what, body, code, message) in cases {
        let (status, answer) = env.arm(Method::PATCH, &path, Some(&body)).await;
        assert_eq!((status, error_code(&answer).0), (400, code), "{what}: {answer}");
        assert!(error_code(&answer).1.contains(message), "{what}: {answer}");
        assert_response(STORAGE.definition("ErrorResponse"), &answer, what);
    }
    let (_, after) = env.arm(Method::GET, &path, None).await;
    assert_eq!(before, after, "a refused PATCH changes nothing");

    // Member names and closed-enum values are read case-insensitively, as Json.NET reads them.
    let (status, patched) =
        env.arm(Method::PATCH, &path, Some(&json!({ "Properties": { "AccessTier": "cool" } }))).await;
    assert_eq!((status, &patched["properties"]["accessTier"]), (200, &json!("Cool")), "{patched}");

    // Only the spec file's api-version is served.
    let (status, answer) = env.arm(Method::GET, &format!("{ACCOUNT}?api-version=2025-06-01"), None).await;
    assert_eq!((status, error_code(&answer).0), (400, "NoRegisteredProviderFound"));
    assert!(
        error_code(&answer).1.contains("for type 'storageAccounts'. The supported api-versions are '2023-05-01'"),
        "{answer}"
    );

    let identity = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/fresh"
    );
    let env = &env;
    let put = |body: Value, version: &'static str| {
        let url = format!("{identity}?api-version={version}");
        async move { env.arm(Method::PUT, &url, Some(&body)).await }
    };
    let (status, answer) =
        put(json!({ "location": "westeurope", "properties": { "principalId": SUB } }), "2023-01-31").await;
    assert_eq!((status, error_code(&answer).0), (400, "InvalidRequestContent"), "read-only: {answer}");
    assert!(
        error_code(&answer).1.contains("'properties' is read-only"),
        "the spec marks all of it read-only: {answer}"
    );
    let (status, answer) = put(json!({ "location": "westeurope", "tags": { "a": 1 } }), "2023-01-31").await;
    assert_eq!((status, error_code(&answer).0), (400, "InvalidRequestContent"), "tag values are strings: {answer}");
    let (status, answer) = put(json!({ "location": "westeurope" }), "2024-11-30").await;
    assert_eq!((status, error_code(&answer).0), (400, "NoRegisteredProviderFound"), "{answer}");
    assert_eq!(env.arm(Method::GET, &format!("{identity}?api-version=2023-01-31"), None).await.0, 404);

    let feature = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity?api-version=2015-12-01"
    );
    let (status, answer) = env.arm(Method::GET, &feature, None).await;
    assert_eq!((status, error_code(&answer).0), (400, "InvalidApiVersionParameter"), "{answer}");
    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Storage?api-version=2024-03-01");
    let (status, answer) = env.arm(Method::GET, &provider, None).await;
    assert_eq!((status, error_code(&answer).0), (400, "InvalidApiVersionParameter"), "{answer}");
    assert!(error_code(&answer).1.contains("The supported versions are '2021-04-01'"), "{answer}");
}

#[tokio::test]
async fn invalid_key_vault_requests_are_refused() {
    let env = start().await;
    let api = "api-version=7.4";
    let created = json!({ "kty": "RSA", "key_size": 2048 });
    let (status, key) = env.vault(Method::POST, &format!("{KV}/keys/validated/create?{api}"), Some(&created)).await;
    assert_eq!(status, 200, "{key}");
    let kid = key["key"]["kid"].as_str().unwrap().to_owned();
    let cases = [
        (
            "unknown member",
            Method::POST,
            format!("{KV}/keys/other/create?{api}"),
            json!({ "kty": "RSA", "size": 2048 }),
            "size",
        ),
        (
            "read-only member",
            Method::PATCH,
            format!("{kid}?{api}"),
            json!({ "attributes": { "created": 1 } }),
            "read-only",
        ),
        (
            "wrong type",
            Method::PATCH,
            format!("{kid}?{api}"),
            json!({ "attributes": { "enabled": "no" } }),
            "expected a boolean",
        ),
        (
            "bad base64url",
            Method::POST,
            format!("{kid}/wrapkey?{api}"),
            json!({ "alg": "RSA-OAEP", "value": "a+b/" }),
            "base64url",
        ),
        (
            "missing required",
            Method::POST,
            format!("{kid}/wrapkey?{api}"),
            json!({ "alg": "RSA-OAEP" }),
            "missing required 'value'",
        ),
    ];
    for (what, method, url, body, message) in cases {
        let (status, answer) = env.vault(method, &url, Some(&body)).await;
        assert_eq!((status, error_code(&answer).0), (400, "BadParameter"), "{what}: {answer}");
        assert!(error_code(&answer).1.contains(message), "{what}: {answer}");
        assert_response(KEYS.response("GetKey", "default"), &answer, what);
    }
    let (status, answer) = env.vault(Method::GET, &format!("{KV}/keys/other?{api}"), None).await;
    assert_eq!(status, 404, "the refused create made no key: {answer}");
    let (_, after) = env.vault(Method::GET, &format!("{kid}?{api}"), None).await;
    assert_eq!(after["attributes"]["enabled"], true, "the refused update changed nothing");

    let (status, answer) = env.vault(Method::GET, &format!("{kid}?api-version=7.5"), None).await;
    assert_eq!((status, error_code(&answer).0), (400, "BadParameter"));
    assert_eq!(
        error_code(&answer).1,
        "The specified version (7.5) is not recognized. Consider using the latest supported version (7.4)."
    );
}

/// `StorageAccounts_Create` replayed from the spec's example with a federated identity: the request is the example's
/// (pointed at the scenario), the operation's final answer has the example's 200 shape and the spec's schema.
#[tokio::test]
async fn storage_account_create_matches_the_spec_example() {
    let env = start().await;
    let example = spec_example(STORAGE, "StorageAccountCreateUserAssignedIdentityWithFederatedIdentityClientId.json");
    let mut request = example["parameters"]["parameters"].clone();
    request["identity"]["userAssignedIdentities"] = json!({ UAMI: {} });
    let encryption = &mut request["properties"]["encryption"];
    encryption["identity"] = json!({ "userAssignedIdentity": UAMI, "federatedIdentityClientId": APP_ID });
    encryption["keyvaultproperties"]["keyvaulturi"] = json!(KV);
    encryption["keyvaultproperties"]["keyname"] = json!("cmk");
    assert_request(STORAGE.request_body("StorageAccounts_Create"), &request, "create request");
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.Storage/storageAccounts/sto4445?api-version=2023-05-01"
    );
    let token = env.token(ISV, CALLER, "https://management.azure.com/");
    let response = env
        .client
        .request(Method::PUT, &format!("{ARM}{path}"))
        .bearer_auth(&token)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "the example's other answer");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    env.emulator.shared().clock.advance(std::time::Duration::from_secs(60));
    let (status, created) = env.send(Method::GET, &location, Some(token), None).await;
    assert_eq!(status, 200, "{created}");
    assert_response(STORAGE.response("StorageAccounts_Create", "200"), &created, "create's final answer");
    let name = "StorageAccountCreateUserAssignedIdentityWithFederatedIdentityClientId";
    assert_same_shape(&example["responses"]["200"]["body"], &created, &[], name);
}
