//! The producer/subscriber contract in `schemas/asyncapi.yaml` agrees with the JSON Schemas, the samples, the Rust
//! types and the testbed's entities. Example payloads there are one-line JSON, which is how this test reads them.

mod support;

use cmk_handler::contract::parse_message;
use cmk_handler::events::{EventType, OnboardingEvent};
use serde_json::Value;
use support::repo_root;

fn asyncapi() -> String {
    std::fs::read_to_string(repo_root().join("schemas/asyncapi.yaml")).unwrap()
}

fn validator(relative: &str) -> jsonschema::Validator {
    let path = repo_root().join("schemas").join(relative);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the schema compiles")
}

/// The values of `key: value` lines (trimmed, quotes removed).
fn values_of<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}: ");
    text.lines()
        .filter_map(|line| line.trim().trim_start_matches("- ").strip_prefix(&prefix))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"'))
        .collect()
}

#[test]
fn file_references_resolve_to_json_schemas() {
    let text = asyncapi();
    let files: Vec<&str> = values_of(&text, "$ref").into_iter().filter(|r| !r.starts_with('#')).collect();
    assert_eq!(files.len(), 1 + EventType::ALL.len(), "the onboarding message and every event: {files:?}");
    for file in files {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("schemas").join(file.trim_start_matches("./"))).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(schema["$schema"].as_str().is_some_and(|s| s.contains("2020-12")), "{file}");
    }
}

#[test]
fn examples_validate_against_their_schemas_and_the_rust_types() {
    let text = asyncapi();
    let examples: Vec<Value> = values_of(&text, "payload")
        .into_iter()
        .filter(|v| v.starts_with('{'))
        .map(|v| serde_json::from_str(v).unwrap())
        .collect();
    assert_eq!(
        examples.len(),
        3 + EventType::ALL.len(),
        "an onboarding, one creating its account, an offboarding and one per event type"
    );
    let policy =
        cmkctl::policy::policy_from(|name| support::app_settings("http://127.0.0.1:1").get(name).cloned()).unwrap();
    let mut event_types = Vec::new();
    for example in &examples {
        match example["type"].as_str() {
            Some(kind) => {
                let name =
                    kind.trim_start_matches("com.cmkonboard.onboarding.").trim_end_matches(".v1").replace('_', "-");
                let errors: Vec<String> = validator(&format!("events/{name}.v1.schema.json"))
                    .iter_errors(example)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{kind}: {errors:?}");
                let event: OnboardingEvent = serde_json::from_value(example.clone()).expect("the Rust type reads it");
                assert_eq!(event.event_type.as_str(), kind);
                event_types.push(kind.to_owned());
            }
            None => {
                assert!(validator("onboarding-message.v1.schema.json").is_valid(example));
                parse_message(&serde_json::to_vec(example).unwrap(), &policy).expect("the handler accepts it");
            }
        }
    }
    event_types.sort();
    let mut expected: Vec<String> = EventType::ALL.iter().map(|t| t.as_str().to_owned()).collect();
    expected.sort();
    assert_eq!(event_types, expected, "one example per event type");
}

#[test]
fn channels_and_filters_match_the_deployed_entities() {
    let text = asyncapi();
    let scenario: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("samples/scenario.json")).unwrap()).unwrap();
    let namespace = &scenario["serviceBus"][0];
    let addresses = values_of(&text, "address");
    assert_eq!(
        addresses,
        [namespace["queues"][0]["name"].as_str().unwrap(), namespace["topics"][0]["name"].as_str().unwrap()]
    );
    let filters = values_of(&text, "sqlFilter");
    for subscription in namespace["topics"][0]["subscriptions"].as_array().unwrap() {
        for rule in subscription["rules"].as_array().into_iter().flatten() {
            if let Some(sql) = rule["sqlFilter"].as_str() {
                assert!(filters.contains(&sql), "the example filters include {sql:?}");
            }
        }
    }
    for kind in EventType::ALL {
        assert!(text.contains(&format!("- {}", kind.as_str())), "eventType enum lists {}", kind.as_str());
    }
}
