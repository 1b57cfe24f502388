//! Property names on the wire: the names infra's subscription filters and the AsyncAPI document use are exactly the
//! names the handler's events carry as Service Bus stores them (lowercase: over REST a property is an HTTP header,
//! and HTTP/1 writes header names lowercase), and each example subscription receives exactly its event type.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::testbed::{FABRIKAM_ACCOUNT, FABRIKAM_TENANT, NAMESPACE, contoso, onboarding, repo_root};

/// The property names a SQL filter expression compares: the identifier before each `=`.
fn sql_filter_names(expression: &str) -> Vec<String> {
    expression.split(" AND ").filter_map(|clause| clause.split('=').next()).map(|n| n.trim().to_owned()).collect()
}

/// Every `sqlExpression` of `infra/modules/servicebus.bicep` (Bicep string literals).
fn infra_filter_names() -> BTreeSet<String> {
    let bicep = std::fs::read_to_string(repo_root().join("infra/modules/servicebus.bicep")).unwrap();
    let expressions: Vec<&str> =
        bicep.lines().filter_map(|line| line.trim().strip_prefix("sqlExpression: '")).collect();
    assert!(!expressions.is_empty(), "infra defines subscription filters");
    expressions.iter().flat_map(|e| sql_filter_names(e)).collect()
}

/// The property names the AsyncAPI document promises: the event application properties, and those its example
/// subscriptions filter on.
fn asyncapi_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("schemas/asyncapi.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    // Keys one level below `key:` found at or after `start`.
    let children = |start: usize, key: &str| -> Vec<String> {
        let at = (start..lines.len()).find(|&i| lines[i].trim() == key).unwrap_or_else(|| panic!("{key} in asyncapi"));
        let child_indent = indent(lines[at + 1]);
        lines[at + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) >= child_indent)
            .filter(|l| indent(l) == child_indent)
            .filter_map(|l| l.trim().split(':').next().map(str::to_owned))
            .collect()
    };
    let schema = lines.iter().position(|l| l.trim() == "EventApplicationProperties:").expect("the schema");
    let mut names: BTreeSet<String> = children(schema, "properties:").into_iter().collect();
    for line in &lines {
        if let Some(filter) = line.trim().strip_prefix("sqlFilter: ") {
            names.extend(sql_filter_names(filter.trim_matches('"')));
        }
    }
    let correlation = lines.iter().position(|l| l.trim() == "correlationFilter:").expect("a correlation filter");
    names.extend(children(correlation, "properties:"));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_contract_name_exactly_what_the_handler_puts_on_the_wire() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-names-completed"), "msg-names-completed");
    let waiting =
        onboarding("obd-names-waiting", FABRIKAM_TENANT, FABRIKAM_ACCOUNT, "https://fabrikam-kv.vault.azure.net/", "k");
    bed.send(&waiting, "msg-names-waiting");
    bed.send(b"{ not json", "msg-names-failed");
    bed.wait_until("one event of each type", |bed| {
        ["completed", "action_required", "failed"].iter().all(|kind| !bed.events_of(kind).is_empty())
    })
    .await;

    let infra = infra_filter_names();
    let contract = asyncapi_names();
    assert!(infra.contains("eventtype"), "{infra:?}");
    assert!(contract.is_superset(&infra), "AsyncAPI documents every name infra filters on: {contract:?} {infra:?}");
    let events = bed.peek(crate::testbed::ALL_EVENTS);
    assert_eq!(events.len(), 3);
    for event in &events {
        let on_the_wire: BTreeSet<&str> = event.application_properties.keys().map(String::as_str).collect();
        let envelope: Value = serde_json::from_slice(&event.body).unwrap();
        // Exactly, case included: a filter on `eventType` would never match a stored `eventtype`. The tenant is there
        // when the event knows it (not for a message too broken to tell).
        for name in infra.union(&contract) {
            let expected = name != "customertenantid" || envelope.get("customertenantid").is_some();
            assert_eq!(on_the_wire.contains(name.as_str()), expected, "{name} on {on_the_wire:?}");
        }
        assert!(!on_the_wire.iter().any(|n| n.eq_ignore_ascii_case("traceparent")), "{on_the_wire:?}");
    }

    // The sample subscriptions (the emulator's copy of infra's) each receive exactly their type.
    for (subscription, kind) in
        [("completed", "completed"), ("action-required", "action_required"), ("failed", "failed")]
    {
        let received: Vec<Value> = bed
            .emulator
            .shared()
            .bus
            .peek(NAMESPACE, &format!("onboarding-events/subscriptions/{subscription}"), 0, 100)
            .unwrap()
            .iter()
            .map(|m| serde_json::from_slice(&m.body).unwrap())
            .collect();
        assert!(!received.is_empty(), "{subscription} received nothing");
        let suffix = format!(".{kind}.v1");
        assert!(
            received.iter().all(|e| e["type"].as_str().unwrap().ends_with(&suffix)),
            "{subscription}: {received:#?}"
        );
    }
}
