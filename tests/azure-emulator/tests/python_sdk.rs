//! An independent client: the official Python `azure-mgmt-storage` SDK reads and updates the storage account
//! against the emulated ARM (`tests/python/storage_sdk.py`), and what it deserialises must be what we served.
//!
//! Needs the venv `$CARGO_MANIFEST_DIR/../../.venv-sdk` (`pip install azure-mgmt-storage azure-identity`). Without
//! it the test fails when `CI` is set and is skipped, with a note, otherwise.

use std::path::Path;
use std::time::Duration;

use azure_emulator::cloud::Cloud;
use azure_emulator::entra::{Claims, Subject};
use azure_emulator::keyvault::deterministic_version;
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use serde_json::{Value, json};

const ISV: &str = "11111111-1111-1111-1111-111111111111";
const SUB: &str = "00000000-0000-0000-0000-000000000001";
const CALLER: &str = "f0000000-0000-0000-0000-000000000001";
const APP_ID: &str = "a1111111-1111-1111-1111-111111111111";
const UAMI: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami";

#[tokio::test]
async fn azure_mgmt_storage_reads_and_updates_the_account() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = crate_dir.join("../../.venv-sdk/bin/python3");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {} is missing: create it with `python3 -m venv .venv-sdk && .venv-sdk/bin/pip install azure-mgmt-storage azure-identity`",
            python.display()
        );
        eprintln!("SKIPPED: {} not found; create the venv to run the Python SDK check", python.display());
        return;
    }
    let scenario: Scenario = serde_json::from_str(include_str!("data/arm/cross_tenant.json")).expect("scenario parses");
    let options = EmulatorOptions { listen: "127.0.0.1:0".parse().unwrap(), scenario: Some(scenario), host: None };
    let emulator = Emulator::start(options).await.expect("emulator starts");
    let tokens = &emulator.shared().tokens;
    let subject = Subject { tenant_id: ISV, object_id: CALLER, client_id: CALLER, mi_resource_id: None };
    let token =
        tokens.mint(Claims::issue(Cloud::Public, &subject, "https://management.azure.com/", tokens.now(), 3600));
    let args = json!({
        "url": emulator.url(), "token": token, "subscription": SUB, "resourceGroup": "rg-isv", "account": "isvdata1",
        "uami": UAMI, "appId": APP_ID, "vaultUri": "https://custvault.vault.azure.net", "keyName": "cmk",
    });
    let child = tokio::process::Command::new(&python)
        .arg(crate_dir.join("tests/python/storage_sdk.py"))
        .env("EMULATOR_SDK_ARGS", args.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("SDK run within 120 s")
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK script failed: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    assert_eq!(result["before"]["name"], "isvdata1");
    assert_eq!(result["before"]["keySource"], "Microsoft.Storage");
    let updated = &result["updated"];
    let kid = format!(
        "https://custvault.vault.azure.net/keys/cmk/{}",
        deterministic_version("custvault.vault.azure.net", "cmk", 1)
    );
    assert_eq!(updated["keySource"], "Microsoft.Keyvault");
    assert_eq!(updated["currentVersionedKeyIdentifier"], kid);
    assert_eq!(updated["keyVersion"], "");
    assert_eq!(updated["federatedIdentityClientId"], APP_ID);
    assert_eq!(updated["blobKeyType"], "Account");
    assert_eq!(updated["identityType"], "UserAssigned");
    assert_eq!(updated["userAssigned"][UAMI]["principalId"], "e0000000-0000-0000-0000-000000000001");
    assert!(updated["lastKeyRotationTimestamp"].is_string(), "the SDK parsed the .NET timestamp: {updated}");
    assert_eq!(result["after"], result["updated"], "GET shows what the PATCH answered");
}
