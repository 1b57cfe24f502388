//! Fidelity of the emulated ARM and Key Vault against the official OpenAPI specs in the repository's `specs/azure`: every
//! body we serve and every request body we accept validates against its operation's schema, and replaying the
//! spec's `x-ms-examples` against the emulator gives responses of the same shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use azure_emulator::cloud::Cloud;
use azure_emulator::control::AzureClient;
use azure_emulator::entra::{Claims, Subject};
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

const STORAGE_SPEC: &str = "storage/resource-manager/Microsoft.Storage/stable/2023-05-01/storage.json";
const MSI_SPEC: &str = "msi/resource-manager/Microsoft.ManagedIdentity/stable/2023-01-31/ManagedIdentity.json";
const FEATURES_SPEC: &str = "resources/resource-manager/Microsoft.Features/stable/2021-07-01/features.json";
const RESOURCES_SPEC: &str = "resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json";
const KEYS_SPEC: &str = "keyvault/data-plane/Microsoft.KeyVault/stable/7.4/keys.json";

// ---------------------------------------------------------------------------------------------------------------
// A small Swagger 2.0 validator: `$ref` across files, `allOf`, `required`, `readOnly`, `additionalProperties`,
// closed enums (x-ms-enum.modelAsString enums are open strings), types and `date-time`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

#[derive(Debug, Default)]
struct Specs {
    root: PathBuf,
    files: HashMap<PathBuf, Value>,
}

/// Properties, required names and the `additionalProperties` rule of an object schema, through `allOf`.
#[derive(Debug, Default)]
struct ObjectShape {
    properties: Vec<(String, PathBuf, Value)>,
    required: Vec<String>,
    additional: Option<(PathBuf, Value)>,
}

impl Specs {
    fn new() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/azure");
        Self { root, files: HashMap::new() }
    }

    fn file(&mut self, path: &Path) -> Value {
        let path = normalise(path);
        self.files
            .entry(path.clone())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .clone()
    }

    /// `other.json#/definitions/X` or `#/definitions/X`, relative to `from`.
    fn resolve(&mut self, from: &Path, reference: &str) -> (PathBuf, Value) {
        let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file =
            if file_part.is_empty() { from.to_path_buf() } else { normalise(&from.parent().unwrap().join(file_part)) };
        let document = self.file(&file);
        let target = document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} not found from {}", from.display()))
            .clone();
        (file, target)
    }

    fn spec(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The schema of an operation's response (`status` or `default`) or of its body parameter (`"body"`).
    fn operation_schema(&mut self, spec: &str, operation_id: &str, which: &str) -> (PathBuf, Value) {
        let file = self.spec(spec);
        let document = self.file(&file);
        for methods in document["paths"].as_object().unwrap().values() {
            for operation in methods.as_object().unwrap().values() {
                if operation.get("operationId").and_then(Value::as_str) != Some(operation_id) {
                    continue;
                }
                if which == "body" {
                    let body = operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["in"] == "body")
                        .expect("body parameter");
                    return (file.clone(), body["schema"].clone());
                }
                let schema = &operation["responses"][which]["schema"];
                assert!(!schema.is_null(), "{operation_id} has no {which} response schema");
                return (file.clone(), schema.clone());
            }
        }
        panic!("{operation_id} not in {spec}");
    }

    fn definition(&mut self, spec: &str, name: &str) -> (PathBuf, Value) {
        let file = self.spec(spec);
        self.resolve(&file, &format!("#/definitions/{name}"))
    }

    fn object_shape(&mut self, file: &Path, schema: &Value, shape: &mut ObjectShape) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let (target_file, target) = self.resolve(file, reference);
            return self.object_shape(&target_file, &target, shape);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                shape.properties.push((name.clone(), file.to_path_buf(), property.clone()));
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            shape.required.extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if let Some(additional) = schema.get("additionalProperties") {
            shape.additional = Some((file.to_path_buf(), additional.clone()));
        }
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.object_shape(file, part, shape);
        }
    }

    fn validate(
        &mut self,
        file: &Path,
        schema: &Value,
        value: &Value,
        at: &str,
        direction: Direction,
        errors: &mut Vec<String>,
    ) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let (target_file, target) = self.resolve(file, reference);
            return self.validate(&target_file, &target, value, at, direction, errors);
        }
        // Autorest treats null as "absent" for optional members.
        if value.is_null() {
            return;
        }
        let declared = schema.get("type").and_then(Value::as_str);
        let is_object =
            declared == Some("object") || schema.get("properties").is_some() || schema.get("allOf").is_some();
        if is_object {
            let Some(object) = value.as_object() else {
                errors.push(format!("{at}: expected an object, got {value}"));
                return;
            };
            let mut shape = ObjectShape::default();
            self.object_shape(file, schema, &mut shape);
            for name in &shape.required {
                if !object.contains_key(name) {
                    errors.push(format!("{at}: missing required '{name}'"));
                }
            }
            for (key, member) in object {
                let child = format!("{at}.{key}");
                match shape.properties.iter().find(|(name, _, _)| name == key) {
                    Some((_, property_file, property)) => {
                        if direction == Direction::Request && property.get("readOnly") == Some(&Value::Bool(true)) {
                            errors.push(format!("{child}: read-only member in a request"));
                        }
                        let (property_file, property) = (property_file.clone(), property.clone());
                        self.validate(&property_file, &property, member, &child, direction, errors);
                    }
                    None => match &shape.additional {
                        Some((_, Value::Bool(true))) => {}
                        Some((additional_file, additional @ Value::Object(_))) => {
                            let (additional_file, additional) = (additional_file.clone(), additional.clone());
                            self.validate(&additional_file, &additional, member, &child, direction, errors);
                        }
                        _ => errors.push(format!("{child}: not in the schema")),
                    },
                }
            }
            return;
        }
        match declared {
            Some("string") => {
                let Some(text) = value.as_str() else {
                    errors.push(format!("{at}: expected a string, got {value}"));
                    return;
                };
                let open = schema.pointer("/x-ms-enum/modelAsString") == Some(&Value::Bool(true));
                let closed_enum = schema.get("enum").and_then(Value::as_array).filter(|_| !open);
                if let Some(allowed) = closed_enum.filter(|allowed| !allowed.iter().any(|a| a.as_str() == Some(text))) {
                    errors.push(format!("{at}: '{text}' is not one of {allowed:?}"));
                }
                if schema.get("format").and_then(Value::as_str) == Some("date-time")
                    && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_err()
                {
                    errors.push(format!("{at}: '{text}' is not a date-time"));
                }
            }
            Some("boolean") if !value.is_boolean() => errors.push(format!("{at}: expected a boolean, got {value}")),
            Some("integer") if !(value.is_i64() || value.is_u64()) => {
                errors.push(format!("{at}: expected an integer, got {value}"))
            }
            Some("number") if !value.is_number() => errors.push(format!("{at}: expected a number, got {value}")),
            Some("array") => {
                let Some(items) = value.as_array() else {
                    errors.push(format!("{at}: expected an array, got {value}"));
                    return;
                };
                let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
                for (index, item) in items.iter().enumerate() {
                    self.validate(file, &item_schema, item, &format!("{at}[{index}]"), direction, errors);
                }
            }
            _ => {}
        }
    }

    fn check(&mut self, (file, schema): (PathBuf, Value), value: &Value, direction: Direction, what: &str) {
        let mut errors = Vec::new();
        self.validate(&file, &schema, value, "$", direction, &mut errors);
        assert!(errors.is_empty(), "{what} does not match the spec:\n{}\n{value:#}", errors.join("\n"));
    }

    fn check_operation(
        &mut self,
        spec: &str,
        operation_id: &str,
        which: &str,
        value: &Value,
        direction: Direction,
        what: &str,
    ) {
        let schema = self.operation_schema(spec, operation_id, which);
        self.check(schema, value, direction, what);
    }

    fn check_definition(&mut self, spec: &str, name: &str, value: &Value, direction: Direction, what: &str) {
        let schema = self.definition(spec, name);
        self.check(schema, value, direction, what);
    }

    fn example(&mut self, spec: &str, example: &str) -> Value {
        let file = self.spec(spec).parent().unwrap().join("examples").join(example);
        self.file(&file)
    }
}

/// Removes `.` and `..` so that one file is cached once.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

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
fn federated_update_request(specs: &mut Specs) -> Value {
    let example =
        specs.example(STORAGE_SPEC, "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId.json");
    let mut body = example["parameters"]["parameters"].clone();
    body["identity"]["userAssignedIdentities"] = json!({ UAMI: {} });
    let encryption = &mut body["properties"]["encryption"];
    encryption["identity"] = json!({ "userAssignedIdentity": UAMI, "federatedIdentityClientId": APP_ID });
    encryption["keyvaultproperties"]["keyvaulturi"] = json!(KV);
    encryption["keyvaultproperties"]["keyname"] = json!("cmk");
    body
}

#[test]
fn the_validator_catches_what_it_must() {
    let mut specs = Specs::new();
    let mut errors = Vec::new();
    let (file, schema) = specs.operation_schema(STORAGE_SPEC, "StorageAccounts_Update", "body");
    let bad = json!({
        "properties": {
            "encryption": { "keySource": "Microsoft.Keyvault", "keyvaultproperties": { "keyvaulturl": "x", "currentVersionedKeyIdentifier": "y" } },
            "accessTier": "Lukewarm"
        },
        "identity": { "type": "Everything" },
        "sku": { "name": 5 },
        "colour": "blue"
    });
    specs.validate(&file, &schema, &bad, "$", Direction::Request, &mut errors);
    let text = errors.join("\n");
    assert!(text.contains("keyvaulturl: not in the schema"), "{text}");
    assert!(text.contains("currentVersionedKeyIdentifier: read-only member in a request"), "{text}");
    assert!(text.contains("$.colour: not in the schema"), "{text}");
    assert!(text.contains("'Lukewarm' is not one of"), "closed enum: {text}");
    assert!(!text.contains("Everything"), "identity.type is a modelAsString enum: {text}");
    assert!(text.contains("$.sku.name: expected a string"), "{text}");
    // keySource is a modelAsString enum: any string passes.
    let open = json!({ "properties": { "encryption": { "keySource": "Microsoft.Whatever" } } });
    errors.clear();
    specs.validate(&file, &schema, &open, "$", Direction::Request, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn storage_account_bodies_and_examples_match_the_spec() {
    let mut specs = Specs::new();
    let env = start().await;
    let path = format!("{ACCOUNT}?api-version=2023-05-01");

    let (status, before) = env.arm(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    specs.check_operation(
        STORAGE_SPEC,
        "StorageAccounts_GetProperties",
        "200",
        &before,
        Direction::Response,
        "GET (Microsoft-managed keys)",
    );

    let request = federated_update_request(&mut specs);
    specs.check_operation(
        STORAGE_SPEC,
        "StorageAccounts_Update",
        "body",
        &request,
        Direction::Request,
        "PATCH request",
    );
    let (status, patched) = env.arm(Method::PATCH, &path, Some(&request)).await;
    assert_eq!(status, 200, "{patched}");
    specs.check_operation(
        STORAGE_SPEC,
        "StorageAccounts_Update",
        "200",
        &patched,
        Direction::Response,
        "PATCH response",
    );
    let example =
        specs.example(STORAGE_SPEC, "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId.json");
    assert_same_shape(
        &example["responses"]["200"]["body"],
        &patched,
        &[],
        "StorageAccountUpdateUserAssignedIdentityWithFederatedIdentityClientId",
    );

    // With a system-assigned identity too, GET has every member of the CMK example except those of features the
    // emulated account does not have (geo-replication, HNS, routing preference, secondary region).
    let both = json!({ "identity": { "type": "SystemAssigned,UserAssigned", "userAssignedIdentities": { UAMI: {} } } });
    specs.check_operation(STORAGE_SPEC, "StorageAccounts_Update", "body", &both, Direction::Request, "identity PATCH");
    assert_eq!(env.arm(Method::PATCH, &path, Some(&both)).await.0, 200);
    let (_, got) = env.arm(Method::GET, &path, None).await;
    specs.check_operation(STORAGE_SPEC, "StorageAccounts_GetProperties", "200", &got, Direction::Response, "GET (CMK)");
    let example = specs.example(STORAGE_SPEC, "StorageAccountGetPropertiesCMKEnabled.json");
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
    specs.check_definition(STORAGE_SPEC, "ErrorResponse", &error, Direction::Response, "storage error");
    let (status, error) = env.send(Method::GET, &format!("{ARM}{path}"), None, None).await;
    assert_eq!(status, 401);
    specs.check_definition(STORAGE_SPEC, "ErrorResponse", &error, Direction::Response, "ARM 401");
}

#[tokio::test]
async fn identity_feature_and_provider_bodies_match_the_spec() {
    let mut specs = Specs::new();
    let env = start().await;
    let example = specs.example(MSI_SPEC, "IdentityCreate.json");
    let request = example["parameters"]["parameters"].clone();
    specs.check_operation(
        MSI_SPEC,
        "UserAssignedIdentities_CreateOrUpdate",
        "body",
        &request,
        Direction::Request,
        "identity PUT request",
    );
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identityName?api-version=2023-01-31"
    );
    let (status, created) = env.arm(Method::PUT, &path, Some(&request)).await;
    assert_eq!(status, 201);
    specs.check_operation(
        MSI_SPEC,
        "UserAssignedIdentities_CreateOrUpdate",
        "201",
        &created,
        Direction::Response,
        "identity PUT",
    );
    assert_same_shape(&example["responses"]["201"]["body"], &created, &[], "IdentityCreate");
    let (_, got) = env.arm(Method::GET, &path, None).await;
    specs.check_operation(MSI_SPEC, "UserAssignedIdentities_Get", "200", &got, Direction::Response, "identity GET");
    let example = specs.example(MSI_SPEC, "IdentityGet.json");
    assert_same_shape(&example["responses"]["200"]["body"], &got, &[], "IdentityGet");
    let (status, missing) = env.arm(Method::GET, &path.replace("identityName", "nobody"), None).await;
    assert_eq!(status, 404);
    specs.check_operation(
        MSI_SPEC,
        "UserAssignedIdentities_Get",
        "default",
        &missing,
        Direction::Response,
        "identity 404",
    );

    let feature = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Features/providers/Microsoft.Storage/features/FederatedClientIdentity"
    );
    let (_, registered) = env.arm(Method::POST, &format!("{feature}/register?api-version=2021-07-01"), None).await;
    specs.check_operation(
        FEATURES_SPEC,
        "Features_Register",
        "200",
        &registered,
        Direction::Response,
        "feature register",
    );
    assert_same_shape(
        &specs.example(FEATURES_SPEC, "registerFeature.json")["responses"]["200"]["body"],
        &registered,
        &[],
        "registerFeature",
    );
    let (_, got) = env.arm(Method::GET, &format!("{feature}?api-version=2021-07-01"), None).await;
    specs.check_operation(FEATURES_SPEC, "Features_Get", "200", &got, Direction::Response, "feature get");
    assert_same_shape(
        &specs.example(FEATURES_SPEC, "getFeature.json")["responses"]["200"]["body"],
        &got,
        &[],
        "getFeature",
    );
    let (status, missing) = env.arm(Method::GET, &feature, None).await;
    assert_eq!(status, 400, "no api-version");
    specs.check_operation(FEATURES_SPEC, "Features_Get", "default", &missing, Direction::Response, "feature error");

    let provider = format!("/subscriptions/{SUB}/providers/Microsoft.Storage");
    let (_, registered) = env.arm(Method::POST, &format!("{provider}/register?api-version=2021-04-01"), None).await;
    specs.check_operation(
        RESOURCES_SPEC,
        "Providers_Register",
        "200",
        &registered,
        Direction::Response,
        "provider register",
    );
    let (_, got) = env.arm(Method::GET, &format!("{provider}?api-version=2021-04-01"), None).await;
    specs.check_operation(RESOURCES_SPEC, "Providers_Get", "200", &got, Direction::Response, "provider get");
    let not_emulated = ["$.resourceTypes[].locationMappings"];
    assert_same_shape(
        &specs.example(RESOURCES_SPEC, "GetProvider.json")["responses"]["200"]["body"],
        &got,
        &not_emulated,
        "GetProvider",
    );
}

#[tokio::test]
async fn key_vault_bodies_and_examples_match_the_spec() {
    let mut specs = Specs::new();
    let env = start().await;
    let api = "api-version=7.4";

    let example = specs.example(KEYS_SPEC, "CreateKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    specs.check_operation(KEYS_SPEC, "CreateKey", "body", &request, Direction::Request, "create request");
    let (status, created) =
        env.vault(Method::POST, &format!("{KV}/keys/CreateSoftKeyTest/create?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{created}");
    specs.check_operation(KEYS_SPEC, "CreateKey", "200", &created, Direction::Response, "create");
    assert_same_shape(&example["responses"]["200"]["body"], &created, &[], "CreateKey-example");

    let (_, got) = env.vault(Method::GET, &format!("{KV}/keys/CreateSoftKeyTest?{api}"), None).await;
    specs.check_operation(KEYS_SPEC, "GetKey", "200", &got, Direction::Response, "get");
    assert_same_shape(
        &specs.example(KEYS_SPEC, "GetKey-example.json")["responses"]["200"]["body"],
        &got,
        &[],
        "GetKey-example",
    );

    let (_, versions) = env.vault(Method::GET, &format!("{KV}/keys/cmk/versions?{api}&maxresults=1"), None).await;
    specs.check_operation(KEYS_SPEC, "GetKeyVersions", "200", &versions, Direction::Response, "versions");
    assert_same_shape(
        &specs.example(KEYS_SPEC, "GetKeyVersions-example.json")["responses"]["200"]["body"],
        &versions,
        &[],
        "GetKeyVersions-example",
    );

    let kid = created["key"]["kid"].as_str().unwrap().to_owned();
    let example = specs.example(KEYS_SPEC, "wrapKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    specs.check_operation(KEYS_SPEC, "wrapKey", "body", &request, Direction::Request, "wrap request");
    let (status, wrapped) = env.vault(Method::POST, &format!("{kid}/wrapkey?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{wrapped}");
    specs.check_operation(KEYS_SPEC, "wrapKey", "200", &wrapped, Direction::Response, "wrap");
    assert_same_shape(&example["responses"]["200"]["body"], &wrapped, &[], "wrapKey-example");
    let unwrap_request = json!({ "alg": request["alg"], "value": wrapped["value"] });
    specs.check_operation(KEYS_SPEC, "unwrapKey", "body", &unwrap_request, Direction::Request, "unwrap request");
    let (status, unwrapped) = env.vault(Method::POST, &format!("{kid}/unwrapkey?{api}"), Some(&unwrap_request)).await;
    assert_eq!((status, &unwrapped["value"]), (200, &request["value"]));
    specs.check_operation(KEYS_SPEC, "unwrapKey", "200", &unwrapped, Direction::Response, "unwrap");
    assert_same_shape(
        &specs.example(KEYS_SPEC, "unwrapKey-example.json")["responses"]["200"]["body"],
        &unwrapped,
        &[],
        "unwrapKey-example",
    );

    let example = specs.example(KEYS_SPEC, "UpdateKey-example.json");
    let request = example["parameters"]["parameters"].clone();
    specs.check_operation(KEYS_SPEC, "UpdateKey", "body", &request, Direction::Request, "update request");
    let (status, updated) = env.vault(Method::PATCH, &format!("{kid}?{api}"), Some(&request)).await;
    assert_eq!(status, 200, "{updated}");
    specs.check_operation(KEYS_SPEC, "UpdateKey", "200", &updated, Direction::Response, "update");
    let example_only = ["$.tags"];
    assert_same_shape(&example["responses"]["200"]["body"], &updated, &example_only, "UpdateKey-example");

    // Error bodies: 401 challenge, 403 RBAC and disabled key, 404.
    let error_schema = specs.operation_schema(KEYS_SPEC, "GetKey", "default");
    let (status, unauthorized) = env.send(Method::GET, &format!("{KV}/keys/cmk?{api}"), None, None).await;
    assert_eq!(status, 401);
    specs.check(error_schema.clone(), &unauthorized, Direction::Response, "401");
    let stranger = env.token(CUSTOMER, "0f000000-0000-0000-0000-00000000dead", "https://vault.azure.net");
    let (status, forbidden) = env.send(Method::GET, &format!("{KV}/keys/cmk?{api}"), Some(stranger), None).await;
    assert_eq!(status, 403);
    specs.check(error_schema.clone(), &forbidden, Direction::Response, "403 RBAC");
    let (status, disabled) = env
        .vault(
            Method::POST,
            &format!("{KV}/keys/disabled-key//wrapkey?{api}"),
            Some(&json!({ "alg": "RSA-OAEP", "value": "AAAA" })),
        )
        .await;
    assert_eq!(status, 403);
    specs.check(error_schema.clone(), &disabled, Direction::Response, "403 disabled");
    let (status, missing) = env.vault(Method::GET, &format!("{KV}/keys/nothing?{api}"), None).await;
    assert_eq!(status, 404);
    specs.check(error_schema, &missing, Direction::Response, "404");
}
