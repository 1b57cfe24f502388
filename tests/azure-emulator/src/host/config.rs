//! The function app's configuration: `host.json` and every `{app_root}/{Function}/function.json`, validated the way
//! the host does (schemas, name rules, required custom-handler settings) and resolved against the app settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::settings::Settings;
use super::{binding_rules, schema};

/// `Utility.FunctionNameValidationRegex`, applied case-insensitively; `host` is reserved.
fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    first_ok
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.eq_ignore_ascii_case("host")
}

/// `Utility.BindingNameValidationRegex`: `^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$`.
fn valid_binding_name(name: &str) -> bool {
    if name == "$return" {
        return true;
    }
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric())
}

/// `customHandler.description`.
#[derive(Debug, Clone)]
pub struct HandlerDescription {
    pub default_executable_path: String,
    pub working_directory: Option<String>,
    pub arguments: Vec<String>,
}

/// Service Bus extension settings (`extensions.serviceBus`, 5.x keys).
#[derive(Debug, Clone)]
pub struct ServiceBusSettings {
    pub max_concurrent_calls: usize,
    pub auto_complete_messages: bool,
    pub max_auto_lock_renewal: Duration,
}

/// What the emulated host uses from `host.json`.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub handler: HandlerDescription,
    pub port: Option<u16>,
    /// `None` means unbounded (`-1`).
    pub function_timeout: Option<Duration>,
    pub service_bus: ServiceBusSettings,
    pub route_prefix: String,
}

/// One binding of a `function.json`, with `%setting%` expressions already resolved.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    /// Lower-cased: binding types are case-insensitive.
    pub kind: String,
    pub direction: String,
    pub raw: serde_json::Map<String, Value>,
}

impl Binding {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.raw.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| v.as_str())
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.raw.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| v.as_bool())
    }

    pub fn is_binary(&self) -> bool {
        self.str("dataType").is_some_and(|t| t.eq_ignore_ascii_case("binary"))
    }
}

/// One function: the folder name and its bindings, trigger first.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub name: String,
    pub bindings: Vec<Binding>,
    pub disabled: bool,
}

impl FunctionConfig {
    pub fn trigger(&self) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.direction.eq_ignore_ascii_case("in") && b.kind.ends_with("trigger"))
    }

    pub fn outputs(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(|b| b.direction.eq_ignore_ascii_case("out"))
    }
}

/// The whole app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub host: HostConfig,
    pub functions: Vec<FunctionConfig>,
    /// Things the real host would log as warnings (e.g. `retry` on a Service Bus trigger).
    pub warnings: Vec<String>,
}

/// Reads and validates everything under `root`.
pub fn load(root: &Path, settings: &Settings) -> Result<AppConfig, String> {
    let host_path = root.join("host.json");
    let host_json = read_json(&host_path)?;
    schema::validate_host(&host_json).map_err(|e| format!("{}: {e}", host_path.display()))?;
    let host = parse_host(&host_json).map_err(|e| format!("{}: {e}", host_path.display()))?;
    let mut warnings = Vec::new();
    if !host.service_bus.auto_complete_messages {
        warnings.push(format!(
            "{}: extensions.serviceBus.autoCompleteMessages is false: successful messages are never completed",
            host_path.display()
        ));
    }
    let with_bundle = host_json.get("extensionBundle").is_some();
    let mut functions = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| format!("{}: {e}", root.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("function.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let file = dir.join("function.json");
        let function = load_function(&dir, settings, with_bundle, &mut warnings)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        functions.push(function);
    }
    Ok(AppConfig { host, functions, warnings })
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: invalid JSON: {e}", path.display()))
}

fn parse_host(json: &Value) -> Result<HostConfig, String> {
    let section = json.get("customHandler").or_else(|| json.get("httpWorker"));
    let description = section
        .and_then(|s| s.get("description"))
        .ok_or("customHandler.description is missing: this is not a custom-handler app")?;
    let default_executable_path = description
        .get("defaultExecutablePath")
        .and_then(Value::as_str)
        .filter(|p| !p.trim().is_empty())
        .ok_or("WorkerDescription DefaultExecutablePath cannot be empty")?
        .to_owned();
    let arguments = description
        .get("arguments")
        .and_then(Value::as_array)
        .map(|args| args.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let handler = HandlerDescription {
        default_executable_path,
        working_directory: description.get("workingDirectory").and_then(Value::as_str).map(str::to_owned),
        arguments,
    };
    let port = section.and_then(|s| s.get("port")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
    let function_timeout = match json.get("functionTimeout").and_then(Value::as_str) {
        None => Some(Duration::from_secs(30 * 60)),
        Some("-1") => None,
        Some(text) => Some(parse_timespan(text).ok_or_else(|| format!("functionTimeout {text:?} is not hh:mm:ss"))?),
    };
    let sb = json.pointer("/extensions/serviceBus");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max_concurrent_calls = sb
        .and_then(|s| s.get("maxConcurrentCalls"))
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .unwrap_or(16 * cores)
        .max(1);
    let auto_complete_messages =
        sb.and_then(|s| s.get("autoCompleteMessages")).and_then(Value::as_bool).unwrap_or(true);
    let max_auto_lock_renewal = match sb.and_then(|s| s.get("maxAutoLockRenewalDuration")).and_then(Value::as_str) {
        None => Duration::from_secs(5 * 60),
        Some(text) => {
            parse_timespan(text).ok_or_else(|| format!("maxAutoLockRenewalDuration {text:?} is not a timespan"))?
        }
    };
    let route_prefix = json
        .pointer("/extensions/http/routePrefix")
        .and_then(Value::as_str)
        .unwrap_or("api")
        .trim_matches('/')
        .to_owned();
    Ok(HostConfig {
        handler,
        port,
        function_timeout,
        service_bus: ServiceBusSettings { max_concurrent_calls, auto_complete_messages, max_auto_lock_renewal },
        route_prefix,
    })
}

/// .NET `TimeSpan` text: `[d.]hh:mm:ss[.fffffff]`.
pub fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let mut parts = rest.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes > 59 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole = (days * 24 + hours) * 3600 + minutes * 60;
    Some(Duration::from_secs(whole) + Duration::from_secs_f64(seconds))
}

fn load_function(
    dir: &Path,
    settings: &Settings,
    with_bundle: bool,
    warnings: &mut Vec<String>,
) -> Result<FunctionConfig, String> {
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or("the folder name is not UTF-8")?.to_owned();
    if !valid_function_name(&name) {
        return Err(format!("{name:?} is not a valid function name (^[a-z][a-z0-9_\\-]{{0,127}}$, not \"host\")"));
    }
    let json = read_json(&dir.join("function.json"))?;
    schema::validate_function(&json, with_bundle)?;
    let disabled = json.get("disabled").and_then(Value::as_bool).unwrap_or(false);
    let raw_bindings = json.get("bindings").and_then(Value::as_array).ok_or("\"bindings\" must be an array")?;
    let mut bindings = Vec::new();
    for raw in raw_bindings {
        let object = raw.as_object().ok_or("every binding must be an object")?;
        let name = object.get("name").and_then(Value::as_str).ok_or("a binding has no \"name\"")?.to_owned();
        if !valid_binding_name(&name) {
            return Err(format!(
                "binding name {name:?} is invalid (^([a-zA-Z][a-zA-Z0-9]{{0,127}}|\\$return)$: no '_' or '-')"
            ));
        }
        let kind = object.get("type").and_then(Value::as_str).ok_or(format!("binding {name:?} has no \"type\""))?;
        let kind = kind.to_ascii_lowercase();
        binding_rules::check(&kind, object).map_err(|e| format!("binding {name:?}: {e}"))?;
        let direction = object.get("direction").and_then(Value::as_str).unwrap_or("in").to_owned();
        let mut resolved = serde_json::Map::new();
        for (key, value) in object {
            let value = match value {
                Value::String(text) => Value::String(
                    settings.resolve_binding_expression(text).map_err(|e| format!("binding {name:?} {key}: {e}"))?,
                ),
                other => other.clone(),
            };
            resolved.insert(key.clone(), value);
        }
        bindings.push(Binding { name, kind, direction, raw: resolved });
    }
    let function = FunctionConfig { name, bindings, disabled };
    if let Some(trigger) = function.trigger().filter(|t| t.kind == "servicebustrigger") {
        if json.get("retry").is_some() {
            warnings.push(format!(
                "function {}: Soon retries will not be supported for function '{}' (retry is not supported for Service Bus triggers; it is ignored here)",
                function.name, function.name
            ));
        }
        if trigger.bool("autoCompleteMessages") == Some(false) {
            warnings.push(format!(
                "function {}: autoCompleteMessages is false: successful messages are never completed",
                function.name
            ));
        }
    }
    Ok(function)
}

/// Every app setting that names a connection, as the trigger and output bindings see it.
pub fn namespace_of(connection: Option<&str>, settings: &Settings) -> Result<String, String> {
    let connection = connection.unwrap_or("AzureWebJobsServiceBus");
    let candidates = [connection.to_owned(), format!("AzureWebJobs{connection}")];
    for name in &candidates {
        if let Some(value) = settings.get(name) {
            return namespace_from_connection_string(&value)
                .ok_or_else(|| format!("app setting {name} is not a Service Bus connection string (Endpoint=sb://…)"));
        }
        for separator in ["__", ":"] {
            if let Some(fqdn) = settings.get(&format!("{name}{separator}fullyQualifiedNamespace")) {
                return Ok(first_label(&fqdn));
            }
        }
    }
    Err(format!(
        "connection {connection:?}: neither app setting {connection} nor {connection}__fullyQualifiedNamespace is set"
    ))
}

fn namespace_from_connection_string(value: &str) -> Option<String> {
    let endpoint = value.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim().eq_ignore_ascii_case("Endpoint").then_some(value.trim())
    })?;
    let host = endpoint.strip_prefix("sb://").or_else(|| endpoint.strip_prefix("https://"))?;
    Some(first_label(host.trim_end_matches('/')))
}

fn first_label(fqdn: &str) -> String {
    fqdn.trim().split('.').next().unwrap_or_default().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(valid_function_name("ProcessOnboarding"));
        assert!(valid_function_name("a_b-c"));
        assert!(!valid_function_name("host"));
        assert!(!valid_function_name("1abc"));
        assert!(valid_binding_name("onboardingMessage"));
        assert!(valid_binding_name("$return"));
        assert!(!valid_binding_name("completion_event"));
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("00:10:00"), Some(Duration::from_secs(600)));
        assert_eq!(parse_timespan("1.00:00:01"), Some(Duration::from_secs(86401)));
        assert_eq!(parse_timespan("00:00:00.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_timespan("10 minutes"), None);
    }

    #[test]
    fn namespaces() {
        let settings = Settings::new(
            [
                ("Sb__fullyQualifiedNamespace".to_owned(), "Contoso-SB.servicebus.windows.net".to_owned()),
                (
                    "AzureWebJobsOther".to_owned(),
                    "Endpoint=sb://other.servicebus.windows.net/;SharedAccessKeyName=k".to_owned(),
                ),
            ]
            .into(),
        );
        assert_eq!(namespace_of(Some("Sb"), &settings).unwrap(), "contoso-sb");
        assert_eq!(namespace_of(Some("Other"), &settings).unwrap(), "other");
        assert!(namespace_of(Some("Missing"), &settings).unwrap_err().contains("Missing"));
    }
}
