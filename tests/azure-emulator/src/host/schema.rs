//! Validation of `host.json` and `function.json` against the SchemaStore schemas (verbatim copies in the repository's `specs/schemastore/`).

use std::sync::OnceLock;

use serde_json::Value;

const HOST_SCHEMA: &str = include_str!("../../../../specs/schemastore/host.schema.json");
const FUNCTION_SCHEMA: &str = include_str!("../../../../specs/schemastore/function.schema.json");

fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
    jsonschema::validator_for(&schema).expect("embedded schema compiles")
}

fn host_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(HOST_SCHEMA))
}

fn function_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let mut schema: Value = serde_json::from_str(FUNCTION_SCHEMA).expect("embedded schema is JSON");
        relax_binding_alternatives(&mut schema);
        jsonschema::validator_for(&schema).expect("embedded schema compiles")
    })
}

/// The SchemaStore schema lists binding kinds under `oneOf`, but several branches (`sqlBinding`, `mySqlBinding`)
/// constrain nothing a standard binding sets, so a strict validator rejects every `serviceBusTrigger` or `http`
/// binding as matching more than one branch. Editors are lenient here; so are we: the alternatives become `anyOf`.
fn relax_binding_alternatives(schema: &mut Value) {
    let Some(items) = schema.pointer_mut("/properties/bindings/items") else { return };
    rename_one_of(items);
    if let Some(Value::Array(branches)) = items.get_mut("anyOf") {
        branches.iter_mut().for_each(rename_one_of);
    }
}

fn rename_one_of(node: &mut Value) {
    if let Some(object) = node.as_object_mut()
        && let Some(alternatives) = object.remove("oneOf")
    {
        object.insert("anyOf".to_owned(), alternatives);
    }
}

pub fn validate_host(json: &Value) -> Result<(), String> {
    report(host_validator(), json)
}

pub fn validate_function(json: &Value) -> Result<(), String> {
    report(function_validator(), json)
}

fn report(validator: &jsonschema::Validator, json: &Value) -> Result<(), String> {
    let errors: Vec<String> =
        validator.iter_errors(json).take(5).map(|e| format!("at {:?}: {e}", e.instance_path().to_string())).collect();
    if errors.is_empty() { Ok(()) } else { Err(format!("does not match its JSON schema: {}", errors.join("; "))) }
}
