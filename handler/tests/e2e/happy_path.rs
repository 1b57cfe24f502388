//! Done-when 1: the storage account is encrypted with the customer's key, verified; exactly one `completed` event;
//! the request log shows only the expected calls.

use crate::testbed::{APP_CLIENT_ID, CONTOSO_ACCOUNT, UAMI_ID, call_lines, contoso};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_encrypts_the_account_with_the_customer_key() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-happy-1"), "msg-happy-1");
    bed.wait_until("one completed event", |bed| !bed.events_of("completed").is_empty()).await;
    bed.wait_queue_idle().await;

    let account = bed.storage_account(CONTOSO_ACCOUNT);
    let encryption = &account["properties"]["encryption"];
    assert_eq!(encryption["keySource"], "Microsoft.Keyvault", "{account:#}");
    assert_eq!(encryption["keyvaultproperties"]["keyname"], "cmk");
    assert_eq!(encryption["identity"]["federatedIdentityClientId"], APP_CLIENT_ID);
    assert!(encryption["identity"]["userAssignedIdentity"].as_str().unwrap().eq_ignore_ascii_case(UAMI_ID));
    let current = encryption["keyvaultproperties"]["currentVersionedKeyIdentifier"].as_str().unwrap();
    assert!(current.starts_with("https://contoso-kv.vault.azure.net/keys/cmk/"), "{current}");
    // The system-assigned identity the account had is kept.
    assert!(account["identity"]["type"].as_str().unwrap().contains("SystemAssigned"), "{account:#}");

    let events = bed.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["type"], "com.cmkonboard.onboarding.completed.v1");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["subject"], "obd-happy-1");
    assert_eq!(event["data"]["currentVersionedKeyIdentifier"], current);
    assert!(bed.dead_letters().is_empty());

    let calls = call_lines(&bed.requests());
    let expected_in_order = [
        "GET management.azure.com /subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami",
        "GET graph.microsoft.com /v1.0/applications/77777777-7777-7777-7777-777777777777/federatedIdentityCredentials",
        "POST login.microsoftonline.com /22222222-2222-2222-2222-222222222222/oauth2/v2.0/token",
        "GET contoso-kv.vault.azure.net /keys/cmk",
    ];
    let mut position = 0;
    for expected in expected_in_order {
        match calls[position..].iter().position(|c| c == expected) {
            Some(found) => position += found + 1,
            None => panic!("missing or out of order: {expected}\ncalls:\n{}", calls.join("\n")),
        }
    }
    let azure_calls: Vec<&String> = calls.iter().filter(|c| !c.contains(" 127.0.0.1 ")).collect();
    let patches = azure_calls.iter().filter(|c| c.starts_with("PATCH ")).count();
    assert_eq!(patches, 1, "exactly one storage PATCH:\n{}", calls.join("\n"));
    // The PATCH's answer proves the configuration (it carries `currentVersionedKeyIdentifier`): no read-back.
    let reads = azure_calls.iter().filter(|c| c.starts_with("GET ") && c.contains("/storageAccounts/")).count();
    assert_eq!(reads, 1, "one storage read, no read-back:\n{}", calls.join("\n"));
    for call in &azure_calls {
        let host = call.split(' ').nth(1).unwrap();
        assert!(
            [
                "management.azure.com",
                "graph.microsoft.com",
                "login.microsoftonline.com",
                "contoso-kv.vault.azure.net",
                "northwind-onboarding.servicebus.windows.net"
            ]
            .contains(&host),
            "unexpected host in {call}"
        );
    }
}
