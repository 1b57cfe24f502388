//! The legacy preview registration (`CMK_REGISTER_PREVIEW_FEATURE`) works with exactly the custom role `infra/`
//! grants for it (`permissions::FEATURE_REGISTRATION_ACTIONS`) and nothing else: the handler registers the feature,
//! polls it, re-registers `Microsoft.Storage` and, while the provider is still `Registering`, reads it back. Each
//! registration is made once and then polled to `Registered` across attempts (registering again would restart it).

use azure_emulator::scenario::{RoleAssignment, RoleDefinition};
use cmk_handler::permissions::FEATURE_REGISTRATION_ACTIONS;

use crate::testbed::{contoso, sample_scenario};

const SUBSCRIPTION: &str = "/subscriptions/33333333-3333-3333-3333-333333333333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_registration_needs_only_the_infra_role() {
    let mut scenario = sample_scenario();
    let principal = scenario.function_app.as_ref().unwrap().system_assigned.principal_id.clone();
    let subscription = &mut scenario.subscriptions[0];
    subscription.providers.insert("Microsoft.Storage".into(), "NotRegistered".into());
    subscription.feature_registration_polls = 3;
    scenario.role_definitions.push(RoleDefinition {
        id: "0c2f54a3-6c0e-4b7d-9d55-7f7d1f2e3a4b".into(),
        role_name: "CMK Onboarding Preview Feature Registrar (northwind)".into(),
        description: None,
        actions: FEATURE_REGISTRATION_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
        not_actions: vec![],
        data_actions: vec![],
        not_data_actions: vec![],
        assignable_scopes: vec![SUBSCRIPTION.into()],
    });
    scenario.role_assignments.push(RoleAssignment {
        principal_id: principal,
        role: "CMK Onboarding Preview Feature Registrar (northwind)".into(),
        scope: SUBSCRIPTION.into(),
        description: None,
    });
    let bed = crate::testbed::start_with(scenario, &[("CMK_REGISTER_PREVIEW_FEATURE", "true")]).await;
    bed.send(&contoso("obd-preview"), "msg-preview");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;
    assert!(bed.dead_letters().is_empty());
    let provider_reads = bed
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/providers/Microsoft.Storage") && r.status == 200)
        .count();
    assert!(provider_reads >= 1, "the provider was read back while Registering");
    let registrations =
        |suffix: &str| bed.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with(suffix)).count();
    assert_eq!(registrations("/features/FederatedClientIdentity/register"), 1);
    assert_eq!(registrations("/providers/Microsoft.Storage/register"), 1, "registered once, then polled");
    let attempts = bed.events_of("completed")[0]["data"]["attempts"].as_u64().unwrap();
    assert!(attempts >= 3, "the registrations took several attempts: {attempts}");
    let state = bed.state();
    let subscription = &state["arm"]["subscriptions"][0];
    assert_eq!(subscription["features"]["Microsoft.Storage/FederatedClientIdentity"], "Registered");
    assert_eq!(subscription["providers"]["Microsoft.Storage"], "Registered");
}
