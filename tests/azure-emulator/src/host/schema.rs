//! Validation of `host.json` and `function.json` against the SchemaStore schemas (verbatim copies in the repository's
//! `specs/schemastore/`). Each binding is checked against the schema branch of its own `type`, chosen
//! case-insensitively as the host resolves binding types; a type the schema does not name is refused, as the host
//! refuses a binding no extension registers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

const HOST_SCHEMA: &str = include_str!("../../../../specs/schemastore/host.schema.json");
const FUNCTION_SCHEMA: &str = include_str!("../../../../specs/schemastore/function.schema.json");

fn compile(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).expect("embedded schema compiles")
}

fn host_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(&serde_json::from_str(HOST_SCHEMA).expect("embedded schema is JSON")))
}

/// The function schema, parsed once.
fn function_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(FUNCTION_SCHEMA).expect("embedded schema is JSON"))
}

/// The file-level rules (`disabled`, `retry`, …) with each binding only required to be an object: bindings are
/// checked one by one against their own type's branch.
fn file_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let mut schema = function_schema().clone();
        schema["properties"]["bindings"]["items"] = json!({ "type": "object" });
        compile(&schema)
    })
}

/// One binding type the schema knows: its spelling there and the validator of its branch.
struct BindingType {
    canonical: String,
    validator: jsonschema::Validator,
}

/// Every binding type the schema names, by lower-cased name.
fn binding_types() -> &'static BTreeMap<String, BindingType> {
    static TYPES: OnceLock<BTreeMap<String, BindingType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let schema = function_schema();
        let definitions = schema["definitions"].as_object().expect("definitions");
        let mut types = BTreeMap::new();
        for (name, definition) in definitions {
            let mut names = type_names(&definition["properties"]["type"]);
            for branch in definition.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
                names.extend(type_names(&branch["properties"]["type"]));
            }
            for canonical in names {
                let branch = branch_schema(schema, name, definition, &canonical);
                let validator = compile(&branch);
                types.insert(canonical.to_ascii_lowercase(), BindingType { canonical, validator });
            }
        }
        types
    })
}

/// The type names a `type` property schema allows: `enum` members or a `const`.
fn type_names(property: &Value) -> Vec<String> {
    let listed = property.get("enum").and_then(Value::as_array).cloned().unwrap_or_default();
    listed.iter().chain(property.get("const")).filter_map(Value::as_str).map(str::to_owned).collect()
}

/// `bindingBase` + the definition's own members + those of its `oneOf` branches that fit `canonical` (branches that
/// name another type are dropped; the rest still choose by `direction`). The schema is draft-04, which has no
/// `const`; the branches that use it mean `enum: [value]`, so they say so here.
fn branch_schema(schema: &Value, name: &str, definition: &Value, canonical: &str) -> Value {
    let mut own = definition.clone();
    let branches = own.as_object_mut().and_then(|o| o.remove("oneOf"));
    let mut parts = vec![json!({ "$ref": "#/definitions/bindingBase" }), own];
    let fitting: Vec<Value> = branches
        .and_then(|b| b.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|branch| {
            let names = type_names(&branch["properties"]["type"]);
            names.is_empty() || names.iter().any(|n| n == canonical)
        })
        .map(const_as_enum)
        .collect();
    match fitting.len() {
        0 => {}
        1 => parts.extend(fitting),
        _ => parts.push(json!({ "oneOf": fitting })),
    }
    json!({
        "$schema": schema["$schema"],
        "description": format!("function.json binding of type {canonical} (definition {name})"),
        "definitions": schema["definitions"],
        "allOf": parts,
    })
}

fn const_as_enum(mut node: Value) -> Value {
    match &mut node {
        Value::Object(object) => {
            if let Some(value) = object.remove("const") {
                object.insert("enum".to_owned(), json!([value]));
            }
            for member in object.values_mut() {
                *member = const_as_enum(member.take());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| *item = const_as_enum(item.take())),
        _ => {}
    }
    node
}

pub fn validate_host(json: &Value) -> Result<(), String> {
    report(host_validator(), json, "")
}

/// The whole file, then every binding against its own type's branch. `with_bundle` is whether `host.json` configures
/// an extension bundle, which changes the host's wording for an unknown type.
pub fn validate_function(json: &Value, with_bundle: bool) -> Result<(), String> {
    report(file_validator(), json, "")?;
    let bindings = json.get("bindings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (index, binding) in bindings.iter().enumerate() {
        let object = binding.as_object().expect("the file schema requires objects");
        let label = object.get("name").and_then(Value::as_str).map_or_else(|| format!("#{index}"), str::to_owned);
        let Some(kind) = object.get("type").and_then(Value::as_str) else {
            return Err(format!("binding {label:?}: \"type\" is required and must be a string"));
        };
        let Some(known) = binding_types().get(&kind.to_ascii_lowercase()) else {
            return Err(unknown_type(kind, with_bundle));
        };
        let normalised = normalise(object, &known.canonical);
        report(&known.validator, &normalised, &format!("binding {label:?} ({}) ", known.canonical))?;
    }
    Ok(())
}

/// The host resolves `type` and parses `direction` case-insensitively; the schema spells both one way.
fn normalise(binding: &Map<String, Value>, canonical: &str) -> Value {
    let mut copy = binding.clone();
    copy.insert("type".to_owned(), json!(canonical));
    if let Some(Value::String(direction)) = copy.get_mut("direction") {
        *direction = direction.to_ascii_lowercase();
    }
    Value::Object(copy)
}

/// The host's message for a binding type no extension registers (`FunctionDescriptorProvider`), in its two forms.
pub fn unknown_type(kind: &str, with_bundle: bool) -> String {
    if with_bundle {
        format!(
            "The binding type(s) '{kind}' were not found in the configured extension bundle. Please ensure the type is correct and the correct version of extension bundle is configured."
        )
    } else {
        format!(
            "The binding type(s) '{kind}' are not registered. Please ensure the type is correct and the binding extension is installed."
        )
    }
}

fn report(validator: &jsonschema::Validator, json: &Value, what: &str) -> Result<(), String> {
    let errors: Vec<String> =
        validator.iter_errors(json).take(5).map(|e| format!("at {:?}: {e}", e.instance_path().to_string())).collect();
    if errors.is_empty() { Ok(()) } else { Err(format!("{what}does not match its JSON schema: {}", errors.join("; "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(binding: Value) -> Result<(), String> {
        validate_function(&json!({ "bindings": [binding] }), true)
    }

    #[test]
    fn each_binding_is_checked_against_its_own_type() {
        let trigger = json!({ "name": "m", "type": "serviceBusTrigger", "direction": "in", "queueName": "q" });
        assert_eq!(check(trigger.clone()), Ok(()));
        // Binding types and directions are case-insensitive in the host.
        assert_eq!(
            check(json!({ "name": "m", "type": "SERVICEBUSTRIGGER", "direction": "In", "queueName": "q" })),
            Ok(())
        );
        assert_eq!(check(json!({ "name": "o", "type": "serviceBus", "direction": "out", "topicName": "t" })), Ok(()));
        assert_eq!(
            check(json!({ "name": "req", "type": "httpTrigger", "direction": "in", "authLevel": "admin" })),
            Ok(())
        );
        assert_eq!(check(json!({ "name": "res", "type": "http", "direction": "out" })), Ok(()));
        // The sql branches, which made the original oneOf ambiguous, still validate sql bindings.
        assert_eq!(check(json!({ "name": "s", "type": "sql", "direction": "in", "commandText": "select 1" })), Ok(()));
        assert_eq!(check(json!({ "name": "s", "type": "sql", "direction": "out", "commandText": "t" })), Ok(()));
    }

    #[test]
    fn mistakes_the_anyof_reading_let_through_are_refused() {
        let misspelt = check(json!({ "name": "m", "type": "serviceBusTriger", "direction": "in", "queueName": "q" }));
        assert!(misspelt.unwrap_err().contains("'serviceBusTriger' were not found in the configured extension bundle"));
        let level = check(json!({ "name": "req", "type": "httpTrigger", "direction": "in", "authLevel": "superuser" }));
        assert!(level.unwrap_err().contains("superuser"));
        let direction =
            check(json!({ "name": "m", "type": "serviceBusTrigger", "direction": "out", "queueName": "q" }));
        assert!(direction.unwrap_err().contains("serviceBusTrigger"));
        let access =
            check(json!({ "name": "m", "type": "serviceBusTrigger", "direction": "in", "accessRights": "all" }));
        assert!(access.unwrap_err().contains("all"));
        let data_type =
            check(json!({ "name": "m", "type": "serviceBusTrigger", "direction": "in", "dataType": "bytes" }));
        assert!(data_type.unwrap_err().contains("bytes"));
    }

    #[test]
    fn without_a_bundle_the_host_says_not_registered() {
        let error =
            validate_function(&json!({ "bindings": [{ "name": "x", "type": "nope", "direction": "in" }] }), false);
        assert!(error.unwrap_err().contains("'nope' are not registered"));
    }

    #[test]
    fn file_level_rules_still_apply() {
        assert!(validate_function(&json!({ "bindings": [], "disabled": "yes" }), true).is_err());
        assert!(validate_function(&json!({ "bindings": [5] }), true).is_err());
    }
}
