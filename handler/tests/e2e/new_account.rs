//! Issue 13, a new account encrypted from the start (decision 29), through the real binary: an onboarding with
//! `create` makes the missing account with the customer's key, identity and tags from its first PUT and publishes one
//! `completed`; the same message again writes nothing; a creation longer than an invocation is finished by the
//! redelivery; a name held elsewhere in Azure, or an existing account that is not the one asked for, is dead-lettered
//! with its reason and nothing is written.

use std::collections::BTreeMap;
use std::time::Duration;

use azure_emulator::scenario::Change;
use serde_json::{Value, json};

use crate::testbed::{CONTOSO_ACCOUNT, CONTOSO_TENANT, ONE_KEY_MANY_ACCOUNTS, TestBed, onboarding, sample_scenario};

const GROUP: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers";

fn account_id(name: &str) -> String {
    format!("{GROUP}/providers/Microsoft.Storage/storageAccounts/{name}")
}

/// Contoso's onboarding of a new account `name`, created in West Europe as StorageV2 / Standard_LRS.
fn create_message(id: &str, name: &str, location: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&onboarding(
        id,
        CONTOSO_TENANT,
        &account_id(name),
        "https://contoso-kv.vault.azure.net/",
        "cmk",
    ))
    .unwrap();
    body["schemaVersion"] = json!("1.2");
    body["create"] = json!({ "location": location, "sku": "Standard_LRS", "kind": "StorageV2" });
    serde_json::to_vec(&body).unwrap()
}

/// Contoso's key consents to the new account too (decision 28), next to its consent for contosodata.
fn consent_to(bed: &TestBed, name: &str) {
    let tags = BTreeMap::from([
        ("cmk-consent-contosodata".to_owned(), CONTOSO_ACCOUNT.to_owned()),
        (format!("cmk-consent-{name}"), account_id(name)),
    ]);
    bed.apply(vec![Change::SetKeyTags { vault: "contoso-kv".into(), key: "cmk".into(), tags }]);
}

fn puts(bed: &TestBed) -> usize {
    bed.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("/storageAccounts/")).count()
}

fn storage_writes(bed: &TestBed) -> usize {
    bed.requests()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH") && r.path.contains("/storageAccounts/"))
        .count()
}

fn assert_created_encrypted(bed: &TestBed, name: &str, onboarding_id: &str) {
    let account = bed.storage_account(&account_id(name));
    assert_eq!(account["properties"]["provisioningState"], "Succeeded", "{account:#}");
    assert_eq!((account["location"].as_str(), account["kind"].as_str()), (Some("westeurope"), Some("StorageV2")));
    assert_eq!(account["sku"]["name"], "Standard_LRS");
    let encryption = &account["properties"]["encryption"];
    assert_eq!(encryption["keySource"], "Microsoft.Keyvault", "{account:#}");
    assert_eq!(encryption["keyvaultproperties"]["keyvaulturi"], "https://contoso-kv.vault.azure.net");
    let kid = encryption["keyvaultproperties"]["currentVersionedKeyIdentifier"].as_str().unwrap();
    assert!(kid.starts_with("https://contoso-kv.vault.azure.net/keys/cmk/"), "{kid}");
    assert_eq!(encryption["identity"]["federatedIdentityClientId"], crate::testbed::APP_CLIENT_ID);
    let tags = &account["tags"];
    assert_eq!(tags["cmk-onboarding-id"], onboarding_id, "{tags}");
    assert_eq!(tags["cmk-customer-tenant"], CONTOSO_TENANT);
    assert!(tags["cmk-onboarding-order"].as_str().is_some_and(|o| o.contains('#')), "{tags}");

    let completed = bed.events_of("completed");
    assert_eq!(completed.len(), 1, "{completed:#?}");
    let data = &completed[0]["data"];
    assert_eq!(data["storageAccountId"], account_id(name));
    assert_eq!(data["currentVersionedKeyIdentifier"], kid);
    assert!(bed.dead_letters().is_empty());
    assert!(bed.events_of("failed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_account_is_created_encrypted_once() {
    let bed = crate::testbed::start().await;
    consent_to(&bed, "contosonew");
    bed.send(&create_message("obd-new-1", "contosonew", "westeurope"), "msg-new-1");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    assert_created_encrypted(&bed, "contosonew", "obd-new-1");
    assert_eq!(puts(&bed), 1, "one PUT created it");
    assert_eq!(storage_writes(&bed), 1, "and nothing else was written: the PUT carried the key and the tags");
    let polls = bed.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/operations/")).count();
    assert!(polls >= 1, "the creation was followed to its end");

    // The same onboarding again (a producer's retry, another MessageId): the account is there and right, so it is
    // not created again; the message is a later one of the same onboarding, so at most the order tag is rewritten
    // (decision 22), and the `completed` event has the same id (the topic keeps one).
    let before = bed.storage_account(&account_id("contosonew"));
    bed.send(&create_message("obd-new-1", "contosonew", "westeurope"), "msg-new-1-again");
    bed.wait_until("the second delivery handled", |bed| {
        bed.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/storageAccounts/contosonew")).count()
            >= 2
    })
    .await;
    bed.wait_queue_idle().await;
    assert_eq!(puts(&bed), 1, "no second PUT");
    let patches = bed.requests().iter().filter(|r| r.method == "PATCH").count();
    assert!(patches <= 1, "at most the tags PATCH, got {patches}");
    let after = bed.storage_account(&account_id("contosonew"));
    assert_eq!(after["properties"]["encryption"], before["properties"]["encryption"], "the encryption is untouched");
    assert!(bed.events_of("superseded").is_empty(), "{:#?}", bed.events());
    assert_created_encrypted(&bed, "contosonew", "obd-new-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_longer_than_an_invocation_is_finished_by_the_redelivery() {
    // Creating takes ten minutes of the emulator's clock; the attempt's budget (5 s) cannot wait out even one
    // Retry-After (17 s), so the first attempt ends with its account still Creating and schedules a retry copy.
    // (Ten minutes, not more: moving the clock by an hour would expire the handler's cached tokens.)
    let mut scenario = sample_scenario();
    scenario.storage_account_creation_seconds = Some(600);
    let bed = crate::testbed::start_with(scenario, &[("CMK_RETRY_BUDGET_SECONDS", "5")]).await;
    consent_to(&bed, "contososlow");
    bed.send(&create_message("obd-slow-1", "contososlow", "westeurope"), "msg-slow-1");
    bed.wait_until("the PUT accepted and a later attempt finding the account still Creating", |bed| {
        puts(bed) == 1
            && bed
                .requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with("/storageAccounts/contososlow"))
                .count()
                >= 2
    })
    .await;
    assert!(bed.events_of("completed").is_empty(), "not done while the account is being created");
    assert!(bed.dead_letters().is_empty());

    bed.advance_clock(Duration::from_secs(600)).await;
    bed.wait_until("completed after the creation ended", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    assert_created_encrypted(&bed, "contososlow", "obd-slow-1");
    assert_eq!(puts(&bed), 1, "the redelivery did not create it again");
    assert_eq!(storage_writes(&bed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_or_another_account_by_that_name_is_dead_lettered_with_its_reason() {
    let mut scenario = sample_scenario();
    scenario.taken_storage_account_names = vec!["contosotaken".into()];
    // The key protects more than one account here; consent is tested above.
    let bed = crate::testbed::start_with(scenario, &[ONE_KEY_MANY_ACCOUNTS]).await;
    let before = bed.storage_account(CONTOSO_ACCOUNT);
    bed.send(&create_message("obd-taken", "contosotaken", "westeurope"), "msg-taken");
    // contosodata exists in West Europe: asking to create it in East US is not silently taken for it.
    bed.send(&create_message("obd-differs", "contosodata", "eastus"), "msg-differs");
    bed.wait_until("two dead letters", |bed| bed.dead_letters().len() == 2).await;
    bed.wait_queue_idle().await;

    let reasons: BTreeMap<String, String> = bed
        .events_of("failed")
        .iter()
        .map(|e| (e["subject"].as_str().unwrap().to_owned(), e["data"]["reasonCode"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(reasons["obd-taken"], "StorageAccountNameTaken", "{reasons:?}");
    assert_eq!(reasons["obd-differs"], "StorageAccountDiffers", "{reasons:?}");
    let messages: Vec<String> =
        bed.events_of("failed").iter().map(|e| e["data"]["message"].as_str().unwrap().to_owned()).collect();
    assert!(messages.iter().any(|m| m.contains("contosotaken is already taken")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("eastus")), "{messages:?}");
    let mut dead: Vec<String> = bed
        .dead_letters()
        .iter()
        .map(|d| d.application_properties["cmk-dead-letter-reason"].as_str().unwrap().to_owned())
        .collect();
    dead.sort();
    assert_eq!(dead, ["StorageAccountDiffers", "StorageAccountNameTaken"]);

    assert_eq!(puts(&bed), 1, "only the taken name was tried");
    assert_eq!(storage_writes(&bed), 1);
    assert!(find_account(&bed, "contosotaken").is_none(), "nothing was created");
    assert_eq!(bed.storage_account(CONTOSO_ACCOUNT), before, "the existing account is left as it was");
    assert!(bed.events_of("completed").is_empty());
}

fn find_account(bed: &TestBed, name: &str) -> Option<Value> {
    crate::testbed::find_by_id(&bed.state()["arm"], &account_id(name))
}

/// The calls of a new account's onboarding once the process is warm (tokens, identity chain and the vault's tenant
/// cached by an earlier onboarding): Key Vault GET key ‖ ARM GET account (404), wrapKey, unwrapKey, the PUT, the
/// operation's polls (one here: the creation takes 2 s and its `Retry-After` says so), the event. README, calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_a_new_account_in_steady_state() {
    let bed = crate::testbed::start().await;
    bed.send(&crate::testbed::contoso("obd-warm"), "msg-warm");
    bed.wait_until("the warm-up completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let warm = bed.requests().iter().map(|r| r.seq).max().unwrap_or_default();

    consent_to(&bed, "contosofresh");
    bed.send(&create_message("obd-fresh", "contosofresh", "westeurope"), "msg-fresh");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 2).await;
    bed.wait_queue_idle().await;
    let records: Vec<_> = bed.requests().into_iter().filter(|r| r.seq > warm && r.host != "127.0.0.1").collect();
    let calls = crate::testbed::call_lines(&records);
    let shape: Vec<String> = calls
        .iter()
        .map(|c| {
            let c = c.replace("/subscriptions/33333333-3333-3333-3333-333333333333", "/subscriptions/{s}");
            match c.find("/operations/") {
                Some(at) => format!("{}/operations/{{id}}", &c[..at]),
                None => match c.find("/keys/cmk/") {
                    Some(at) => format!("{}/keys/cmk/{{version}}/{}", &c[..at], c.rsplit('/').next().unwrap()),
                    None => c,
                },
            }
        })
        .collect();
    println!("calls of a new account's onboarding, steady state ({}):\n{}", calls.len(), shape.join("\n"));
    let mut sorted = shape.clone();
    sorted.sort();
    let account =
        "/subscriptions/{s}/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/contosofresh";
    let mut expected = vec![
        "GET contoso-kv.vault.azure.net /keys/cmk".to_owned(),
        format!("GET management.azure.com {account}"),
        "POST contoso-kv.vault.azure.net /keys/cmk/{version}/wrapkey".to_owned(),
        "POST contoso-kv.vault.azure.net /keys/cmk/{version}/unwrapkey".to_owned(),
        format!("PUT management.azure.com {account}"),
        "GET management.azure.com /subscriptions/{s}/providers/Microsoft.Storage/operations/{id}".to_owned(),
        "POST northwind-onboarding.servicebus.windows.net /onboarding-events/messages".to_owned(),
    ];
    expected.sort();
    assert_eq!(sorted, expected, "{}", shape.join("\n"));
    assert!(shape[..2].iter().any(|c| c.contains("/keys/cmk")), "the storage read runs beside the key checks");
}

/// `samples/onboarding-new-account.json` (docs/integrating.md) does what it says once the key consents to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_account_sample_creates_its_account() {
    let bed = crate::testbed::start().await;
    consent_to(&bed, "contosoarchive");
    bed.send(&crate::testbed::sample_message("onboarding-new-account.json"), "sample-new-account");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let account = bed.storage_account(&account_id("contosoarchive"));
    assert_eq!(account["sku"]["name"], "Standard_ZRS", "{account:#}");
    assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
    assert_eq!(account["tags"]["cmk-onboarding-id"], "obd-2026-0004");
}

fn fault_on(
    method: &str,
    path_contains: &str,
    action: azure_emulator::faults::FaultAction,
) -> azure_emulator::faults::FaultRule {
    azure_emulator::faults::FaultRule {
        matcher: azure_emulator::faults::FaultMatch {
            host: Some("management.azure.com".into()),
            method: Some(method.into()),
            path_contains: Some(path_contains.into()),
        },
        action,
        times: Some(1),
        probability: None,
        seed: None,
    }
}

/// The PUT's connection reset before Azure saw it, and the operation's poll answered 503 once: both retried in the
/// invocation, one account created, one `completed`. An Azure Policy refusing the account is permanent, with its
/// reason, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_rides_out_faults_and_a_policy_refusal_is_dead_lettered() {
    use azure_emulator::faults::FaultAction;
    let bed = crate::testbed::start_with(sample_scenario(), &[ONE_KEY_MANY_ACCOUNTS]).await;
    let faults = &bed.emulator.shared().faults;
    faults.add(fault_on("PUT", "/storageAccounts/contosofaulty", FaultAction::Reset { reset: true })).unwrap();
    let unavailable = FaultAction::Respond {
        status: 503,
        retry_after: None,
        error_code: Some("ServiceUnavailable".into()),
        message: None,
    };
    faults.add(fault_on("GET", "/providers/Microsoft.Storage/operations/", unavailable)).unwrap();
    let policy = FaultAction::Respond {
        status: 403,
        retry_after: None,
        error_code: Some("RequestDisallowedByPolicy".into()),
        message: Some("Resource 'contosodenied' was disallowed by policy.".into()),
    };
    faults.add(fault_on("PUT", "/storageAccounts/contosodenied", policy)).unwrap();

    bed.send(&create_message("obd-faulty", "contosofaulty", "westeurope"), "msg-faulty");
    bed.send(&create_message("obd-denied", "contosodenied", "westeurope"), "msg-denied");
    bed.wait_until("one completed, one dead letter", |bed| {
        bed.events_of("completed").len() == 1 && bed.dead_letters().len() == 1
    })
    .await;
    bed.wait_queue_idle().await;
    assert!(faults.list().iter().all(|f| f.fired == 1), "every fault fired once: {:#?}", faults.list());

    let account = bed.storage_account(&account_id("contosofaulty"));
    assert_eq!(account["properties"]["encryption"]["keySource"], "Microsoft.Keyvault", "{account:#}");
    assert_eq!(bed.events_of("completed")[0]["subject"], "obd-faulty");
    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["data"]["reasonCode"], "RequestDisallowedByPolicy");
    assert!(find_account(&bed, "contosodenied").is_none(), "nothing was created");
}
