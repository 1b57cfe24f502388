//! `Settings::from_lookup`: defaults, every error naming its setting, the test-proxy guard, and agreement of
//! `SETTINGS` with `local.settings.example.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cmk_handler::cloud::Cloud;
use cmk_handler::config::{AllowedScope, ConfigError, FicMode, LogFormat, SETTINGS, Settings, settings_markdown_table};

fn load(name: &str) -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/settings").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn parse(values: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    Settings::from_lookup(|name| values.get(name).cloned())
}

fn with(name: &str, value: &str) -> BTreeMap<String, String> {
    let mut values = load("minimal.json");
    values.insert(name.to_owned(), value.to_owned());
    values
}

fn error_names(error: ConfigError) -> &'static str {
    match error {
        ConfigError::Missing { name } | ConfigError::Invalid { name, .. } => name,
    }
}

#[test]
fn minimal_settings_take_the_documented_defaults() {
    let s = parse(&load("minimal.json")).unwrap();
    assert_eq!(s.port, 7071);
    assert_eq!(s.cloud, Cloud::Public);
    assert_eq!(s.onboarding_queue, "onboarding");
    assert_eq!(s.events_topic, "onboarding-events");
    assert_eq!(s.default_identity.app_client_id, "aaaaaaaa-0000-0000-0000-000000000001");
    assert_eq!(s.default_identity.uami_client_id, None);
    assert!(s.identity_sets.is_empty());
    assert_eq!(
        s.allowed_scopes,
        vec![AllowedScope::Subscription { subscription_id: "33333333-3333-3333-3333-333333333333".into() }]
    );
    assert_eq!(s.fic_mode, FicMode::Verify);
    assert_eq!(s.fic_name_for(&s.default_identity), "cmk-cmk-uami");
    assert!(!s.register_preview_feature);
    assert_eq!(s.max_message_bytes, 262_144);
    assert_eq!(s.retry_budget, Duration::from_secs(90));
    assert_eq!((s.retry_base_delay, s.retry_max_delay), (Duration::from_millis(500), Duration::from_millis(30_000)));
    assert_eq!((s.delayed_retry_base, s.delayed_retry_max), (Duration::from_secs(60), Duration::from_secs(3600)));
    assert_eq!((s.customer_retry_base, s.customer_retry_max), (Duration::from_secs(900), Duration::from_secs(21_600)));
    assert_eq!(s.deadline, Duration::from_secs(168 * 3600));
    assert_eq!(s.http_timeout, Duration::from_secs(30));
    assert_eq!(s.function_timeout, Some(Duration::from_secs(300)), "no host.json: the shortest plan default");
    assert_eq!(s.test_proxy_url, None);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.function_app_name, None);
}

#[test]
fn every_setting_can_be_overridden() {
    let s = parse(&load("full.json")).unwrap();
    assert_eq!(s.cloud, Cloud::UsGovernment);
    assert_eq!(s.service_bus_namespace, "isv-cmk.servicebus.usgovcloudapi.net");
    assert_eq!((s.onboarding_queue.as_str(), s.events_topic.as_str()), ("cmk-onboarding", "cmk-events"));
    assert!(s.default_identity.uami_resource_id.contains("/resourceGroups/isv-identity/"), "keywords canonicalised");
    assert_eq!(s.default_identity.uami_client_id.as_deref(), Some("cccccccc-0000-0000-0000-000000000003"));
    assert_eq!(s.identity(Some("eu")).unwrap().uami_name(), "cmk-uami-eu");
    assert_eq!(s.identity(Some("apac")), None);
    assert_eq!(s.allowed_scopes.len(), 2);
    assert!(s.allowed_scopes[0].contains("33333333-3333-3333-3333-333333333333", "ISV-CUSTOMERS"));
    assert!(!s.allowed_scopes[0].contains("33333333-3333-3333-3333-333333333333", "other"));
    assert_eq!(s.fic_mode, FicMode::Ensure);
    assert_eq!(s.fic_name_for(&s.default_identity), "cmk-federation");
    assert!(s.register_preview_feature);
    assert_eq!(s.max_message_bytes, 65_536);
    assert_eq!(s.deadline, Duration::from_secs(24 * 3600));
    assert_eq!(s.test_proxy_url.as_ref().map(url::Url::as_str), Some("http://127.0.0.1:7777/"));
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    assert_eq!(s.otlp_traces_endpoint, None, "empty counts as unset");
    assert_eq!(s.function_app_name.as_deref(), Some("func-cmk-onboarding"));
}

#[test]
fn a_missing_required_setting_is_named() {
    let required: Vec<_> = SETTINGS.iter().filter(|s| s.required).map(|s| s.name).collect();
    assert_eq!(required.len(), 6);
    for name in required {
        let mut values = load("minimal.json");
        values.remove(name);
        assert_eq!(
            parse(&values).unwrap_err(),
            ConfigError::Missing { name: SETTINGS.iter().find(|s| s.name == name).unwrap().name }
        );
        values.insert(name.to_owned(), "  ".to_owned());
        assert_eq!(error_names(parse(&values).unwrap_err()), name, "blank counts as missing");
    }
}

#[test]
fn an_invalid_setting_is_named() {
    let cases = [
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "seventy"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"),
        ("ServiceBusConnection__fullyQualifiedNamespace", "evil.example"),
        ("ServiceBusConnection__fullyQualifiedNamespace", "a.b.servicebus.windows.net"),
        ("ServiceBusConnection__fullyQualifiedNamespace", "isv-cmk.servicebus.chinacloudapi.cn"),
        ("CMK_AZURE_CLOUD", "AzureGermanCloud"),
        ("CMK_UAMI_RESOURCE_ID", "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg"),
        ("CMK_UAMI_CLIENT_ID", "not-a-guid"),
        ("CMK_APP_CLIENT_ID", "{aaaaaaaa-0000-0000-0000-000000000001}"),
        ("CMK_APP_OBJECT_ID", "x"),
        ("CMK_IDENTITY_SETS", "{\"eu\": 1}"),
        ("CMK_IDENTITY_SETS", "{\"eu\":{\"uamiResourceId\":\"/x\",\"appClientId\":\"a\",\"appObjectId\":\"b\"}}"),
        ("CMK_ALLOWED_SCOPES", "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups"),
        ("CMK_ALLOWED_SCOPES", "33333333-3333-3333-3333-333333333333"),
        ("CMK_ALLOWED_SCOPES", " , "),
        ("CMK_FIC_MODE", "create"),
        ("CMK_FIC_NAME", "-bad"),
        ("CMK_REGISTER_PREVIEW_FEATURE", "maybe"),
        ("CMK_MAX_MESSAGE_BYTES", "-1"),
        ("CMK_RETRY_BUDGET_SECONDS", "0"),
        ("CMK_RETRY_MAX_DELAY_MS", "100"),
        ("CMK_DELAYED_RETRY_MAX_SECONDS", "10"),
        ("CMK_CUSTOMER_RETRY_MAX_SECONDS", "60"),
        ("CMK_DEADLINE_HOURS", "1.5"),
        ("CMK_DEADLINE_HOURS", "87601"),
        ("CMK_CUSTOMER_RETRY_BASE_SECONDS", "18446744073709551615"),
        ("CMK_MAX_MESSAGE_BYTES", "104857601"),
        ("CMK_HTTP_TIMEOUT_SECONDS", "ten"),
        ("CMK_LOG_FORMAT", "xml"),
        ("CMK_TEST_PROXY_URL", "https://127.0.0.1:7777"),
        ("CMK_TEST_PROXY_URL", "http://10.0.0.4:7777"),
        ("CMK_TEST_PROXY_URL", "http://169.254.169.254/"),
        ("CMK_TEST_PROXY_URL", "http://localhost.evil.example:80"),
        ("CMK_TEST_PROXY_URL", "http://user:pw@127.0.0.1:7777"),
        ("CMK_TEST_PROXY_URL", "127.0.0.1:7777"),
    ];
    for (name, value) in cases {
        match parse(&with(name, value)) {
            Err(ConfigError::Invalid { name: named, .. }) => assert_eq!(named, name, "{value}"),
            other => panic!("{name}={value:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn the_test_proxy_may_only_be_loopback() {
    for ok in [
        "http://127.0.0.1:7777",
        "http://127.9.8.7:1",
        "http://[::1]:8080/",
        "http://localhost:7071",
        "http://LOCALHOST",
    ] {
        assert!(parse(&with("CMK_TEST_PROXY_URL", ok)).unwrap().test_proxy_url.is_some(), "{ok}");
    }
}

#[test]
fn settings_table_is_consistent() {
    let mut names: Vec<_> = SETTINGS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len(), "duplicate setting names");
    for s in SETTINGS {
        assert!(!s.secret, "{}", s.name);
        assert!(!(s.required && s.default.is_some()), "{} is required but has a default", s.name);
        assert!(s.description.ends_with('.'), "{}: description is a sentence", s.name);
    }
}

#[test]
fn local_settings_example_matches_the_settings_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../local.settings.example.json");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let values: BTreeMap<String, String> = serde_json::from_value(file["Values"].clone()).unwrap();
    let host_only = ["FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"];
    for key in values.keys() {
        assert!(
            host_only.contains(&key.as_str()) || SETTINGS.iter().any(|s| s.name == key && !s.platform),
            "{key} is in local.settings.example.json but not an operator setting in SETTINGS"
        );
    }
    for spec in SETTINGS.iter().filter(|s| !s.platform) {
        let value = values.get(spec.name).unwrap_or_else(|| panic!("{} missing from the example", spec.name));
        if let Some(default) = spec.default {
            assert_eq!(value, default, "{}: the example shows the default", spec.name);
        }
        if spec.required {
            assert!(!value.is_empty(), "{}: the example gives a value", spec.name);
        }
    }
    let mut with_port = values.clone();
    with_port.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "7071".into());
    parse(&with_port).expect("the example parses");
}

#[test]
fn the_readme_table_has_one_row_per_setting() {
    let table = settings_markdown_table();
    assert_eq!(table.lines().count(), SETTINGS.len() + 2);
    assert!(table.contains("| `CMK_FIC_MODE` | no | `verify` | operator |"), "{table}");
    assert!(table.contains("| `FUNCTIONS_CUSTOMHANDLER_PORT` | yes | – | platform |"), "{table}");
}

/// The host's `functionTimeout` comes from `host.json` in the app root the host passes, unless the app setting that
/// overrides host.json values sets it.
#[test]
fn the_function_timeout_is_read_like_the_host_reads_it() {
    let root = std::env::temp_dir().join(format!("cmk-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let write = |host_json: &str| std::fs::write(root.join("host.json"), host_json).unwrap();
    let at_root = || with("FUNCTIONS_APP_ROOT_PATH", root.to_str().unwrap());

    // The repository's host.json, as deployed.
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../host.json")).unwrap();
    write(&shipped);
    assert_eq!(parse(&at_root()).unwrap().function_timeout, Some(Duration::from_secs(600)));

    for (text, expected) in [
        ("00:00:06", Some(Duration::from_secs(6))),
        ("01:30:00", Some(Duration::from_secs(5400))),
        ("1.02:00:00", Some(Duration::from_secs(26 * 3600))),
        ("00:00:01.5", Some(Duration::from_millis(1500))),
        ("-1", None),
    ] {
        write(&format!(r#"{{"version":"2.0","functionTimeout":"{text}"}}"#));
        assert_eq!(parse(&at_root()).unwrap().function_timeout, expected, "{text}");
    }
    write(r#"{"version":"2.0"}"#);
    assert_eq!(parse(&at_root()).unwrap().function_timeout, Some(Duration::from_secs(300)), "absent: default");

    for bad in ["10 minutes", "00:60:00", "00:00:00", "00:00:00.5", "1:2", "\"x\":1"] {
        write(&format!(r#"{{"version":"2.0","functionTimeout":"{bad}"}}"#));
        assert_eq!(error_names(parse(&at_root()).unwrap_err()), "FUNCTIONS_APP_ROOT_PATH", "{bad}");
    }
    write("{ not json");
    assert_eq!(error_names(parse(&at_root()).unwrap_err()), "FUNCTIONS_APP_ROOT_PATH");

    // The app setting wins over the file, as it does for the host.
    let mut values = at_root();
    values.insert("AzureFunctionsJobHost__functionTimeout".into(), "00:02:00".into());
    assert_eq!(parse(&values).unwrap().function_timeout, Some(Duration::from_secs(120)));
    values.insert("AzureFunctionsJobHost__functionTimeout".into(), "soon".into());
    assert_eq!(error_names(parse(&values).unwrap_err()), "AzureFunctionsJobHost__functionTimeout");

    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(error_names(parse(&at_root()).unwrap_err()), "FUNCTIONS_APP_ROOT_PATH", "an app root without host.json");
}
