//! The host's own rules for binding properties the SchemaStore schema does not describe. The host copies them onto
//! the binding's attribute (`AttributeCloner`, names matched case-insensitively) and converts each value to the
//! property's .NET type; a value that does not convert is an indexing error and the function does not load
//! (reference §5.1).

use serde_json::{Map, Value};

/// What a property's .NET type accepts.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `bool`.
    Boolean,
    /// An enum: one of these names (compared case-insensitively, as .NET enum parsing does).
    OneOf(&'static [&'static str]),
}

/// `(binding type, property, rule)`: `ServiceBusTriggerAttribute` and the host's binding metadata.
const RULES: &[(&str, &str, Rule)] = &[
    ("servicebustrigger", "isSessionsEnabled", Rule::Boolean),
    ("servicebustrigger", "autoCompleteMessages", Rule::Boolean),
    ("servicebustrigger", "cardinality", Rule::OneOf(&["one", "many"])),
];

/// Checks the properties of one binding (`kind` lower-cased) that the host types but the schema leaves open.
pub fn check(kind: &str, binding: &Map<String, Value>) -> Result<(), String> {
    for (_, property, rule) in RULES.iter().filter(|(k, _, _)| *k == kind) {
        let Some((name, value)) = binding.iter().find(|(name, _)| name.eq_ignore_ascii_case(property)) else {
            continue;
        };
        let fits = match rule {
            Rule::Boolean => value.is_boolean(),
            Rule::OneOf(names) => value.as_str().is_some_and(|v| names.iter().any(|n| n.eq_ignore_ascii_case(v))),
        };
        if !fits {
            let expected = match rule {
                Rule::Boolean => "true or false".to_owned(),
                Rule::OneOf(names) => names.join(" or "),
            };
            return Err(format!("{name} is {value}, which the host cannot convert: it must be {expected}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn service_bus_trigger_properties_have_their_types() {
        let ok = binding(json!({ "autoCompleteMessages": true, "IsSessionsEnabled": false, "cardinality": "One" }));
        assert_eq!(check("servicebustrigger", &ok), Ok(()));
        let yes = check("servicebustrigger", &binding(json!({ "autoCompleteMessages": "yes" }))).unwrap_err();
        assert!(yes.contains("autoCompleteMessages") && yes.contains("true or false"), "{yes}");
        assert!(check("servicebustrigger", &binding(json!({ "isSessionsEnabled": 1 }))).is_err());
        assert!(check("servicebustrigger", &binding(json!({ "cardinality": "several" }))).is_err());
        // Other types are not concerned.
        assert_eq!(check("servicebus", &binding(json!({ "autoCompleteMessages": "yes" }))), Ok(()));
    }
}
