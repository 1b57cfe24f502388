//! The admin-only `DiagnoseOnboarding` HTTP function says what blocks a message, and changes nothing.

use crate::testbed::{TestBed, contoso, onboarding};

async fn diagnose(bed: &TestBed, body: Vec<u8>, key: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().post(format!("{}/api/diagnose", bed.emulator.url())).body(body);
    if let Some(key) = key {
        request = request.header("x-functions-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reports_blockers_without_side_effects() {
    let bed = crate::testbed::start().await;
    let (master, function_key) = bed.host().keys();

    let (status, _) = diagnose(&bed, contoso("obd-diag"), None).await;
    assert_eq!(status, 401, "admin level needs a key");
    let (status, _) = diagnose(&bed, contoso("obd-diag"), Some(&function_key)).await;
    assert_eq!(status, 401, "a function key is not enough for authLevel admin");

    let (status, ready) = diagnose(&bed, contoso("obd-diag"), Some(&master)).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true, "{ready:#}");
    assert_eq!(ready["storageNeedsUpdate"], true);
    assert_eq!(ready["keyConsent"], "given", "the sample's Contoso key consents to its account");
    // Contoso's key named for another account of the scope: no consent for that one.
    let elsewhere = onboarding(
        "obd-diag-3",
        "22222222-2222-2222-2222-222222222222",
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/fabrikamdata",
        "https://contoso-kv.vault.azure.net/",
        "cmk",
    );
    let (_, unconsented) = diagnose(&bed, elsewhere, Some(&master)).await;
    assert_eq!((unconsented["ready"].as_bool(), unconsented["keyConsent"].as_str()), (Some(false), Some("missing")));

    let fabrikam = onboarding(
        "obd-diag-2",
        "44444444-4444-4444-4444-444444444444",
        "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/fabrikamdata",
        "https://fabrikam-kv.vault.azure.net/",
        "cmk",
    );
    let (_, blocked) = diagnose(&bed, fabrikam, Some(&master)).await;
    assert_eq!(blocked["ready"], false);
    let preflight = blocked["checks"].as_array().unwrap().iter().find(|c| c["step"] == "customer_preflight").unwrap();
    assert_eq!(preflight["reasonCode"], "ServicePrincipalMissing", "{blocked:#}");
    assert_eq!(preflight["disposition"], "waiting_on_customer");
    assert_eq!(blocked.get("keyConsent"), None, "unknown: the key was not read");

    let (_, invalid) = diagnose(&bed, b"{}".to_vec(), Some(&master)).await;
    assert_eq!(invalid["checks"][0]["step"], "validation");
    assert_eq!(invalid["checks"][0]["ok"], false);

    assert!(bed.requests().iter().all(|r| r.method != "PATCH" && r.method != "PUT"), "diagnose writes nothing");
    assert!(bed.events().is_empty(), "diagnose publishes nothing");
}

/// A message with `create` (decision 29): a missing account is what it would create (ready, and the account needs
/// the change), an existing account of another region is what it would refuse; nothing is created by asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_knows_the_create_option() {
    let bed =
        crate::testbed::start_with(crate::testbed::sample_scenario(), &[crate::testbed::ONE_KEY_MANY_ACCOUNTS]).await;
    let (master, _) = bed.host().keys();
    let with_create = |account: &str, location: &str| {
        let mut body: serde_json::Value = serde_json::from_slice(&onboarding(
            "obd-diag-create",
            "22222222-2222-2222-2222-222222222222",
            &format!("/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/{account}"),
            "https://contoso-kv.vault.azure.net/",
            "cmk",
        ))
        .unwrap();
        body["create"] = serde_json::json!({ "location": location, "sku": "Standard_LRS", "kind": "StorageV2" });
        serde_json::to_vec(&body).unwrap()
    };
    let (status, missing) = diagnose(&bed, with_create("contosodiag", "westeurope"), Some(&master)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (missing["ready"].as_bool(), missing["storageNeedsUpdate"].as_bool()),
        (Some(true), Some(true)),
        "{missing:#}"
    );
    let (_, differs) = diagnose(&bed, with_create("contosodata", "eastus"), Some(&master)).await;
    let storage = differs["checks"].as_array().unwrap().iter().find(|c| c["step"] == "storage_account").unwrap();
    assert_eq!(
        (differs["ready"].as_bool(), storage["reasonCode"].as_str()),
        (Some(false), Some("StorageAccountDiffers"))
    );
    assert!(bed.requests().iter().all(|r| r.method != "PATCH" && r.method != "PUT"), "diagnose writes nothing");
}
