//! Validation of `host.json` and `function.json` against the SchemaStore schemas (verbatim copies in `schemas/`).

use std::sync::OnceLock;

use serde_json::Value;

const HOST_SCHEMA: &str = include_str!("../../schemas/host.schema.json");
const FUNCTION_SCHEMA: &str = include_str!("../../schemas/function.schema.json");

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
    VALIDATOR.get_or_init(|| compile(FUNCTION_SCHEMA))
}

pub fn validate_host(json: &Value) -> Result<(), String> {
    report(host_validator(), json)
}

pub fn validate_function(json: &Value) -> Result<(), String> {
    report(function_validator(), json)
}

fn report(validator: &jsonschema::Validator, json: &Value) -> Result<(), String> {
    let errors: Vec<String> =
        validator.iter_errors(json).take(5).map(|e| format!("at {:?}: {e}", e.instance_path().as_str())).collect();
    if errors.is_empty() { Ok(()) } else { Err(format!("does not match its JSON schema: {}", errors.join("; "))) }
}
