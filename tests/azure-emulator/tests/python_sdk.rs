//! An independent client: the official Python `azure-mgmt-storage` SDK reads and updates the storage account
//! against the emulated ARM (`tests/python/storage_sdk.py`), and what it deserialises must be what we served.
//!
//! The test provisions its own venv under the target directory (`target/tmp/python-sdk`) from the pinned
//! `tests/python/requirements.txt` on first use, and reuses it while the requirements are unchanged. Without `python3`
//! (with `venv` and `pip`) or without access to PyPI it fails and says what to install; it never skips.

use std::path::{Path, PathBuf};
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

/// Creates (or reuses) the venv with the pinned SDK and returns its interpreter. Panics with what to install when it
/// cannot: a test that needs the SDK either runs with it or fails.
fn provision_sdk_venv(crate_dir: &Path) -> PathBuf {
    let requirements_file = crate_dir.join("tests/python/requirements.txt");
    let requirements = std::fs::read(&requirements_file).expect("tests/python/requirements.txt");
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-sdk");
    let python = venv.join("bin/python3");
    let marker = venv.join(".requirements.txt");
    if python.exists() && std::fs::read(&marker).ok().as_deref() == Some(requirements.as_slice()) {
        return python;
    }
    let run = |program: &Path, args: &[&std::ffi::OsStr], what: &str| {
        let output = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| {
            panic!("{what}: cannot run {}: {e}; install python3 with venv and pip", program.display())
        });
        assert!(
            output.status.success(),
            "{what} failed ({}): {}\ninstall python3 with venv and pip (Debian: python3-venv) and allow access to PyPI",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let _ = std::fs::remove_dir_all(&venv);
    run(Path::new("python3"), &["-m".as_ref(), "venv".as_ref(), venv.as_os_str()], "python3 -m venv");
    run(
        &python,
        &[
            "-m".as_ref(),
            "pip".as_ref(),
            "install".as_ref(),
            "--quiet".as_ref(),
            "--disable-pip-version-check".as_ref(),
            "-r".as_ref(),
            requirements_file.as_os_str(),
        ],
        "pip install -r tests/python/requirements.txt",
    );
    std::fs::write(&marker, &requirements).expect("write the venv marker");
    python
}

#[tokio::test]
async fn azure_mgmt_storage_reads_and_updates_the_account() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = provision_sdk_venv(crate_dir);
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
