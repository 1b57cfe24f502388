//! The Azure REST specs the emulator answers by: verbatim OpenAPI (Swagger 2.0) files from the repository's
//! `specs/azure`, embedded at build time, and one validator over them. ARM and Key Vault check every request body
//! against its operation's schema at run time; the tests check every response body with the same validator. Each
//! emulated service answers exactly the api-version of its spec file (`info.version`).

mod files;
mod validate;

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

pub use validate::{Direction, Violation, ViolationKind};

/// One root spec file (relative to `specs/azure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec(&'static str);

/// `Microsoft.Storage` 2023-05-01: storage accounts.
pub const STORAGE: Spec = Spec("storage/resource-manager/Microsoft.Storage/stable/2023-05-01/storage.json");
/// `Microsoft.ManagedIdentity` 2023-01-31: user-assigned identities.
pub const MANAGED_IDENTITY: Spec =
    Spec("msi/resource-manager/Microsoft.ManagedIdentity/stable/2023-01-31/ManagedIdentity.json");
/// `Microsoft.Features` 2021-07-01: feature registration.
pub const FEATURES: Spec = Spec("resources/resource-manager/Microsoft.Features/stable/2021-07-01/features.json");
/// `Microsoft.Resources` 2021-04-01: provider registration.
pub const RESOURCES: Spec = Spec("resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json");
/// Key Vault data plane 7.4: keys (Managed HSM answers the same operations).
pub const KEY_VAULT_KEYS: Spec = Spec("keyvault/data-plane/Microsoft.KeyVault/stable/7.4/keys.json");

impl Spec {
    /// The file's path under `specs/azure`.
    pub fn path(self) -> &'static str {
        self.0
    }

    /// `info.version`: the one api-version the emulator answers for this service.
    pub fn api_version(self) -> &'static str {
        document(self.0)["info"]["version"].as_str().expect("info.version")
    }

    fn operation(self, operation_id: &str) -> &'static Value {
        let paths = document(self.0)["paths"].as_object().expect("paths");
        paths
            .values()
            .filter_map(Value::as_object)
            .flat_map(|methods| methods.values())
            .find(|operation| operation.get("operationId").and_then(Value::as_str) == Some(operation_id))
            .unwrap_or_else(|| panic!("{operation_id} is not an operation of {}", self.0))
    }

    /// The schema of the operation's body parameter.
    pub fn request_body(self, operation_id: &str) -> Schema {
        let parameters = self.operation(operation_id)["parameters"].as_array().expect("parameters");
        let body = parameters
            .iter()
            .map(|p| self.parameter(p))
            .find(|p| p["in"] == "body")
            .unwrap_or_else(|| panic!("{operation_id} has no body parameter"));
        Schema { file: self.0, node: &body["schema"], name: String::new() }
    }

    /// Parameters may be `$ref`s to the file's `parameters` section.
    fn parameter(self, parameter: &'static Value) -> &'static Value {
        match parameter.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => document(self.0).pointer(pointer).unwrap_or(parameter),
            None => parameter,
        }
    }

    /// The schema of one response (`"200"`, `"201"`, `"default"`).
    pub fn response(self, operation_id: &str, status: &str) -> Schema {
        let node = &self.operation(operation_id)["responses"][status]["schema"];
        assert!(!node.is_null(), "{operation_id} has no {status} response schema");
        Schema { file: self.0, node, name: String::new() }
    }

    /// `#/definitions/{name}`.
    pub fn definition(self, name: &str) -> Schema {
        let node = document(self.0)["definitions"].get(name).unwrap_or_else(|| panic!("{name} is not in {}", self.0));
        Schema { file: self.0, node, name: name.to_owned() }
    }
}

/// A schema inside one of the embedded files.
#[derive(Debug, Clone)]
pub struct Schema {
    file: &'static str,
    node: &'static Value,
    name: String,
}

impl Schema {
    /// Reads a request body as the service does: `Ok` with member names and closed-enum values in the spec's
    /// spelling, or every way it differs from the schema.
    pub fn check_request(&self, body: &Value) -> Result<Value, Vec<Violation>> {
        let mut walker = validate::Walker::new(Direction::Request);
        let normalised = walker.check(self.file, self.node, &self.name, body, "");
        if walker.violations.is_empty() { Ok(normalised) } else { Err(walker.violations) }
    }

    /// Every way a response body differs from the schema (exact names and values).
    pub fn check_response(&self, body: &Value) -> Vec<Violation> {
        let mut walker = validate::Walker::new(Direction::Response);
        walker.check(self.file, self.node, &self.name, body, "");
        walker.violations
    }
}

/// An embedded file, parsed once.
fn document(path: &str) -> &'static Value {
    static DOCUMENTS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        files::FILES
            .iter()
            .map(|(path, text)| {
                (*path, serde_json::from_str(text).unwrap_or_else(|e| panic!("specs/azure/{path}: {e}")))
            })
            .collect()
    });
    documents.get(path).unwrap_or_else(|| panic!("specs/azure/{path} is not embedded (openapi/files.rs)"))
}

/// `reference` (a relative file path) from the file `from`, as an embedded path.
fn relative(from: &str, reference: &str) -> &'static str {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for segment in reference.split('/') {
        match segment {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    files::FILES
        .iter()
        .map(|(path, _)| *path)
        .find(|path| *path == joined)
        .unwrap_or_else(|| panic!("{reference} from {from} ({joined}) is not embedded (openapi/files.rs)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_service_answers_its_spec_files_version() {
        assert_eq!(STORAGE.api_version(), "2023-05-01");
        assert_eq!(MANAGED_IDENTITY.api_version(), "2023-01-31");
        assert_eq!(FEATURES.api_version(), "2021-07-01");
        assert_eq!(RESOURCES.api_version(), "2021-04-01");
        assert_eq!(KEY_VAULT_KEYS.api_version(), "7.4");
    }

    /// Every `$ref` in every embedded file (examples aside) names an embedded file and a node in it.
    #[test]
    fn every_ref_resolves() {
        fn visit(file: &'static str, node: &Value, count: &mut usize) {
            match node {
                Value::Object(object) => {
                    for (key, value) in object {
                        match (key.as_str(), value) {
                            ("x-ms-examples", _) => {}
                            ("$ref", Value::String(reference)) => {
                                let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
                                let target = if file_part.is_empty() { file } else { relative(file, file_part) };
                                assert!(document(target).pointer(pointer).is_some(), "{reference} from {file}");
                                *count += 1;
                            }
                            _ => visit(file, value, count),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|item| visit(file, item, count)),
                _ => {}
            }
        }
        let mut count = 0;
        for (path, _) in files::FILES {
            visit(path, document(path), &mut count);
        }
        assert!(count > 100, "{count} references");
    }

    #[test]
    fn requests_are_read_as_json_net_reads_them() {
        let schema = STORAGE.request_body("StorageAccounts_Update");
        let body =
            json!({ "Properties": { "accessTier": "cool", "encryption": { "KeySource": "Microsoft.Keyvault" } } });
        let read = schema.check_request(&body).unwrap();
        assert_eq!(
            read,
            json!({ "properties": { "accessTier": "Cool", "encryption": { "keySource": "Microsoft.Keyvault" } } })
        );
        assert!(!schema.check_response(&body).is_empty(), "responses must be exact");
    }

    #[test]
    fn the_validator_catches_what_it_must() {
        let bad = json!({
            "properties": {
                "encryption": { "keySource": "Microsoft.Keyvault", "keyvaultproperties": { "keyvaulturl": "x", "currentVersionedKeyIdentifier": "y" } },
                "accessTier": "Lukewarm"
            },
            "identity": { "type": "Everything" },
            "sku": { "name": 5 },
            "colour": "blue"
        });
        let errors = STORAGE.request_body("StorageAccounts_Update").check_request(&bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let text = text.join("\n");
        assert!(
            text.contains("keyvaultproperties.keyvaulturl: 'keyvaulturl' is not in the schema of KeyVaultProperties"),
            "{text}"
        );
        assert!(text.contains("currentVersionedKeyIdentifier: 'currentVersionedKeyIdentifier' is read-only"), "{text}");
        assert!(text.contains("$.colour: 'colour' is not in the schema"), "{text}");
        assert!(text.contains("'Lukewarm' is not one of") && text.contains("(AccessTier)"), "closed enum: {text}");
        assert!(!text.contains("Everything"), "identity.type is a modelAsString enum: {text}");
        assert!(text.contains("$.sku.name: expected a string"), "{text}");
        let missing = STORAGE.request_body("StorageAccounts_Update").check_request(&json!({ "identity": {} }));
        assert!(missing.unwrap_err()[0].to_string().contains("missing required 'type'"));
        let base64 =
            KEY_VAULT_KEYS.request_body("wrapKey").check_request(&json!({ "alg": "RSA-OAEP", "value": "a+b/" }));
        assert!(base64.unwrap_err()[0].to_string().contains("is not a base64url"));
    }
}
