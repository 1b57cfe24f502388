//! The failures users actually hit, through the real binary under the emulated host: a vault name that does not
//! resolve, a message whose tenant does not own the vault, the preview registration, an account already encrypted
//! with another vault's key, a message too large to copy, and property names that cannot travel on a copy.

use azure_emulator::scenario::Change;
use azure_emulator::servicebus::{MessageState, NewMessage};
use serde_json::Value;

use crate::testbed::{
    CONTOSO_ACCOUNT, CONTOSO_TENANT, FABRIKAM_ACCOUNT, TestBed, contoso, onboarding, sample_scenario,
};

const ISV_TENANT: &str = "11111111-1111-1111-1111-111111111111";
const FABRIKAM_TENANT: &str = "44444444-4444-4444-4444-444444444444";

fn dead_letter_reason(message: &azure_emulator::servicebus::Message) -> Option<&str> {
    message.application_properties.get("cmk-dead-letter-reason").and_then(Value::as_str)
}

/// A vault name that does not resolve is the customer's to fix, told with the commands, and retried later; it is not
/// a network blip retried silently, nor a permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_that_does_not_exist_waits_on_the_customer() {
    let bed = crate::testbed::start().await;
    let body =
        onboarding("obd-no-vault", CONTOSO_TENANT, CONTOSO_ACCOUNT, "https://contoso-kv2.vault.azure.net/", "cmk");
    bed.send(&body, "msg-no-vault");

    bed.wait_until("action_required VaultNotFound", |bed| !bed.events_of("action_required").is_empty()).await;
    let event = &bed.events_of("action_required")[0];
    assert_eq!(event["data"]["reasonCode"], "VaultNotFound", "{event:#}");
    let missing = event["data"]["missing"].as_str().unwrap();
    assert!(missing.contains("contoso-kv2"), "{missing}");
    assert!(event["data"]["actions"].to_string().contains("az keyvault create --name contoso-kv2"), "{event:#}");
    bed.wait_until("the next attempt scheduled", |bed| {
        bed.queue().iter().any(|m| m.application_properties.contains_key("cmk-attempt"))
    })
    .await;
    assert!(bed.dead_letters().is_empty());
    assert!(bed.events_of("failed").is_empty());
    let lookups = bed.requests().iter().filter(|r| r.host == "contoso-kv2.vault.azure.net").count();
    assert!(lookups >= 1, "the vault was looked up");
    assert_eq!(
        bed.requests().iter().filter(|r| r.path.contains("/oauth2/")).count(),
        0,
        "no token is fetched for a vault that does not exist"
    );
}

/// The message names the ISV's own tenant for the customer's vault: the vault's challenge says it belongs to another
/// tenant, so no token is fetched or sent, and the outcome is permanent with both tenants named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_of_another_tenant_never_gets_a_token() {
    let bed = crate::testbed::start().await;
    let body =
        onboarding("obd-wrong-tenant", ISV_TENANT, CONTOSO_ACCOUNT, "https://contoso-kv.vault.azure.net/", "cmk");
    bed.send(&body, "msg-wrong-tenant");

    bed.wait_until("dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    bed.wait_queue_idle().await;
    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["reasonCode"], "VaultTenantMismatch");
    let message = failed[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains(ISV_TENANT) && message.contains(CONTOSO_TENANT), "{message}");
    assert_eq!(dead_letter_reason(&bed.dead_letters()[0]), Some("VaultTenantMismatch"));

    let requests = bed.requests();
    let vault_calls: Vec<_> = requests.iter().filter(|r| r.host == "contoso-kv.vault.azure.net").collect();
    assert_eq!(vault_calls.len(), 1, "only the unauthenticated challenge");
    assert_eq!(vault_calls[0].status, 401);
    assert!(!requests.iter().any(|r| r.path.contains("/oauth2/v2.0/token")), "no customer-tenant token was requested");
    assert!(bed.storage_account(CONTOSO_ACCOUNT)["properties"]["encryption"]["keySource"] != "Microsoft.Keyvault");
}

/// An account already encrypted with a key in another vault is not re-keyed unless the message asks; asked, it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_using_another_vault_is_only_rekeyed_when_asked() {
    let bed = crate::testbed::start().await;
    bed.send(&contoso("obd-owner-1"), "msg-owner-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    let fixes: Vec<Change> = serde_json::from_slice(
        &std::fs::read(crate::testbed::repo_root().join("samples/customer-fixes.json")).unwrap(),
    )
    .unwrap();
    bed.apply(fixes);
    // Fabrikam's key consents to Contoso's account too: what is refused here is re-keying, not the key.
    let consent = [
        ("cmk-consent-fabrikamdata".to_owned(), FABRIKAM_ACCOUNT.to_owned()),
        ("cmk-consent-contosodata".to_owned(), CONTOSO_ACCOUNT.to_owned()),
    ];
    bed.apply(vec![Change::SetKeyTags { vault: "fabrikam-kv".into(), key: "cmk".into(), tags: consent.into() }]);
    // The customer's fixes (app installed, role granted) reach Entra and Key Vault after their propagation delays.
    bed.advance_clock(std::time::Duration::from_secs(azure_emulator::propagation::ROLE_ASSIGNMENT_SECONDS)).await;

    let fabrikam_vault = "https://fabrikam-kv.vault.azure.net/";
    bed.send(&onboarding("obd-owner-2", FABRIKAM_TENANT, CONTOSO_ACCOUNT, fabrikam_vault, "cmk"), "msg-owner-2");
    bed.wait_until("refused", |bed| bed.events_of("failed").len() == 1).await;
    let failed = &bed.events_of("failed")[0];
    assert_eq!(failed["data"]["reasonCode"], "StorageAccountUsesAnotherKey");
    let reason = failed["data"]["message"].as_str().unwrap();
    assert!(
        reason.contains("contoso-kv.vault.azure.net") && reason.contains("fabrikam-kv.vault.azure.net"),
        "{reason}"
    );
    assert!(reason.contains("replaceExistingKey"), "{reason}");
    let key_vault_uri = |bed: &TestBed| {
        bed.storage_account(CONTOSO_ACCOUNT)["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(key_vault_uri(&bed), "https://contoso-kv.vault.azure.net");

    let mut replace: Value =
        serde_json::from_slice(&onboarding("obd-owner-3", FABRIKAM_TENANT, CONTOSO_ACCOUNT, fabrikam_vault, "cmk"))
            .unwrap();
    replace["replaceExistingKey"] = true.into();
    bed.send(&serde_json::to_vec(&replace).unwrap(), "msg-owner-3");
    bed.wait_until("re-keyed", |bed| bed.events_of("completed").len() == 2).await;
    assert_eq!(key_vault_uri(&bed), "https://fabrikam-kv.vault.azure.net");
    let patches = bed.requests().iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches, 2, "one PATCH per completed onboarding, none for the refused one");
}

/// A 1 MB message on a Premium queue (1 MB per message): the `failed` event goes out, no copy of it fits, so the
/// original itself is dead-lettered, byte for byte, next to a reason record that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_to_copy_reaches_the_dlq_with_its_body_and_its_reason() {
    let mut scenario: Value = serde_json::to_value(sample_scenario()).unwrap();
    scenario["serviceBus"][0]["queues"][0]["maxMessageSizeInKilobytes"] = 1024.into();
    let bed = crate::testbed::start_with(serde_json::from_value(scenario).unwrap(), &[]).await;
    // The original fits with 100 bytes to spare; a copy adds more than that in properties.
    let with_padding = |length: usize| {
        let mut message: Value = serde_json::from_slice(&contoso("obd-huge")).unwrap();
        message["padding"] = "p".repeat(length).into();
        let mut huge = NewMessage::new(serde_json::to_vec(&message).unwrap());
        huge.message_id = Some("msg-huge".into());
        huge.session_id = Some("contosodata".into());
        huge.application_properties.insert("tenant-tier".into(), "gold".into());
        huge
    };
    let limit = 1024 * 1024;
    let huge = with_padding(limit - 100 - with_padding(0).size());
    assert_eq!(huge.size(), limit - 100);
    let body = huge.body.clone();
    bed.send_message(huge);

    bed.wait_until("the original and its reason record dead-lettered", |bed| bed.dead_letters().len() == 2).await;
    bed.wait_queue_idle().await;
    let dead = bed.dead_letters();
    let original = dead.iter().find(|m| m.message_id.as_deref() == Some("msg-huge")).expect("the original");
    assert_eq!(original.body, body, "the body is intact");
    assert_eq!(original.application_properties.get("tenant-tier"), Some(&Value::from("gold")));
    assert_eq!(original.dead_letter_reason.as_deref(), Some("MaxDeliveryCountExceeded"));
    let record = dead.iter().find(|m| m.message_id.as_deref() != Some("msg-huge")).expect("the reason record");
    assert_eq!(dead_letter_reason(record), Some("MessageTooLarge"));
    let pairs = record.application_properties.get("cmk-reason-for-sequence-number");
    assert_eq!(pairs, Some(&Value::from(original.sequence_number)), "{:#?}", record.application_properties);
    assert_eq!(record.application_properties.get("cmk-original-message-id"), Some(&Value::from("msg-huge")));
    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), 1, "one failed event, however many deliveries: {failed:#?}");
    assert_eq!(failed[0]["data"]["reasonCode"], "MessageTooLarge");
}

/// Application properties that cannot be (or must not be) HTTP headers stay behind; the copy carries the rest, and
/// the message still reaches the dead-letter queue with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_that_cannot_travel_on_a_copy_are_left_behind() {
    let bed = crate::testbed::start().await;
    let mut poison = NewMessage::new(b"{ not json".to_vec());
    poison.message_id = Some("msg-odd-properties".into());
    poison.session_id = Some("no-account".into());
    for (name, value) in [
        ("BrokerProperties", "{\"MessageId\":\"x\"}"),
        ("Content-Type", "text/plain"),
        ("Authorization", "Bearer nope"),
        ("has space", "x"),
        ("colon:name", "x"),
        ("cmk-dead-letter-description", "forged"),
        ("tenant-tier", "gold"),
    ] {
        poison.application_properties.insert(name.into(), value.into());
    }
    bed.send_message(poison);

    bed.wait_until("dead-lettered", |bed| bed.dead_letters().len() == 1).await;
    bed.wait_queue_idle().await;
    let copy = &bed.dead_letters()[0];
    assert_eq!(dead_letter_reason(copy), Some("InvalidJson"));
    let names: Vec<&str> = copy.application_properties.keys().map(String::as_str).collect();
    assert!(names.contains(&"tenant-tier"), "{names:?}");
    for dropped in ["brokerproperties", "content-type", "authorization", "has space", "colon:name"] {
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case(dropped)), "{dropped} travelled: {names:?}");
    }
    let description = copy.application_properties["cmk-dead-letter-description"].as_str().unwrap();
    assert_ne!(description, "forged");
    assert_eq!(bed.host().status()["invocations"]["failed"], 10, "only the copy's fail-fast deliveries failed");
}

/// Duplicate member names and a `requestedAt` far in the future are invalid messages: dead-lettered with their
/// reason before anything is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_future_messages_are_invalid() {
    let bed = crate::testbed::start().await;
    let duplicate = format!(
        r#"{{"schemaVersion":"1.0","onboardingId":"obd-dup","requestedAt":"2026-11-29T10:00:00Z","customer":{{"tenantId":"{CONTOSO_TENANT}"}},"storageAccount":{{"resourceId":"{CONTOSO_ACCOUNT}"}},"key":{{"vaultUri":"https://contoso-kv.vault.azure.net/","name":"cmk","vaultUri":"https://fabrikam-kv.vault.azure.net/"}}}}"#
    );
    bed.send(duplicate.as_bytes(), "msg-duplicate");
    let mut future: Value = serde_json::from_slice(&contoso("obd-future")).unwrap();
    future["requestedAt"] = "9999-12-31T23:59:59Z".into();
    bed.send(&serde_json::to_vec(&future).unwrap(), "msg-future");

    bed.wait_until("both dead-lettered", |bed| bed.dead_letters().len() == 2).await;
    let mut reasons: Vec<_> = bed.dead_letters().iter().filter_map(dead_letter_reason).map(str::to_owned).collect();
    reasons.sort();
    assert_eq!(reasons, ["InvalidJson", "InvalidRequestedAt"]);
    assert!(bed.requests().iter().all(|r| r.host.ends_with(".servicebus.windows.net") || r.host == "127.0.0.1"));
    assert!(bed.queue().iter().all(|m| m.state != MessageState::Scheduled));
}

/// `ensure` mode writes the missing federated credential; Entra does not honour it yet (AADSTS70021 for five emulated
/// minutes). That is propagation, not misconfiguration: the attempts are retried, also by a restarted handler (the
/// credential's description carries when the handler wrote it), and the onboarding completes once it propagated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_just_written_is_waited_for_not_dead_lettered() {
    let mut scenario = sample_scenario();
    scenario.applications[0].federated_identity_credentials.clear();
    let bed = crate::testbed::start_with(scenario, &[("CMK_FIC_MODE", "ensure")]).await;
    // The sample scenario keeps Entra's default propagation delay for federated credentials.
    let propagation = std::time::Duration::from_secs(azure_emulator::propagation::FEDERATED_CREDENTIAL_SECONDS);
    bed.send(&contoso("obd-propagating"), "msg-propagating");

    let propagating = |bed: &TestBed| {
        bed.host().handler_output().iter().filter(|line| line.contains("FederatedCredentialPropagating")).count()
    };
    bed.wait_until("an attempt waiting for the credential to propagate", |bed| propagating(bed) >= 1).await;
    // A new process knows nothing of what the old one did, except what the credential itself says.
    bed.host().kill_handler();
    let before = propagating(&bed);
    bed.wait_until("the restarted handler waiting too", |bed| propagating(bed) > before).await;
    assert!(bed.events_of("failed").is_empty() && bed.dead_letters().is_empty(), "not dead-lettered");

    let shared = bed.emulator.shared();
    shared.clock.advance(propagation);
    shared.bus.clock_advanced();
    bed.wait_until("completed", |bed| !bed.events_of("completed").is_empty()).await;
    let world = shared.world.lock().unwrap();
    let app = world.directory.application_by_object_id("77777777-7777-7777-7777-777777777777").unwrap();
    assert_eq!(app.federated_identity_credentials.len(), 1, "written once: {:#?}", app.federated_identity_credentials);
    let description = app.federated_identity_credentials[0].description.clone().unwrap_or_default();
    assert!(description.contains("written by the CMK onboarding handler at "), "{description}");
}
