//! What the host makes of a successful answer before it binds outputs (reference §2.2, §2.3; host
//! `HttpScriptInvocationResultExtensions.ToScriptInvocationResult`, `WorkerFunctionInvoker.BindOutputsAsync`):
//!
//! - every declared output binding takes `Outputs[name]` (ordinal match); an `http` output is first deserialised
//!   into `{statusCode, status, headers, body}`, and a value that does not deserialise fails the invocation;
//! - with a `$return` binding, `ReturnValue` fills it; without one, a `ReturnValue` object's members are outputs
//!   too and win over `Outputs`;
//! - a missing `Outputs` or `ReturnValue` is not an error: the host only logs it, and nothing is bound.

use super::config::FunctionConfig;
use super::json::Json;

/// The value each declared output binding gets; bindings without one are absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outputs(Vec<(String, Json)>);

impl Outputs {
    /// The value bound to `binding`, if any (`null` counts as none, as `BindOutputsAsync` skips it).
    pub fn get(&self, binding: &str) -> Option<&Json> {
        self.0.iter().find(|(name, value)| name == binding && *value != Json::Null).map(|(_, value)| value)
    }
}

pub fn resolve(answer: &Json, function: &FunctionConfig) -> Result<Outputs, String> {
    let outputs = answer.get_ignore_case("Outputs").filter(|o| **o != Json::Null);
    let return_value = answer.get_ignore_case("ReturnValue").filter(|r| **r != Json::Null);
    if outputs.is_none() {
        tracing::debug!(function = function.name, "Outputs not set on http response");
    }
    if return_value.is_none() {
        tracing::debug!(function = function.name, "ReturnValue not set on http response");
    }
    let has_return_binding = function.outputs().any(|b| b.name == "$return");
    let mut resolved = Vec::new();
    for binding in function.outputs() {
        let value = if binding.name == "$return" {
            return_value.cloned()
        } else {
            let from_outputs = match outputs {
                Some(outputs) if binding.kind == "http" => Some(http_output(outputs, &binding.name)?),
                Some(outputs) => outputs.get(&binding.name).cloned(),
                None => None,
            };
            // `HandleOutputDictionary`: a ReturnValue object's members replace outputs of the same name.
            let from_return = return_value.filter(|_| !has_return_binding).and_then(|r| r.get(&binding.name));
            from_return.cloned().or(from_outputs)
        };
        if let Some(value) = value {
            resolved.push((binding.name.clone(), value));
        }
    }
    Ok(Outputs(resolved))
}

/// `GetHttpOutputBindingResponse`: `JsonConvert.DeserializeObject<HttpOutputBindingResponse>(value.ToString())`.
/// A JSON object (or a string holding one) deserialises; `null`, numbers, arrays and other strings do not, and the
/// invocation fails. A missing member yields an empty response object.
fn http_output(outputs: &Json, binding: &str) -> Result<Json, String> {
    let failure = |why: &str| {
        format!(
            "Failed while trying to Deserialize to httpOutputBindingResponse. Output is not in expected format: Outputs.{binding} {why}"
        )
    };
    let response = match outputs.get(binding) {
        None => return Ok(Json::Object(Vec::new())),
        Some(Json::String(text)) => match Json::parse(text) {
            Ok(parsed @ Json::Object(_)) => parsed,
            _ => return Err(failure("is a string that is not a JSON object")),
        },
        Some(object @ Json::Object(_)) => object.clone(),
        Some(other) => return Err(failure(&format!("is {}", other.kind()))),
    };
    for member in ["statusCode", "status"] {
        if let Some(Json::Array(_) | Json::Object(_)) = response.get_ignore_case(member) {
            return Err(failure(&format!("has a {member} that is not a string or number")));
        }
    }
    if let Some(headers) = response.get_ignore_case("headers").filter(|h| !matches!(h, Json::Null | Json::Object(_))) {
        return Err(failure(&format!("has headers that are {}, not an object", headers.kind())));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::super::config::Binding;
    use super::*;

    fn function(outputs: &[(&str, &str)]) -> FunctionConfig {
        let binding = |name: &str, kind: &str, direction: &str| Binding {
            name: name.to_owned(),
            kind: kind.to_owned(),
            direction: direction.to_owned(),
            raw: serde_json::Map::new(),
        };
        let mut bindings = vec![binding("trigger", "servicebustrigger", "in")];
        bindings.extend(outputs.iter().map(|(name, kind)| binding(name, kind, "out")));
        FunctionConfig { name: "Fn".into(), bindings, disabled: false }
    }

    fn resolve_text(answer: &str, function: &FunctionConfig) -> Result<Outputs, String> {
        resolve(&Json::parse(answer).unwrap(), function)
    }

    #[test]
    fn outputs_bind_by_exact_name() {
        let function = function(&[("events", "servicebus")]);
        let outputs = resolve_text(r#"{"Outputs":{"events":"a","Events":"b","other":"c"}}"#, &function).unwrap();
        assert_eq!(outputs.get("events"), Some(&Json::str("a")));
        assert_eq!(outputs.get("other"), None, "undeclared outputs are ignored");
        let outputs = resolve_text(r#"{"Outputs":{"events":null}}"#, &function).unwrap();
        assert_eq!(outputs.get("events"), None);
    }

    #[test]
    fn return_value_fills_return_or_else_acts_as_outputs() {
        let with_return = function(&[("$return", "servicebus"), ("events", "servicebus")]);
        let outputs = resolve_text(r#"{"ReturnValue":{"events":"x"},"Outputs":{"events":"y"}}"#, &with_return).unwrap();
        assert_eq!(outputs.get("$return"), Some(&Json::parse(r#"{"events":"x"}"#).unwrap()));
        assert_eq!(outputs.get("events"), Some(&Json::str("y")));
        // A missing ReturnValue only goes unbound: the host logs "ReturnValue not set" and carries on.
        assert_eq!(resolve_text(r#"{"Outputs":{}}"#, &with_return).unwrap().get("$return"), None);

        let without_return = function(&[("events", "servicebus")]);
        let outputs =
            resolve_text(r#"{"ReturnValue":{"events":"x"},"Outputs":{"events":"y"}}"#, &without_return).unwrap();
        assert_eq!(outputs.get("events"), Some(&Json::str("x")));
        let outputs = resolve_text(r#"{"ReturnValue":{"events":null},"Outputs":{"events":"y"}}"#, &without_return);
        assert_eq!(outputs.unwrap().get("events"), None, "the ReturnValue member wins even when it is null");
        let outputs = resolve_text(r#"{"ReturnValue":"events","Outputs":{"events":"y"}}"#, &without_return).unwrap();
        assert_eq!(outputs.get("events"), Some(&Json::str("y")), "only an object's members become outputs");
    }

    #[test]
    fn http_outputs_must_deserialise_as_a_response() {
        let function = function(&[("res", "http")]);
        for ok in [
            r#"{"Outputs":{"res":{"statusCode":"201","body":"x","headers":{"a":"b"}}}}"#,
            r#"{"Outputs":{"res":{"statusCode":201}}}"#,
            r#"{"Outputs":{"res":"{\"statusCode\":204}"}}"#,
            r#"{"Outputs":{}}"#,
            r#"{}"#,
        ] {
            assert!(resolve_text(ok, &function).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"Outputs":{"res":null}}"#,
            r#"{"Outputs":{"res":"hello"}}"#,
            r#"{"Outputs":{"res":42}}"#,
            r#"{"Outputs":{"res":[1]}}"#,
            r#"{"Outputs":{"res":{"headers":["a"]}}}"#,
            r#"{"Outputs":{"res":{"statusCode":{"code":1}}}}"#,
        ] {
            let error = resolve_text(bad, &function).unwrap_err();
            assert!(error.contains("httpOutputBindingResponse"), "{bad}: {error}");
        }
    }
}
