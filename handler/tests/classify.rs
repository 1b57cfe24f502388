//! Error classification: every real-shaped error body under `tests/data/azure-errors` goes through
//! `parse_error_body` and `classify`, and must give the code, disposition, reason and customer action it names.

use std::path::Path;
use std::time::Duration;

use cmk_handler::error::classify::{classify, parse_error_body, redact_secrets};
use cmk_handler::error::{AzureError, AzureService, Disposition, Error};
use serde_json::Value;

fn service(name: &str) -> AzureService {
    match name {
        "ManagedIdentity" => AzureService::ManagedIdentity,
        "Entra" => AzureService::Entra,
        "Arm" => AzureService::Arm,
        "Graph" => AzureService::Graph,
        "KeyVault" => AzureService::KeyVault,
        "ServiceBus" => AzureService::ServiceBus,
        other => panic!("unknown service {other}"),
    }
}

/// `operation` is `&'static str` in `AzureError`; fixtures are loaded once per test run.
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

fn parse_fixture(doc: &Value) -> AzureError {
    let body = match (&doc["body"], &doc["bodyText"]) {
        (Value::Null, Value::String(text)) => text.clone().into_bytes(),
        (body, _) => serde_json::to_vec(body).unwrap(),
    };
    parse_error_body(
        service(doc["service"].as_str().unwrap()),
        leak(doc["operation"].as_str().unwrap()),
        u16::try_from(doc["status"].as_u64().unwrap()).unwrap(),
        doc["retryAfterSeconds"].as_u64().map(Duration::from_secs),
        &body,
    )
}

#[test]
fn every_error_fixture_classifies_as_documented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/azure-errors");
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(paths.len() >= 30, "fixtures present");
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let expect = &doc["expect"];
        let error = parse_fixture(&doc);
        assert_eq!(error.code.as_deref(), expect["code"].as_str(), "{name}: code");
        assert_eq!(error.inner_code.as_deref(), expect["innerCode"].as_str(), "{name}: inner code");
        assert!(!error.message.is_empty(), "{name}: message");
        assert_eq!(error.retry_after, doc["retryAfterSeconds"].as_u64().map(Duration::from_secs), "{name}");

        let classified = classify(&error);
        assert_eq!(serde_json::to_value(classified.disposition).unwrap(), expect["disposition"], "{name}: disposition");
        assert_eq!(classified.reason_code, expect["reasonCode"].as_str().unwrap(), "{name}: reason");
        assert_eq!(
            serde_json::to_value(&classified.customer_action).unwrap(),
            expect["customerAction"],
            "{name}: action"
        );

        for secret in expect["messageMustNotContain"].as_array().into_iter().flatten() {
            assert!(!error.message.contains(secret.as_str().unwrap()), "{name}: leaked {secret} in {}", error.message);
        }

        // The error type agrees with the table.
        let wrapped = Error::Azure(error);
        assert_eq!(wrapped.reason_code(), classified.reason_code, "{name}");
        assert_eq!(wrapped.disposition(), classified.disposition, "{name}");
    }
}

#[test]
fn customer_errors_carry_the_action_and_transient_ones_the_wait() {
    let throttled = parse_error_body(AzureService::Arm, "get storage account", 429, Some(Duration::from_secs(9)), b"");
    assert_eq!(classify(&throttled).disposition, Disposition::Transient);
    assert_eq!(Error::Azure(throttled).retry_after(), Some(Duration::from_secs(9)));

    let missing = parse_error_body(
        AzureService::KeyVault,
        "unwrap key",
        403,
        None,
        br#"{"error":{"code":"Forbidden","message":"Operation unwrapKey is not permitted on this key.","innererror":{"code":"KeyOperationForbidden"}}}"#,
    );
    let action = Error::Azure(missing).customer_action().expect("a customer action");
    assert_eq!(serde_json::to_value(action).unwrap()["missing"], serde_json::json!(["unwrapKey"]));
}

#[test]
fn messages_are_bounded_and_cleaned() {
    let huge = format!(r#"{{"error":{{"code":"BadRequest","message":"{}"}}}}"#, "word ".repeat(2000));
    let error = parse_error_body(AzureService::Arm, "get feature", 400, None, huge.as_bytes());
    assert!(error.message.chars().count() <= 1001, "{}", error.message.len());

    let sas =
        "SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net&sig=abcDEF123%2B%3D&se=1700000000&skn=send";
    let cleaned = redact_secrets(sas);
    assert!(!cleaned.contains("abcDEF123"), "{cleaned}");
    let kept =
        "Resource '/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers' was not found.";
    assert_eq!(redact_secrets(kept), kept);
}
