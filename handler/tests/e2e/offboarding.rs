//! Offboarding through the real binary: an onboarded account goes back to Microsoft-managed keys and loses our tags
//! (its other tags stay), in one PATCH, with one `offboarded` event however often the message comes; the ownership
//! guard refuses an account that another onboarding, another customer or another vault configured, and leaves it as
//! it was.

use std::collections::BTreeMap;

use azure_emulator::scenario::Change;
use serde_json::{Value, json};

use crate::testbed::{CONTOSO_ACCOUNT, CONTOSO_TENANT, FABRIKAM_TENANT, TestBed, contoso, offboarding};

async fn onboarded_contoso(onboarding_id: &str) -> TestBed {
    let bed = crate::testbed::start().await;
    // One of the ISV's own tags, which the onboarding and the offboarding keep.
    let own = BTreeMap::from([("costcenter".to_owned(), "4711".to_owned())]);
    bed.apply(vec![Change::SetStorageAccountTags { account: CONTOSO_ACCOUNT.into(), tags: own }]);
    bed.send(&contoso(onboarding_id), &format!("msg-{onboarding_id}"));
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let tags = &bed.storage_account(CONTOSO_ACCOUNT)["tags"];
    assert_eq!(tags["cmk-onboarding-id"], onboarding_id, "the onboarding wrote its tags: {tags}");
    bed
}

fn storage_patches(bed: &TestBed) -> usize {
    bed.requests().iter().filter(|r| r.method == "PATCH" && r.path.contains("/storageAccounts/")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_returns_the_account_to_microsoft_managed_keys_once() {
    let bed = onboarded_contoso("obd-off-1").await;
    let patches_before = storage_patches(&bed);

    bed.send(&offboarding("obd-off-1", CONTOSO_TENANT, CONTOSO_ACCOUNT), "msg-off-1");
    bed.wait_until("offboarded", |bed| bed.events_of("offboarded").len() == 1).await;
    bed.wait_queue_idle().await;

    let account = bed.storage_account(CONTOSO_ACCOUNT);
    let encryption = &account["properties"]["encryption"];
    assert_eq!(encryption["keySource"], "Microsoft.Storage", "{account:#}");
    assert!(encryption.get("keyvaultproperties").is_none(), "{account:#}");
    assert_eq!(account["tags"], json!({ "costcenter": "4711" }), "only our tags are removed");
    assert_eq!(storage_patches(&bed), patches_before + 1, "one PATCH: encryption and tags together");

    let event = &bed.events_of("offboarded")[0];
    assert_eq!(event["subject"], "obd-off-1");
    assert_eq!(event["customertenantid"], CONTOSO_TENANT);
    let data = &event["data"];
    assert_eq!(data["changed"], true);
    assert_eq!(data["previousKeyVaultUri"], "https://contoso-kv.vault.azure.net");
    assert_eq!(data["previousKeyName"], "cmk");
    let mut removed: Vec<&str> = data["removedTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    removed.sort_unstable();
    assert_eq!(removed, ["cmk-customer-tenant", "cmk-onboarding-id", "cmk-onboarding-order"]);

    // The same request again (a producer's retry, another MessageId): nothing left to change, and the event's id is
    // the same, so the topic keeps one.
    bed.send(&offboarding("obd-off-1", CONTOSO_TENANT, CONTOSO_ACCOUNT), "msg-off-1-again");
    bed.wait_queue_idle().await;
    assert_eq!(storage_patches(&bed), patches_before + 1, "nothing is written the second time");
    assert_eq!(bed.events_of("offboarded").len(), 1, "{:#?}", bed.events());
    assert!(bed.dead_letters().is_empty());
    assert!(bed.events_of("failed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_refuses_an_account_that_is_not_ours_and_leaves_it_alone() {
    let bed = onboarded_contoso("obd-owned").await;
    let before = bed.storage_account(CONTOSO_ACCOUNT);
    let patches_before = storage_patches(&bed);

    // Another onboarding's id, another customer, another vault: each refused, permanently, naming the reason.
    let other_vault = {
        let mut body: Value =
            serde_json::from_slice(&offboarding("obd-owned", CONTOSO_TENANT, CONTOSO_ACCOUNT)).unwrap();
        body["key"] = json!({ "vaultUri": "https://fabrikam-kv.vault.azure.net/", "name": "cmk" });
        serde_json::to_vec(&body).unwrap()
    };
    let cases = [
        (offboarding("obd-someone-else", CONTOSO_TENANT, CONTOSO_ACCOUNT), "configured by onboarding obd-owned"),
        (offboarding("obd-owned", FABRIKAM_TENANT, CONTOSO_ACCOUNT), FABRIKAM_TENANT),
        (other_vault, "fabrikam-kv.vault.azure.net"),
    ];
    for (n, (body, _)) in cases.iter().enumerate() {
        bed.send(body, &format!("msg-not-ours-{n}"));
    }
    bed.wait_until("three dead letters", |bed| bed.dead_letters().len() == cases.len()).await;
    bed.wait_queue_idle().await;

    let failed = bed.events_of("failed");
    assert_eq!(failed.len(), cases.len(), "{failed:#?}");
    for (_, names) in &cases {
        let event = failed
            .iter()
            .find(|e| e["data"]["message"].as_str().is_some_and(|m| m.contains(names)))
            .unwrap_or_else(|| panic!("no failed event naming {names}: {failed:#?}"));
        assert_eq!(event["data"]["reasonCode"], "StorageAccountNotOurs", "{event:#}");
        assert_eq!(event["data"]["storageAccountId"], CONTOSO_ACCOUNT);
    }
    for dead in bed.dead_letters() {
        assert_eq!(dead.application_properties["cmk-dead-letter-reason"], "StorageAccountNotOurs");
    }
    assert!(bed.events_of("offboarded").is_empty());
    assert_eq!(storage_patches(&bed), patches_before, "the guard writes nothing");
    assert_eq!(bed.storage_account(CONTOSO_ACCOUNT), before);
}
