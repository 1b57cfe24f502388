//! `cargo xtask demo`: the whole pipeline on the local testbed, with the sample messages.
//!
//! Starts the emulator with `samples/scenario.json`, runs the real `handler` under the emulated Functions host (laid
//! out exactly like the deployment package), enqueues the three samples, lets the "customer" fix their side
//! (`samples/customer-fixes.json`) once asked to, moves the emulator's clock past the propagation of those fixes; then
//! lets the key watch run, has Contoso disable its key and enable it again (a revocation detected and restored), and
//! prints what happened: events, dead letters, storage encryption.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use azure_emulator::host::HostOptions;
use azure_emulator::scenario::{Change, Scenario};
use azure_emulator::servicebus::NewMessage;
use azure_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

const NAMESPACE: &str = "northwind-onboarding";
const QUEUE: &str = "onboarding";
const ALL_EVENTS: &str = "onboarding-events/subscriptions/all";
const DEAD_LETTERS: &str = "onboarding/$DeadLetterQueue";
const SAMPLES: [(&str, &str); 3] = [
    ("onboarding-good.json", "a ready customer (Contoso)"),
    ("onboarding-waiting-on-customer.json", "a customer who has not installed the app yet (Fabrikam)"),
    ("onboarding-poison.json", "a hostile message (vault URI pointing at the metadata endpoint)"),
];
const WAIT: Duration = Duration::from_secs(90);
/// The key watch's schedule in `samples/demo.settings.json` and its interval: the demo moves the emulator's clock one
/// interval per run.
const WATCH_SCHEDULE: &str = "0 */15 * * * *";
const WATCH_INTERVAL: Duration = Duration::from_secs(15 * 60);

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the demo against an already-built handler binary. Returns an error when the pipeline did not end as the
/// samples promise (two onboardings completed, the hostile message dead-lettered).
pub async fn run(root: &Path, handler_binary: &Path, work_dir: &Path) -> Result<(), String> {
    let samples = root.join("samples");
    let scenario: Scenario = read_json(&samples.join("scenario.json"))?;
    let settings: Value = read_json(&samples.join("demo.settings.json"))?;
    let fixes: Vec<Change> = read_json(&samples.join("customer-fixes.json"))?;
    let waiting: Value = read_json(&samples.join("onboarding-waiting-on-customer.json"))?;
    let waiting_tenant =
        waiting["customer"]["tenantId"].as_str().ok_or("the waiting sample names no tenant")?.to_owned();
    let propagation = scenario.propagation.clone();

    let emulator = Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        scenario: Some(scenario),
        host: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    println!("emulator listening on {}", emulator.url());

    let app_dir = work_dir.join("app");
    let _ = std::fs::remove_dir_all(&app_dir);
    let functions = crate::package::assemble_app(root, handler_binary, &app_dir).map_err(|e| e.to_string())?;
    let mut app_settings: BTreeMap<String, String> = settings["Values"]
        .as_object()
        .ok_or("demo.settings.json has no Values")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    app_settings.insert("CMK_TEST_PROXY_URL".into(), emulator.url().to_owned());
    let host = azure_emulator::host::start(emulator.shared().clone(), HostOptions::new(&app_dir, app_settings))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "functions host started the handler ({}); functions: {}",
        app_dir.join("handler").display(),
        functions.join(", ")
    );

    let bus = &emulator.shared().bus;
    for (file, what) in SAMPLES {
        let body = std::fs::read(samples.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let mut message = NewMessage::new(body);
        message.message_id = Some(format!("demo-{file}"));
        message.content_type = Some("application/json".into());
        // The queue requires sessions: one per storage account, as producers set it (docs/integrating.md).
        message.session_id = cmk_testbed::session_of(&message.body);
        bus.send(NAMESPACE, QUEUE, message).map_err(|e| format!("enqueue {file}: {e:?}"))?;
        println!("enqueued {file}: {what}");
    }

    let events = || -> Vec<Value> {
        bus.peek(NAMESPACE, ALL_EVENTS, 0, 1000)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.body).ok())
            .collect()
    };
    let count = |kind: &str| events().iter().filter(|e| e["type"].as_str().is_some_and(|t| t.contains(kind))).count();
    let dead_letters = || bus.peek(NAMESPACE, DEAD_LETTERS, 0, 1000).unwrap_or_default();

    wait("the first onboarding to complete, the hostile one to be dead-lettered, the customer to be asked", || {
        count(".completed.") >= 1 && !dead_letters().is_empty() && count(".action_required.") >= 1
    })
    .await?;
    println!("\nthe customer (Fabrikam) installs the app, grants the key role and turns on purge protection...");
    let shared = emulator.shared();
    shared.apply(&fixes)?;
    let after_fixes = shared.log.list(None).last().map_or(0, |r| r.seq);
    // Entra and Azure RBAC take time to show the fixes: the next retry is still refused (AADSTS700016).
    let token_endpoint = format!("/{waiting_tenant}/oauth2/v2.0/token");
    wait("the handler's next retry, refused while Entra replicates the new service principal", || {
        shared.log.list(None).iter().any(|r| r.seq > after_fixes && r.status == 400 && r.path == token_endpoint)
    })
    .await?;
    let longest =
        [propagation.service_principal_seconds, propagation.role_assignment_seconds].into_iter().max().unwrap_or(0);
    println!(
        "propagation: the service principal takes {} s to reach token issuance, the role assignment {} s to reach Key \
         Vault; the emulator's clock moves {longest} s ahead",
        propagation.service_principal_seconds, propagation.role_assignment_seconds
    );
    wait("no delivery in flight", || shared.locked_messages(NAMESPACE, QUEUE) == 0).await?;
    shared.advance_clock(Duration::from_secs(longest));
    wait("the second onboarding to complete", || count(".completed.") >= 2).await?;

    // The key watch: a revocation detected within one interval, and its end.
    let good: Value = read_json(&samples.join("onboarding-good.json"))?;
    let account = good["storageAccount"]["resourceId"].as_str().ok_or("the good sample names no account")?;
    let key = good["key"]["name"].as_str().ok_or("the good sample names no key")?.to_owned();
    // `https://{vault}.vault.azure.net/`: the vault's name is the host's first label.
    let vault = good["key"]["vaultUri"].as_str().and_then(|u| u.strip_prefix("https://")?.split('.').next());
    let vault = vault.filter(|v| !v.is_empty()).ok_or("the good sample names no vault")?.to_owned();
    if settings["Values"]["CMK_WATCH_SCHEDULE"].as_str() != Some(WATCH_SCHEDULE) {
        return Err(format!("demo.settings.json: CMK_WATCH_SCHEDULE is not {WATCH_SCHEDULE:?}"));
    }
    let watch_state = || {
        let arm = shared.world.lock().map(|w| w.arm.dump()).unwrap_or_default();
        let accounts = arm["storageAccounts"].as_array().cloned().unwrap_or_default();
        accounts
            .iter()
            .find(|a| a["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(account)))
            .and_then(|a| a["tags"]["cmk-watch-state"].as_str().map(str::to_owned))
    };
    let next_watch_run = || async {
        wait("no delivery in flight", || shared.locked_messages(NAMESPACE, QUEUE) == 0).await?;
        shared.advance_clock(WATCH_INTERVAL);
        Ok::<(), String>(())
    };
    println!("\nthe key watch (timer WatchKeys, {WATCH_SCHEDULE}): the emulator's clock moves 15 minutes ahead...");
    next_watch_run().await?;
    wait("the probe of Contoso's account to record its state", || watch_state().is_some()).await?;
    println!("  recorded: {}", watch_state().unwrap_or_default());
    println!("\nContoso disables its key ({vault}/{key}); the clock moves to the next run...");
    shared.apply(&[Change::SetKeyEnabled { vault: vault.clone(), key: key.clone(), enabled: false }])?;
    next_watch_run().await?;
    wait("the watch to report key_access_lost", || count(".key_access_lost.") >= 1).await?;
    if let Some(lost) =
        events().into_iter().find(|e| e["type"].as_str().is_some_and(|t| t.contains(".key_access_lost.")))
    {
        println!("  missing: {}", lost["data"]["missing"].as_str().unwrap_or("?"));
        for step in lost["data"]["actions"].as_array().into_iter().flatten().skip(1) {
            for command in step["azureCli"].as_array().into_iter().flatten() {
                println!("  fix:     {}", command.as_str().unwrap_or("?"));
            }
        }
    }
    println!("\nContoso enables its key again; the clock moves to the next run...");
    shared.apply(&[Change::SetKeyEnabled { vault, key, enabled: true }])?;
    next_watch_run().await?;
    wait("the watch to report key_access_restored", || count(".key_access_restored.") >= 1).await?;

    println!("\nEvents on topic onboarding-events:");
    for event in events() {
        let data = &event["data"];
        let restored = event["type"].as_str().is_some_and(|t| t.contains(".key_access_restored."));
        let reason = data["reasonCode"].as_str().map(|r| if restored { format!("after {r}") } else { r.to_owned() });
        let detail = reason.unwrap_or_else(|| {
            data["currentVersionedKeyIdentifier"].as_str().map(|k| format!("key {k}")).unwrap_or_default()
        });
        println!(
            "  {:<48} {:<16} {detail}",
            event["type"].as_str().unwrap_or("?"),
            event["subject"].as_str().unwrap_or("?")
        );
    }
    println!("\nDead-letter queue of {QUEUE}:");
    for message in dead_letters() {
        let prop =
            |name: &str| message.application_properties.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        println!(
            "  seq {} {}: {} — {}",
            message.sequence_number,
            message.dead_letter_reason.as_deref().unwrap_or("?"),
            prop("cmk-dead-letter-reason"),
            prop("cmk-dead-letter-description")
        );
    }
    println!("\nStorage accounts:");
    let arm = emulator.shared().world.lock().map_err(|_| "world lock poisoned")?.arm.dump();
    for account in arm["storageAccounts"].as_array().into_iter().flatten() {
        let encryption = &account["properties"]["encryption"];
        let key = encryption["keyvaultproperties"]["currentVersionedKeyIdentifier"]
            .as_str()
            .unwrap_or("(Microsoft-managed keys)");
        println!(
            "  {:<14} {:<20} {key}",
            account["name"].as_str().unwrap_or("?"),
            encryption["keySource"].as_str().unwrap_or("?")
        );
    }
    let status = host.status();
    println!(
        "\nhost: {} invocations ok, {} failed (the failed ones are the dead-letter copy being failed fast)",
        status["invocations"]["ok"], status["invocations"]["failed"]
    );
    let as_expected = count(".completed.") == 2
        && dead_letters().len() == 1
        && count(".key_access_lost.") == 1
        && count(".key_access_restored.") == 1;
    host.stop().await;
    emulator.shutdown().await;
    if as_expected {
        println!(
            "\ndemo finished as expected: 2 onboardings completed, 1 hostile message dead-lettered with its reason, \
             a disabled key reported by the next watch run and its return by the one after"
        );
        Ok(())
    } else {
        Err("the pipeline did not end as expected".into())
    }
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    println!("waiting for {what}...");
    let started = Instant::now();
    while !done() {
        if started.elapsed() > WAIT {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
