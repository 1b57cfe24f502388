//! The validation policy, built from the Function App's own settings so the CLI validates exactly as the handler does.

use std::collections::BTreeMap;
use std::path::Path;

use cmk_handler::config::{PORT, Settings};
use cmk_handler::contract::ValidationPolicy;
use serde_json::Value;

/// Reads the settings file (if any) and completes it from the environment.
pub fn load(settings_file: Option<&Path>) -> Result<ValidationPolicy, String> {
    let values = match settings_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            parse_settings(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => BTreeMap::new(),
    };
    policy_from(|name| values.get(name).cloned().or_else(|| std::env::var(name).ok()))
}

/// The policy from a settings lookup. The port is the Functions host's business, irrelevant to validation.
pub fn policy_from(lookup: impl Fn(&str) -> Option<String>) -> Result<ValidationPolicy, String> {
    let settings = Settings::from_lookup(|name| lookup(name).or_else(|| (name == PORT).then(|| "0".to_owned())))
        .map_err(|e| format!("the app settings are incomplete for validation ({e}); pass --settings FILE"))?;
    Ok(settings.validation_policy())
}

/// Accepts `local.settings.json` (`{"Values": {...}}`), `az functionapp config appsettings list` output
/// (`[{"name", "value"}]`) or a flat object.
pub fn parse_settings(text: &str) -> Result<BTreeMap<String, String>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let pairs: Vec<(String, Value)> = match &json {
        Value::Object(map) => match map.get("Values") {
            Some(Value::Object(values)) => values.clone().into_iter().collect(),
            _ => map.clone().into_iter().collect(),
        },
        Value::Array(items) => items
            .iter()
            .filter_map(|item| Some((item.get("name")?.as_str()?.to_owned(), item.get("value")?.clone())))
            .collect(),
        _ => return Err("expected an object or an array of {name, value}".to_owned()),
    };
    Ok(pairs
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(s) => Some((name, s)),
            Value::Null => None,
            other => Some((name, other.to_string())),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_files_of_every_shape_parse() {
        let local = parse_settings(r#"{"IsEncrypted": false, "Values": {"A": "1", "B": 2, "C": null}}"#).unwrap();
        assert_eq!(local, BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]));
        let az = parse_settings(r#"[{"name": "A", "value": "1", "slotSetting": false}]"#).unwrap();
        assert_eq!(az, BTreeMap::from([("A".into(), "1".into())]));
        assert!(parse_settings("\"text\"").is_err());
    }

    #[test]
    fn missing_settings_are_named() {
        let error = policy_from(|_| None).unwrap_err();
        assert!(error.contains("--settings"), "{error}");
    }
}
