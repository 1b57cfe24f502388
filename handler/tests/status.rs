//! The status function's pure parts, from `tests/data/status/cases.json`: the report of an account as read (its
//! encryption, the onboarding its tags record, the watch's record), the query's validation, and the HTTP status of
//! each failure. Every report must match `schemas/status-response.v1.schema.json`.

use std::path::Path;

use cmk_handler::config::{AllowedScope, IsvIdentity};
use cmk_handler::contract::parse_status_query;
use cmk_handler::error::classify::parse_error_body;
use cmk_handler::error::{AzureService, Error};
use cmk_handler::workflow::status::{failure, report};
use serde_json::{Value, json};
use time::macros::datetime;

fn data(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(relative);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/status-response.v1.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
}

fn scopes(cases: &Value) -> Vec<AllowedScope> {
    cases["allowedScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| AllowedScope::parse(s.as_str().unwrap()).unwrap())
        .collect()
}

fn query(cases: &Value, pairs: &Value) -> Vec<(String, String)> {
    let account = cases["account"].as_str().unwrap();
    pairs
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let value = pair[1].as_str().unwrap().replace("ACCOUNT", account);
            (pair[0].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

#[test]
fn reports_say_what_the_account_shows_and_match_the_schema() {
    let cases = data("status/cases.json");
    let identity: IsvIdentity = serde_json::from_value(cases["identity"].clone()).unwrap();
    let validator = schema();
    let reports = cases["reports"].as_array().unwrap();
    assert!(reports.len() >= 6);
    for case in reports {
        let name = case["name"].as_str().unwrap();
        let mut account = data(&format!("storage/{}", case["base"].as_str().unwrap()));
        account["tags"] = case["tags"].clone();
        if let Some(source) = case["keySource"].as_str() {
            account["properties"]["encryption"]["keySource"] = json!(source);
        }
        let mut pairs = vec![("storageAccountId".to_owned(), cases["account"].as_str().unwrap().to_owned())];
        if let Some(id) = case["onboardingId"].as_str() {
            pairs.push(("onboardingId".to_owned(), id.to_owned()));
        }
        let query = parse_status_query(&pairs, &scopes(&cases)).unwrap();
        let answer = report(&account, &query, &[&identity], datetime!(2026-12-03 23:00:00 UTC));
        let json = serde_json::to_value(&answer).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{json:#}");
        assert_eq!(json["storageAccountId"], cases["account"], "{name}");
        assert_eq!(json["checkedAt"], "2026-12-03T23:00:00Z", "{name}");
        let expect = case["expect"].as_object().unwrap();
        for (field, want) in expect {
            let got = match field.as_str() {
                "throughOurIdentity" | "keyVersion" | "currentVersionedKeyIdentifier" | "keySource" => {
                    &json["encryption"][field]
                }
                "watch" if want.is_object() => {
                    for (watch_field, watch_want) in want.as_object().unwrap() {
                        assert_eq!(&json["watch"][watch_field], watch_want, "{name}: watch.{watch_field}\n{json:#}");
                    }
                    continue;
                }
                other => json.get(other).unwrap_or(&Value::Null),
            };
            assert_eq!(got, want, "{name}: {field}\n{json:#}");
        }
        if expect.get("requestedOnboarding").is_none() {
            assert_eq!(json.get("requestedOnboarding"), None, "{name}: not asked, not answered");
        }
    }
}

#[test]
fn queries_are_validated_strictly_and_never_outside_the_allowed_scopes() {
    let cases = data("status/cases.json");
    for case in cases["queries"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let result = parse_status_query(&query(&cases, &case["query"]), &scopes(&cases));
        if case["ok"] == true {
            let parsed = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(parsed.storage_account.arm_id().ends_with("/storageAccounts/contosodata"), "{name}");
            assert_eq!(parsed.onboarding_id.as_deref(), case["onboardingId"].as_str(), "{name}");
            continue;
        }
        let invalid = result.err().unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(invalid.code, case["code"].as_str().unwrap(), "{name}: {invalid}");
        assert!(!invalid.to_string().contains("secret-key"), "{name}: the function key is never echoed");
        let (status, body, retry_after) = failure(&Error::Invalid(invalid));
        assert_eq!(u64::from(status), case["http"].as_u64().unwrap(), "{name}");
        assert_eq!(body["error"]["code"], case["code"], "{name}");
        assert_eq!(retry_after, None, "{name}");
    }
}

#[test]
fn azure_failures_map_to_http_statuses() {
    let cases = data("status/cases.json");
    for case in cases["failures"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let doc = data(&format!("azure-errors/{}", case["error"].as_str().unwrap()));
        let operation: &'static str = Box::leak(doc["operation"].as_str().unwrap().to_owned().into_boxed_str());
        let error = Error::Azure(parse_error_body(
            AzureService::Arm,
            operation,
            u16::try_from(doc["status"].as_u64().unwrap()).unwrap(),
            doc["retryAfterSeconds"].as_u64().map(std::time::Duration::from_secs),
            &serde_json::to_vec(&doc["body"]).unwrap(),
        ));
        let (status, body, retry_after) = failure(&error);
        assert_eq!(u64::from(status), case["http"].as_u64().unwrap(), "{name}: {body}");
        if let Some(code) = case["code"].as_str() {
            assert_eq!(body["error"]["code"], code, "{name}");
        }
        assert_eq!(retry_after.is_some(), status == 503, "{name}: Retry-After only when trying again helps");
        if let Some(seconds) = case["retryAfter"].as_u64() {
            assert_eq!(retry_after, Some(seconds), "{name}");
        }
    }
}
