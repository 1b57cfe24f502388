//! Done-when 5: poison and hostile input lands in the dead-letter queue within seconds with a readable reason and a
//! `failed` event, with zero requests to any host that is not allow-listed (and, for messages that fail
//! validation, none to Azure at all besides publishing the outcome).

use std::time::Instant;

use crate::testbed::{CONTOSO_ACCOUNT, onboarding};

const CONTOSO_TENANT: &str = "22222222-2222-2222-2222-222222222222";

fn cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let with_vault = |vault: &str| onboarding("obd-hostile", CONTOSO_TENANT, CONTOSO_ACCOUNT, vault, "cmk");
    let mut unknown_version: serde_json::Value =
        serde_json::from_slice(&with_vault("https://contoso-kv.vault.azure.net/")).unwrap();
    unknown_version["schemaVersion"] = "2.0".into();
    vec![
        ("invalid-json", b"{ this is not json".to_vec(), "InvalidJson"),
        ("not-utf8", vec![0xff, 0xfe, 0x00, 0x7b], "InvalidJson"),
        ("unknown-schema", serde_json::to_vec(&unknown_version).unwrap(), "UnsupportedSchemaVersion"),
        (
            "bad-guid",
            onboarding("obd-guid", "not-a-guid", CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk"),
            "InvalidTenantId",
        ),
        (
            "outside-allow-list",
            onboarding(
                "obd-outside",
                CONTOSO_TENANT,
                "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/elsewhere",
                "https://contoso-kv.vault.azure.net/",
                "cmk",
            ),
            "StorageAccountNotAllowed",
        ),
        ("imds", with_vault("http://169.254.169.254/"), "InvalidVaultUri"),
        ("evil", with_vault("https://evil.example/"), "InvalidVaultUri"),
        ("lookalike", with_vault("https://x.vault.azure.net.evil.com/"), "InvalidVaultUri"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_dead_lettered_with_reasons_and_call_nothing() {
    let bed = crate::testbed::start().await;
    let cases = cases();
    let started = Instant::now();
    for (name, body, _) in &cases {
        bed.send(body, &format!("msg-{name}"));
    }
    bed.wait_until("every hostile message dead-lettered", |bed| bed.dead_letters().len() == cases.len()).await;
    let elapsed = started.elapsed();
    bed.wait_queue_idle().await;
    eprintln!("{} hostile messages dead-lettered in {elapsed:?}", cases.len());

    for (name, _, reason) in &cases {
        let copy = bed
            .dead_letters()
            .into_iter()
            .find(|m| {
                m.application_properties.get("cmk-original-message-id").and_then(|v| v.as_str())
                    == Some(&format!("msg-{name}"))
            })
            .unwrap_or_else(|| panic!("no dead letter for {name}"));
        assert_eq!(copy.application_properties["cmk-dead-letter-reason"], *reason, "{name}");
        let description = copy.application_properties["cmk-dead-letter-description"].as_str().unwrap();
        assert!(!description.is_empty(), "{name}: readable description");
        assert_eq!(copy.dead_letter_reason.as_deref(), Some("MaxDeliveryCountExceeded"));
    }
    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), cases.len(), "{failed:#?}");
    for (_, _, reason) in &cases {
        assert!(failed.iter().any(|e| e["data"]["reasonCode"] == *reason), "a failed event with {reason}");
    }
    // Nothing but Service Bus (events and copies): no token, no ARM, no Key Vault, and no foreign host.
    for record in bed.requests() {
        assert!(
            record.host == "northwind-onboarding.servicebus.windows.net" || record.host == "127.0.0.1",
            "unexpected request {} {}{}",
            record.method,
            record.host,
            record.path
        );
    }
}
