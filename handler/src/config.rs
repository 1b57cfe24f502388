//! `Settings`: every app setting the handler reads, parsed and checked once at startup.
//!
//! [`SETTINGS`] is the single list of settings: the README table, `local.settings.example.json` and the infra tests
//! are checked against it. Parsing takes a lookup function instead of reading the process environment so tests can
//! pass plain maps (edition 2024 forbids mutating the environment without `unsafe`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cloud::Cloud;

/// One app setting, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    pub name: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
    pub description: &'static str,
    /// Always false today; kept so a future secret is never printed by `Debug` or the README generator.
    pub secret: bool,
    /// Set by the Functions platform or host rather than by the operator (absent from `local.settings.json`).
    pub platform: bool,
}

const fn spec(
    name: &'static str,
    required: bool,
    default: Option<&'static str>,
    description: &'static str,
) -> SettingSpec {
    SettingSpec { name, required, default, description, secret: false, platform: false }
}

const fn platform(name: &'static str, required: bool, description: &'static str) -> SettingSpec {
    SettingSpec { name, required, default: None, description, secret: false, platform: true }
}

pub const PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
pub const SERVICE_BUS_NAMESPACE: &str = "ServiceBusConnection__fullyQualifiedNamespace";
pub const ONBOARDING_QUEUE: &str = "CMK_ONBOARDING_QUEUE";
pub const EVENTS_TOPIC: &str = "CMK_EVENTS_TOPIC";
pub const AZURE_CLOUD: &str = "CMK_AZURE_CLOUD";
pub const UAMI_RESOURCE_ID: &str = "CMK_UAMI_RESOURCE_ID";
pub const UAMI_CLIENT_ID: &str = "CMK_UAMI_CLIENT_ID";
pub const APP_CLIENT_ID: &str = "CMK_APP_CLIENT_ID";
pub const APP_OBJECT_ID: &str = "CMK_APP_OBJECT_ID";
pub const IDENTITY_SETS: &str = "CMK_IDENTITY_SETS";
pub const ALLOWED_SCOPES: &str = "CMK_ALLOWED_SCOPES";
pub const FIC_MODE: &str = "CMK_FIC_MODE";
pub const FIC_NAME: &str = "CMK_FIC_NAME";
pub const REGISTER_PREVIEW_FEATURE: &str = "CMK_REGISTER_PREVIEW_FEATURE";
pub const REQUIRE_KEY_CONSENT: &str = "CMK_REQUIRE_KEY_CONSENT";
pub const MAX_MESSAGE_BYTES: &str = "CMK_MAX_MESSAGE_BYTES";
pub const RETRY_BUDGET_SECONDS: &str = "CMK_RETRY_BUDGET_SECONDS";
pub const RETRY_BASE_DELAY_MS: &str = "CMK_RETRY_BASE_DELAY_MS";
pub const RETRY_MAX_DELAY_MS: &str = "CMK_RETRY_MAX_DELAY_MS";
pub const DELAYED_RETRY_BASE_SECONDS: &str = "CMK_DELAYED_RETRY_BASE_SECONDS";
pub const DELAYED_RETRY_MAX_SECONDS: &str = "CMK_DELAYED_RETRY_MAX_SECONDS";
pub const CUSTOMER_RETRY_BASE_SECONDS: &str = "CMK_CUSTOMER_RETRY_BASE_SECONDS";
pub const CUSTOMER_RETRY_MAX_SECONDS: &str = "CMK_CUSTOMER_RETRY_MAX_SECONDS";
pub const DEADLINE_HOURS: &str = "CMK_DEADLINE_HOURS";
pub const WATCH_SCHEDULE: &str = "CMK_WATCH_SCHEDULE";
pub const KEY_EXPIRY_WARNING_DAYS: &str = "CMK_KEY_EXPIRY_WARNING_DAYS";
pub const HTTP_TIMEOUT_SECONDS: &str = "CMK_HTTP_TIMEOUT_SECONDS";
pub const TEST_PROXY_URL: &str = "CMK_TEST_PROXY_URL";
pub const LOG_FORMAT: &str = "CMK_LOG_FORMAT";
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const APP_ROOT: &str = "FUNCTIONS_APP_ROOT_PATH";
pub const FUNCTION_TIMEOUT_OVERRIDE: &str = "AzureFunctionsJobHost__functionTimeout";
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
pub const SITE_NAME: &str = "WEBSITE_SITE_NAME";

/// Every setting the handler knows, in README order.
pub const SETTINGS: &[SettingSpec] = &[
    platform(PORT, true, "Port the Functions host expects the handler on (set by the host)."),
    spec(
        SERVICE_BUS_NAMESPACE,
        true,
        None,
        "Service Bus namespace host (`{ns}.servicebus.windows.net`, or the configured cloud's suffix); used by the trigger and by the handler to send scheduled copies and events.",
    ),
    spec(ONBOARDING_QUEUE, false, Some("onboarding"), "Queue the onboarding messages arrive on."),
    spec(EVENTS_TOPIC, false, Some("onboarding-events"), "Topic the CloudEvents are published to."),
    spec(AZURE_CLOUD, false, Some("AzureCloud"), "`AzureCloud`, `AzureUSGovernment` or `AzureChinaCloud`."),
    spec(
        UAMI_RESOURCE_ID,
        true,
        None,
        "ARM id of the user-assigned managed identity used as the federated credential of the multi-tenant app.",
    ),
    spec(UAMI_CLIENT_ID, false, None, "Client id of that identity; read from ARM when empty."),
    spec(APP_CLIENT_ID, true, None, "Application (client) id of the multi-tenant app the customers install."),
    spec(APP_OBJECT_ID, true, None, "Object id of that app registration in the ISV tenant (for the FIC check)."),
    spec(
        IDENTITY_SETS,
        false,
        None,
        "Extra identity sets by name, JSON `{\"name\":{\"uamiResourceId\",\"uamiClientId\",\"appClientId\",\"appObjectId\"}}`; a message picks one with `isvIdentity`.",
    ),
    spec(
        ALLOWED_SCOPES,
        true,
        None,
        "Comma-separated `/subscriptions/{id}` or `/subscriptions/{id}/resourceGroups/{rg}` the storage accounts must be in.",
    ),
    spec(
        FIC_MODE,
        false,
        Some("verify"),
        "`verify` (fail if the federated credential is missing) or `ensure` (create it).",
    ),
    spec(FIC_NAME, false, None, "Name of the federated identity credential on the app; empty means `cmk-{uami name}`."),
    spec(
        REGISTER_PREVIEW_FEATURE,
        false,
        Some("false"),
        "Register `Microsoft.Storage/FederatedClientIdentity` (preview-era step) before the first PATCH.",
    ),
    spec(
        REQUIRE_KEY_CONSENT,
        false,
        Some("true"),
        "Require the key's owner to consent to each storage account: a key tag `cmk-consent` or `cmk-consent-*` whose value is the account's resource id (docs/integrating.md). Turn off only if the customer tenant is bound to the account upstream, from an authenticated sign-in.",
    ),
    spec(MAX_MESSAGE_BYTES, false, Some("262144"), "Largest accepted message body, in bytes."),
    spec(
        WATCH_SCHEDULE,
        false,
        Some("0 */15 * * * *"),
        "NCRONTAB schedule (six fields) of the key watch (`WatchKeys`); read by the Functions host from `function.json`, which needs it set.",
    ),
    spec(
        KEY_EXPIRY_WARNING_DAYS,
        false,
        Some("30"),
        "The key watch publishes `key_expiring` this many days before the key version in use expires.",
    ),
    spec(
        RETRY_BUDGET_SECONDS,
        false,
        Some("90"),
        "Time one invocation may spend on Azure calls and their retries; shortened to fit the host's `functionTimeout`.",
    ),
    spec(RETRY_BASE_DELAY_MS, false, Some("500"), "First in-invocation retry delay (exponential, full jitter)."),
    spec(RETRY_MAX_DELAY_MS, false, Some("30000"), "Longest in-invocation retry delay."),
    spec(DELAYED_RETRY_BASE_SECONDS, false, Some("60"), "First delay of a scheduled retry after a transient failure."),
    spec(
        DELAYED_RETRY_MAX_SECONDS,
        false,
        Some("3600"),
        "Longest delay of a scheduled retry after a transient failure.",
    ),
    spec(CUSTOMER_RETRY_BASE_SECONDS, false, Some("900"), "First delay of a retry while waiting on the customer."),
    spec(CUSTOMER_RETRY_MAX_SECONDS, false, Some("21600"), "Longest delay of a retry while waiting on the customer."),
    spec(
        DEADLINE_HOURS,
        false,
        Some("168"),
        "Hours after the first attempt after which an onboarding is dead-lettered.",
    ),
    spec(HTTP_TIMEOUT_SECONDS, false, Some("30"), "Timeout of one HTTP request to Azure."),
    spec(
        TEST_PROXY_URL,
        false,
        None,
        "Tests only: loopback `http://` address all Azure-bound requests are sent to (the emulator).",
    ),
    spec(LOG_FORMAT, false, Some("json"), "`json` or `text`."),
    spec(OTLP_ENDPOINT, false, None, "OTLP/HTTP collector base URL; traces are exported when set."),
    spec(OTLP_TRACES_ENDPOINT, false, None, "OTLP/HTTP traces URL; overrides the base URL for traces."),
    platform(
        APP_ROOT,
        false,
        "Function app root (set by the host); the handler reads `functionTimeout` from its `host.json` to answer in time.",
    ),
    platform(
        FUNCTION_TIMEOUT_OVERRIDE,
        false,
        "Functions host setting that overrides `functionTimeout` of `host.json`; the handler follows it too.",
    ),
    platform(IDENTITY_ENDPOINT, false, "Managed-identity endpoint (set by App Service / Functions)."),
    platform(IDENTITY_HEADER, false, "Header value the managed-identity endpoint requires (set by the platform)."),
    platform(SITE_NAME, false, "Function app name (set by the platform); the CloudEvents `source` uses it."),
];

/// The README table of settings, rendered from [`SETTINGS`] so the two cannot drift.
pub fn settings_markdown_table() -> String {
    let mut table = String::from("| setting | required | default | set by | description |\n|---|---|---|---|---|\n");
    for s in SETTINGS {
        let required = if s.required { "yes" } else { "no" };
        let default = s.default.map_or_else(|| "–".to_owned(), |d| format!("`{d}`"));
        let set_by = if s.platform { "platform" } else { "operator" };
        table.push_str(&format!("| `{}` | {required} | {default} | {set_by} | {} |\n", s.name, s.description));
    }
    table
}

/// A setting that is missing or cannot be used; always names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("app setting {name} is required but not set")]
    Missing { name: &'static str },
    #[error("app setting {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

pub use crate::contract::{AllowedScope, IsvIdentity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FicMode {
    /// Check the federated identity credential exists and fail (ISV configuration error) if not.
    Verify,
    /// Create or update it (needs Graph rights on the app).
    Ensure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Every app setting, parsed. `Debug` is safe to log: no setting is secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub port: u16,
    pub service_bus_namespace: String,
    pub onboarding_queue: String,
    pub events_topic: String,
    pub cloud: Cloud,
    pub default_identity: IsvIdentity,
    pub identity_sets: BTreeMap<String, IsvIdentity>,
    pub allowed_scopes: Vec<AllowedScope>,
    pub fic_mode: FicMode,
    /// `None` means the default `cmk-{uami name}`; see [`Settings::fic_name_for`].
    pub fic_name: Option<String>,
    pub register_preview_feature: bool,
    /// Refuse a key whose tags do not consent to the storage account (`KeyConsentMissing`).
    pub require_key_consent: bool,
    pub max_message_bytes: usize,
    pub retry_budget: Duration,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub delayed_retry_base: Duration,
    pub delayed_retry_max: Duration,
    pub customer_retry_base: Duration,
    pub customer_retry_max: Duration,
    pub deadline: Duration,
    /// How long before a key version's expiry the watch warns.
    pub key_expiry_warning: time::Duration,
    /// The host's `functionTimeout`; `None` when unbounded (`-1`). See [`function_timeout`].
    pub function_timeout: Option<Duration>,
    pub http_timeout: Duration,
    pub test_proxy_url: Option<url::Url>,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    pub otlp_traces_endpoint: Option<String>,
    /// `WEBSITE_SITE_NAME`, when the platform sets it.
    pub function_app_name: Option<String>,
}

impl Settings {
    /// What message validation needs of the settings.
    pub fn validation_policy(&self) -> crate::contract::ValidationPolicy {
        crate::contract::ValidationPolicy {
            cloud: self.cloud,
            max_message_bytes: self.max_message_bytes,
            allowed_scopes: self.allowed_scopes.clone(),
            default_identity: self.default_identity.clone(),
            identity_sets: self.identity_sets.clone(),
        }
    }

    /// Reads every setting through `lookup` (main passes `|n| std::env::var(n).ok()`). Empty values count as unset,
    /// as they do in the Azure portal.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &'static str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing { name });
        let with_default = |name: &'static str| get(name).unwrap_or_else(|| default_of(name).to_owned());

        let port = required(PORT)?.parse::<u16>().map_err(|e| invalid(PORT, e.to_string()))?;
        let cloud: Cloud = with_default(AZURE_CLOUD).parse().map_err(|e: String| invalid(AZURE_CLOUD, e))?;
        let service_bus_namespace = parse_namespace(&required(SERVICE_BUS_NAMESPACE)?, cloud)?;

        let default_identity = IsvIdentity {
            uami_resource_id: parse_uami_id(&required(UAMI_RESOURCE_ID)?).map_err(|r| invalid(UAMI_RESOURCE_ID, r))?,
            uami_client_id: get(UAMI_CLIENT_ID).map(|v| guid(UAMI_CLIENT_ID, &v)).transpose()?,
            app_client_id: guid(APP_CLIENT_ID, &required(APP_CLIENT_ID)?)?,
            app_object_id: guid(APP_OBJECT_ID, &required(APP_OBJECT_ID)?)?,
        };
        let identity_sets = get(IDENTITY_SETS).map(|v| parse_identity_sets(&v)).transpose()?.unwrap_or_default();

        let allowed_scopes = required(ALLOWED_SCOPES)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| AllowedScope::parse(s).map_err(|r| invalid(ALLOWED_SCOPES, r)))
            .collect::<Result<Vec<_>, _>>()?;
        if allowed_scopes.is_empty() {
            return Err(invalid(ALLOWED_SCOPES, "lists no scope"));
        }

        let fic_mode = match with_default(FIC_MODE).to_ascii_lowercase().as_str() {
            "verify" => FicMode::Verify,
            "ensure" => FicMode::Ensure,
            other => return Err(invalid(FIC_MODE, format!("{other:?} is neither verify nor ensure"))),
        };
        let fic_name = get(FIC_NAME).map(|n| check_fic_name(&n).map(|()| n)).transpose()?;
        let log_format = match with_default(LOG_FORMAT).to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(invalid(LOG_FORMAT, format!("{other:?} is neither json nor text"))),
        };

        let number = |name: &'static str| -> Result<u64, ConfigError> {
            let text = with_default(name);
            let n = text.parse::<u64>().map_err(|_| invalid(name, format!("{text:?} is not a whole number")))?;
            let max = largest_number(name);
            if n == 0 || n > max { Err(invalid(name, format!("must be between 1 and {max}"))) } else { Ok(n) }
        };
        let seconds = |name| number(name).map(Duration::from_secs);
        let millis = |name| number(name).map(Duration::from_millis);

        let settings = Settings {
            port,
            service_bus_namespace,
            onboarding_queue: with_default(ONBOARDING_QUEUE),
            events_topic: with_default(EVENTS_TOPIC),
            cloud,
            default_identity,
            identity_sets,
            allowed_scopes,
            fic_mode,
            fic_name,
            register_preview_feature: parse_bool(REGISTER_PREVIEW_FEATURE, &with_default(REGISTER_PREVIEW_FEATURE))?,
            require_key_consent: parse_bool(REQUIRE_KEY_CONSENT, &with_default(REQUIRE_KEY_CONSENT))?,
            max_message_bytes: usize::try_from(number(MAX_MESSAGE_BYTES)?)
                .map_err(|_| invalid(MAX_MESSAGE_BYTES, "too large"))?,
            retry_budget: seconds(RETRY_BUDGET_SECONDS)?,
            retry_base_delay: millis(RETRY_BASE_DELAY_MS)?,
            retry_max_delay: millis(RETRY_MAX_DELAY_MS)?,
            delayed_retry_base: seconds(DELAYED_RETRY_BASE_SECONDS)?,
            delayed_retry_max: seconds(DELAYED_RETRY_MAX_SECONDS)?,
            customer_retry_base: seconds(CUSTOMER_RETRY_BASE_SECONDS)?,
            customer_retry_max: seconds(CUSTOMER_RETRY_MAX_SECONDS)?,
            deadline: Duration::from_secs(number(DEADLINE_HOURS)?.saturating_mul(3600)),
            key_expiry_warning: time::Duration::days(
                i64::try_from(number(KEY_EXPIRY_WARNING_DAYS)?)
                    .map_err(|_| invalid(KEY_EXPIRY_WARNING_DAYS, "too large"))?,
            ),
            function_timeout: function_timeout(get(FUNCTION_TIMEOUT_OVERRIDE), get(APP_ROOT))?,
            http_timeout: seconds(HTTP_TIMEOUT_SECONDS)?,
            test_proxy_url: get(TEST_PROXY_URL).map(|v| parse_test_proxy(&v)).transpose()?,
            log_format,
            otlp_endpoint: get(OTLP_ENDPOINT),
            otlp_traces_endpoint: get(OTLP_TRACES_ENDPOINT),
            function_app_name: get(SITE_NAME),
        };
        settings.check_ranges()?;
        Ok(settings)
    }

    fn check_ranges(&self) -> Result<(), ConfigError> {
        let pairs = [
            (RETRY_MAX_DELAY_MS, self.retry_base_delay, self.retry_max_delay),
            (DELAYED_RETRY_MAX_SECONDS, self.delayed_retry_base, self.delayed_retry_max),
            (CUSTOMER_RETRY_MAX_SECONDS, self.customer_retry_base, self.customer_retry_max),
        ];
        for (name, base, max) in pairs {
            if max < base {
                return Err(invalid(name, format!("must not be smaller than the base delay ({base:?})")));
            }
        }
        Ok(())
    }

    /// Name of the federated identity credential for `identity`: the configured one, else `cmk-{uami name}`.
    pub fn fic_name_for(&self, identity: &IsvIdentity) -> String {
        self.fic_name.clone().unwrap_or_else(|| format!("cmk-{}", identity.uami_name()))
    }

    /// The identity set `name` refers to; `None` means the default set.
    pub fn identity(&self, name: Option<&str>) -> Option<&IsvIdentity> {
        match name {
            None => Some(&self.default_identity),
            Some(n) => self.identity_sets.get(n),
        }
    }
}

/// `functionTimeout` when `host.json` does not set it: the Consumption plan's default, the shortest of any plan's
/// (Flex Consumption and dedicated plans default to 30 minutes; reference `functions-custom-handler.md` §3.2).
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The host's `functionTimeout`, read the way the host reads it: the `AzureFunctionsJobHost__functionTimeout` app
/// setting when set, else `host.json` in the app root the host passes (`FUNCTIONS_APP_ROOT_PATH`), else the shortest
/// plan default. `None` means unbounded (`-1`). Reading the file the host enforces, rather than a copy of its value
/// in another setting, keeps the two from drifting apart.
fn function_timeout(override_value: Option<String>, app_root: Option<String>) -> Result<Option<Duration>, ConfigError> {
    if let Some(text) = override_value {
        return parse_function_timeout(&text).map_err(|reason| invalid(FUNCTION_TIMEOUT_OVERRIDE, reason));
    }
    let Some(root) = app_root else { return Ok(Some(DEFAULT_FUNCTION_TIMEOUT)) };
    let path = std::path::Path::new(&root).join("host.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(APP_ROOT, format!("cannot read {}: {e}", path.display())))?;
    let host: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(APP_ROOT, format!("{} is not JSON: {e}", path.display())))?;
    match host.get("functionTimeout") {
        None | Some(serde_json::Value::Null) => Ok(Some(DEFAULT_FUNCTION_TIMEOUT)),
        Some(serde_json::Value::String(text)) => parse_function_timeout(text)
            .map_err(|reason| invalid(APP_ROOT, format!("{}: functionTimeout {reason}", path.display()))),
        Some(other) => Err(invalid(APP_ROOT, format!("{}: functionTimeout {other} is not a string", path.display()))),
    }
}

/// `[d.]hh:mm:ss[.fffffff]` (a .NET TimeSpan, at least one second) or `-1` (unbounded).
pub fn parse_function_timeout(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(None);
    }
    let bad = || format!("{text:?} is neither hh:mm:ss nor -1");
    let (days, clock) = match text.split_once('.') {
        Some((days, rest)) if !days.contains(':') => (days.parse::<u64>().map_err(|_| bad())?, rest),
        _ => (0, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [hours, minutes, seconds] = parts.as_slice() else { return Err(bad()) };
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (hours, minutes) = (number(hours)?, number(minutes)?);
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let seconds = number(whole)?;
    if hours > 23 || minutes > 59 || seconds > 59 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos = format!("{fraction:0<9}").get(..9).and_then(|n| n.parse::<u32>().ok()).ok_or_else(bad)?;
    let total = Duration::new(((days * 24 + hours) * 60 + minutes) * 60 + seconds, nanos);
    if total < Duration::from_secs(1) || days > 3650 {
        return Err(format!("{text:?} must be between 1 second and 10 years"));
    }
    Ok(Some(total))
}

/// Upper bounds keep time arithmetic far from overflow: ten years for any duration, 100 MiB (the largest Service
/// Bus message) for the message size.
fn largest_number(name: &str) -> u64 {
    const TEN_YEARS_SECONDS: u64 = 10 * 365 * 24 * 3600;
    match name {
        MAX_MESSAGE_BYTES => 100 * 1024 * 1024,
        DEADLINE_HOURS => TEN_YEARS_SECONDS / 3600,
        KEY_EXPIRY_WARNING_DAYS => 3650,
        RETRY_BASE_DELAY_MS | RETRY_MAX_DELAY_MS => TEN_YEARS_SECONDS * 1000,
        _ => TEN_YEARS_SECONDS,
    }
}

fn default_of(name: &str) -> &'static str {
    SETTINGS.iter().find(|s| s.name == name).and_then(|s| s.default).unwrap_or_default()
}

fn guid(name: &'static str, value: &str) -> Result<String, ConfigError> {
    crate::contract::normalize_guid(value).ok_or_else(|| invalid(name, format!("{value:?} is not a GUID")))
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(invalid(name, format!("{other:?} is not a boolean"))),
    }
}

/// `{ns}.{service bus suffix of the cloud}`, one DNS label in front.
fn parse_namespace(value: &str, cloud: Cloud) -> Result<String, ConfigError> {
    let host = value.to_ascii_lowercase();
    let label = host.strip_suffix(cloud.service_bus_suffix()).and_then(|rest| rest.strip_suffix('.'));
    match label {
        Some(l) if !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => Ok(host),
        _ => Err(invalid(
            SERVICE_BUS_NAMESPACE,
            format!("{value:?} is not {{namespace}}.{} (cloud {cloud})", cloud.service_bus_suffix()),
        )),
    }
}

/// `/subscriptions/{guid}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`,
/// returned with the subscription lower-cased and the keywords in their canonical spelling.
pub fn parse_uami_id(value: &str) -> Result<String, String> {
    let segments: Vec<&str> = value.strip_prefix('/').unwrap_or("").split('/').collect();
    let keywords_ok = |s: &[&str]| {
        s[0].eq_ignore_ascii_case("subscriptions")
            && s[2].eq_ignore_ascii_case("resourceGroups")
            && s[4].eq_ignore_ascii_case("providers")
            && s[5].eq_ignore_ascii_case("Microsoft.ManagedIdentity")
            && s[6].eq_ignore_ascii_case("userAssignedIdentities")
    };
    let name_ok = |n: &str| {
        (3..=128).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if segments.len() == 8
        && keywords_ok(&segments)
        && crate::contract::is_resource_group_name(segments[3])
        && name_ok(segments[7])
        && let Some(sub) = crate::contract::normalize_guid(segments[1])
    {
        return Ok(format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            segments[3], segments[7]
        ));
    }
    Err(format!("{value:?} is not a user-assigned managed identity resource id"))
}

/// Federated identity credential names: 3–120 characters, URL-friendly, starting alphanumeric.
fn check_fic_name(name: &str) -> Result<(), ConfigError> {
    let ok = (3..=120).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(FIC_NAME, format!("{name:?} is not 3-120 of [A-Za-z0-9_-] starting alphanumeric")))
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentitySetJson {
    uami_resource_id: String,
    #[serde(default)]
    uami_client_id: Option<String>,
    app_client_id: String,
    app_object_id: String,
}

fn parse_identity_sets(value: &str) -> Result<BTreeMap<String, IsvIdentity>, ConfigError> {
    let raw: BTreeMap<String, IdentitySetJson> =
        serde_json::from_str(value).map_err(|e| invalid(IDENTITY_SETS, format!("not the documented JSON: {e}")))?;
    raw.into_iter()
        .map(|(name, set)| {
            if name.is_empty() {
                return Err(invalid(IDENTITY_SETS, "an identity set has an empty name"));
            }
            let field = |what: &str, v: &str| {
                crate::contract::normalize_guid(v)
                    .ok_or_else(|| invalid(IDENTITY_SETS, format!("{name}.{what}: {v:?} is not a GUID")))
            };
            let identity = IsvIdentity {
                uami_resource_id: parse_uami_id(&set.uami_resource_id)
                    .map_err(|r| invalid(IDENTITY_SETS, format!("{name}.uamiResourceId: {r}")))?,
                uami_client_id: set.uami_client_id.as_deref().map(|v| field("uamiClientId", v)).transpose()?,
                app_client_id: field("appClientId", &set.app_client_id)?,
                app_object_id: field("appObjectId", &set.app_object_id)?,
            };
            Ok((name, identity))
        })
        .collect()
}

/// The test seam may only point at this machine: `http://` on 127.0.0.0/8, `[::1]` or `localhost`.
fn parse_test_proxy(value: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(value).map_err(|e| invalid(TEST_PROXY_URL, format!("not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(invalid(TEST_PROXY_URL, "must use http://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(TEST_PROXY_URL, "must not carry credentials"));
    }
    if !url.host_str().is_some_and(crate::cloud::is_loopback_host) {
        return Err(invalid(TEST_PROXY_URL, "must be a loopback address (127.0.0.0/8, [::1] or localhost)"));
    }
    Ok(url)
}
