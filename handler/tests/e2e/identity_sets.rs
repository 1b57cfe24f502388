//! An onboarding that names another configured identity set uses that set's CMK identity and app end to end:
//! its own federated credential, its own exchange token, its own `federatedIdentityClientId` on the account.

use azure_emulator::scenario::{
    Application, FederatedIdentityCredential, ManagedIdentity, RoleAssignment, ServicePrincipal,
};

use crate::testbed::{CONTOSO_ACCOUNT, sample_scenario};

const EU_UAMI: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami-eu";
const EU_UAMI_CLIENT: &str = "dddddddd-dddd-dddd-dddd-dddddddddddd";
const EU_UAMI_PRINCIPAL: &str = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee";
const EU_APP_OBJECT: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";
const EU_APP_CLIENT: &str = "12121212-1212-1212-1212-121212121212";
const EU_SP: &str = "13131313-1313-1313-1313-131313131313";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_identity_set_uses_its_own_identity_and_app() {
    let mut scenario = sample_scenario();
    scenario.managed_identities.push(ManagedIdentity {
        resource_id: EU_UAMI.into(),
        client_id: EU_UAMI_CLIENT.into(),
        principal_id: EU_UAMI_PRINCIPAL.into(),
        tenant_id: "11111111-1111-1111-1111-111111111111".into(),
        location: "westeurope".into(),
    });
    scenario.function_app.as_mut().unwrap().user_assigned.push(EU_UAMI.into());
    // As infra/README.md says for extra identity sets: the function app needs Managed Identity Operator on each.
    scenario.role_assignments.push(RoleAssignment {
        principal_id: scenario.function_app.as_ref().unwrap().system_assigned.principal_id.clone(),
        role: "Managed Identity Operator".into(),
        scope: EU_UAMI.into(),
        description: None,
    });
    scenario.applications.push(Application {
        object_id: EU_APP_OBJECT.into(),
        app_id: EU_APP_CLIENT.into(),
        tenant_id: "11111111-1111-1111-1111-111111111111".into(),
        display_name: "northwind-cmk-eu".into(),
        sign_in_audience: "AzureADMultipleOrgs".into(),
        federated_identity_credentials: vec![FederatedIdentityCredential {
            id: None,
            name: "cmk-cmk-uami-eu".into(),
            issuer: "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0".into(),
            subject: EU_UAMI_PRINCIPAL.into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
            description: None,
        }],
    });
    scenario.service_principals.push(ServicePrincipal {
        id: EU_SP.into(),
        app_id: EU_APP_CLIENT.into(),
        tenant_id: "22222222-2222-2222-2222-222222222222".into(),
        account_enabled: true,
    });
    scenario.vaults[0].role_assignments.push(RoleAssignment {
        principal_id: EU_SP.into(),
        role: "Key Vault Crypto Service Encryption User".into(),
        scope: "/".into(),
        description: None,
    });
    let sets = serde_json::json!({ "eu": {
        "uamiResourceId": EU_UAMI, "uamiClientId": EU_UAMI_CLIENT, "appClientId": EU_APP_CLIENT, "appObjectId": EU_APP_OBJECT
    }})
    .to_string();
    let bed = crate::testbed::start_with(scenario, &[("CMK_IDENTITY_SETS", &sets)]).await;

    let mut body: serde_json::Value = serde_json::from_slice(&crate::testbed::contoso("obd-eu")).unwrap();
    body["isvIdentity"] = "eu".into();
    bed.send(&serde_json::to_vec(&body).unwrap(), "msg-eu");
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;

    let account = bed.storage_account(CONTOSO_ACCOUNT);
    let encryption = &account["properties"]["encryption"]["identity"];
    assert_eq!(encryption["federatedIdentityClientId"], EU_APP_CLIENT, "{account:#}");
    assert!(encryption["userAssignedIdentity"].as_str().unwrap().eq_ignore_ascii_case(EU_UAMI));
    let event = &bed.events_of("completed")[0];
    assert_eq!(event["data"]["federatedIdentityClientId"], EU_APP_CLIENT);
}
