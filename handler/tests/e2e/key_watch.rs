//! The key watch through the real binary: the timer (its schedule from `CMK_WATCH_SCHEDULE`, on the emulator's
//! clock) lists the accounts, sends one probe per onboarded account, and each probe reports what changed since the
//! state recorded in the account's `cmk-watch-state` tag, once per distinct state.

use std::collections::BTreeMap;

use azure_emulator::scenario::Change;
use serde_json::json;

use cmk_handler::workflow::watch_record::WatchRecord;

use crate::testbed::{CONTOSO_ACCOUNT, CONTOSO_TENANT, TestBed, contoso, sample_scenario};

/// Every minute: the emulator's clock moves one interval per run, and a few runs stay within the tokens' lifetime.
pub(crate) const SCHEDULE: &str = "0 * * * * *";
const INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The tags an onboarding writes (ARCHITECTURE.md, "Account tags"), for accounts the test did not onboard.
fn onboarded_tags(onboarding_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cmk-onboarding-id".to_owned(), onboarding_id.to_owned()),
        ("cmk-onboarding-order".to_owned(), "2026-11-29T10:00:00Z#1".to_owned()),
        ("cmk-customer-tenant".to_owned(), CONTOSO_TENANT.to_owned()),
    ])
}

fn watch_runs(bed: &TestBed) -> usize {
    bed.host().function_logs().iter().filter(|l| l.contains("key watch:")).count()
}

fn watch_state(bed: &TestBed) -> Option<String> {
    bed.storage_account(CONTOSO_ACCOUNT)["tags"]["cmk-watch-state"].as_str().map(str::to_owned)
}

/// The recorded state alone, without when it was recorded and the last event (`watch_record`).
fn state_part(tag: &str) -> String {
    WatchRecord::decode(tag).unwrap_or_else(|| panic!("an unreadable watch record: {tag}")).state.encode()
}

/// Moves the clock one interval on, waits for the run it triggers and for every probe it sent to settle.
pub(crate) async fn next_run(bed: &TestBed) {
    let before = watch_runs(bed);
    bed.advance_clock(INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_detected_within_one_interval_and_restoration_after_the_fix() {
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-watch-1"), "msg-watch-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;

    // First run: a healthy baseline is recorded, nothing is published.
    next_run(&bed).await;
    let baseline = watch_state(&bed).expect("the probe recorded the account's state");
    assert!(baseline.starts_with("v1;") && baseline.contains(";a=ok;"), "{baseline}");
    assert_eq!(bed.events().len(), 1, "only the onboarding's completed: {:#?}", bed.events());
    let onboarding_tags = bed.storage_account(CONTOSO_ACCOUNT)["tags"].clone();
    assert_eq!(onboarding_tags["cmk-onboarding-id"], "obd-watch-1", "the other tags are kept: {onboarding_tags}");

    // The customer disables the key: the next run reports it, with the customer's fix.
    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: false }]);
    next_run(&bed).await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(
        lost.len(),
        1,
        "state {:?}\n{}",
        watch_state(&bed),
        bed.host().handler_output().iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n")
    );
    let data = &lost[0]["data"];
    assert_eq!(data["reasonCode"], "KeyDisabled", "{data:#}");
    assert_eq!(data["storageAccountId"], CONTOSO_ACCOUNT);
    assert_eq!(lost[0]["subject"], "obd-watch-1");
    assert!(data["missing"].as_str().is_some_and(|m| !m.is_empty()), "{data:#}");
    assert!(data["actions"].to_string().contains("az keyvault key set-attributes"), "{data:#}");
    assert!(watch_state(&bed).unwrap().contains(";a=KeyDisabled;"));

    // Still disabled: the same state, no second event.
    next_run(&bed).await;
    assert_eq!(bed.events_of("key_access_lost").len(), 1, "{:#?}", bed.events());

    // Fixed: restored, once.
    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: true }]);
    next_run(&bed).await;
    let restored = bed.events_of("key_access_restored");
    assert_eq!(restored.len(), 1, "{:#?}", bed.events());
    assert_eq!(restored[0]["data"]["reasonCode"], "KeyDisabled");
    let restored_state = watch_state(&bed).unwrap();
    assert_eq!(state_part(&restored_state), state_part(&baseline));
    // The record names the last event published and when the state was seen (decision 30).
    let record = WatchRecord::decode(&restored_state).unwrap();
    let last = record.last_event.expect("the restoration is recorded");
    assert_eq!(last.id.to_string(), restored[0]["id"].as_str().unwrap(), "{restored_state}");
    assert!(record.recorded_at.is_some(), "{restored_state}");
    assert!(WatchRecord::decode(&baseline).unwrap().last_event.is_none(), "a baseline publishes nothing: {baseline}");
    next_run(&bed).await;
    assert_eq!(bed.events().len(), 3, "completed, lost, restored: {:#?}", bed.events());
    assert!(bed.dead_letters().is_empty());
}

/// The sample scenario plus `accounts` storage accounts in one subscription already on Contoso's key through our
/// identity and app (no version pinned), as onboardings leave them; and their ids.
fn fleet(accounts: usize) -> (azure_emulator::Scenario, Vec<String>) {
    let version = azure_emulator::keyvault::deterministic_version("contoso-kv.vault.azure.net", "cmk", 0);
    let mut scenario = sample_scenario();
    let template = scenario.storage_accounts[0].clone();
    let ids: Vec<String> = (0..accounts)
        .map(|n| {
            format!(
                "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/fleet{n:04}"
            )
        })
        .collect();
    for id in &ids {
        let mut account = template.clone();
        account.id = id.clone();
        account.identity =
            Some(json!({ "type": "UserAssigned", "userAssignedIdentities": { crate::testbed::UAMI_ID: {} } }));
        account.encryption = Some(json!({
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {
                "keyvaulturi": "https://contoso-kv.vault.azure.net",
                "keyname": "cmk",
                "keyversion": "",
                "currentVersionedKeyIdentifier": format!("https://contoso-kv.vault.azure.net/keys/cmk/{version}"),
            },
            "identity": {
                "userAssignedIdentity": crate::testbed::UAMI_ID,
                "federatedIdentityClientId": crate::testbed::APP_CLIENT_ID,
            },
        }));
        scenario.storage_accounts.push(account);
    }
    (scenario, ids)
}

/// Gives the fleet's accounts the tags an onboarding writes.
fn tag_fleet(bed: &TestBed, ids: &[String]) {
    bed.apply(
        ids.iter()
            .enumerate()
            .map(|(n, id)| Change::SetStorageAccountTags {
                account: id.clone(),
                tags: onboarded_tags(&format!("obd-fleet-{n:04}")),
            })
            .collect(),
    );
}

/// Moves the clock to the next quarter hour (the shipped schedule's occurrence) and no further: a run that fires late
/// has less time before the next one, and spreads its probes over less. Returns the occurrence.
async fn to_next_quarter_hour(bed: &TestBed) -> time::OffsetDateTime {
    let now = bed.emulator.shared().clock.now();
    let into_quarter = time::Duration::seconds(i64::from(now.minute() % 15) * 60 + i64::from(now.second()))
        + time::Duration::nanoseconds(i64::from(now.nanosecond()));
    let to_occurrence = std::time::Duration::try_from(time::Duration::minutes(15) - into_quarter).unwrap();
    bed.advance_clock(to_occurrence + std::time::Duration::from_millis(200)).await;
    now + to_occurrence
}

/// Steps the emulator's clock until no probe is left scheduled, letting each step's probes finish first; fails once
/// `limit` of emulator time has passed since `from`.
async fn run_scheduled_probes(bed: &TestBed, from: time::OffsetDateTime, limit: std::time::Duration) {
    const STEP: std::time::Duration = std::time::Duration::from_secs(10);
    let shared = bed.emulator.shared();
    let counts = || shared.bus.counts(crate::testbed::NAMESPACE, crate::testbed::QUEUE).unwrap();
    let settled =
        |_: &TestBed| counts().0 == 0 && shared.locked_messages(crate::testbed::NAMESPACE, crate::testbed::QUEUE) == 0;
    loop {
        bed.wait_until("the due probes to finish", settled).await;
        if counts().1 == 0 {
            return;
        }
        let elapsed = shared.clock.now() - from;
        assert!(elapsed < limit, "probes still scheduled {elapsed} after the run (emulator time): {:?}", counts());
        shared.clock.advance(STEP);
    }
}

fn recorded_states(bed: &TestBed) -> usize {
    bed.state().to_string().matches("\"cmk-watch-state\":\"v1;").count()
}

/// A thousand onboarded accounts in one subscription, with the emulator enforcing Azure's limits (time-scaled): one
/// run schedules a probe for each, spread over the interval at two a second so that the probes' account reads stay
/// within the Storage RP's 800 per 5 minutes (`workflow::fan_out`); the test moves the emulator's clock in steps,
/// letting each step's probes finish, and every probe has recorded its account's state before the next run is due
/// (the shipped schedule, every 15 minutes, as `infra/` sets it). Measured on the emulator's clock (the broker's and
/// the request log's), and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_accounts_are_probed_within_one_interval_under_the_storage_read_limit() {
    const ACCOUNTS: usize = 1_000;
    /// Azure seconds per real second: the windows the limits and the handler's pacing see are 60 times shorter in
    /// real time, so the pacing waits (real time) stay short; the broker's schedule and the steps below are on the
    /// emulator's clock, which the limits count too.
    const TIME_SCALE: f64 = 60.0;
    let interval = std::time::Duration::from_secs(15 * 60);
    let (scenario, ids) = fleet(ACCOUNTS);
    let bed = crate::testbed::start_with(
        scenario,
        &[("CMK_WATCH_SCHEDULE", "0 */15 * * * *"), ("RUST_LOG", "warn"), cmk_testbed::ONE_KEY_MANY_ACCOUNTS],
    )
    .await;
    let shared = bed.emulator.shared();
    let limits = azure_emulator::limits::LimitsConfig { time_scale: TIME_SCALE, ..Default::default() };
    shared.limits.configure(limits).unwrap();
    tag_fleet(&bed, &ids);

    let started = std::time::Instant::now();
    let due = to_next_quarter_hour(&bed).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) == 1).await;
    run_scheduled_probes(&bed, due, interval).await;
    let took = shared.clock.now() - due;
    let wall = started.elapsed();
    assert_eq!(recorded_states(&bed), ACCOUNTS, "every account's state recorded");
    assert!(took < interval, "{took} of emulator time: more than one interval");

    // The strictest reading of the read limit: account reads per five minutes of the emulator's clock (which runs
    // slower than the limits' scaled time), over every window starting at a read.
    let log = bed.requests();
    let reads: Vec<time::OffsetDateTime> = log
        .iter()
        .filter(|r| r.method == "GET" && r.status == 200 && r.path.contains("/storageAccounts/fleet"))
        .map(|r| r.time)
        .collect();
    assert_eq!(reads.len(), ACCOUNTS, "one account read per probe");
    let window = time::Duration::minutes(5);
    let busiest = (0..reads.len()).map(|i| reads[i..].iter().take_while(|t| **t < reads[i] + window).count()).max();
    let arm: Vec<_> = log.iter().filter(|r| r.host == "management.azure.com").collect();
    let throttled = arm.iter().filter(|r| r.status == 429).count();
    println!(
        "fan-out: {ACCOUNTS} accounts probed within {took} of emulator time after the run ({wall:?} real); \
         busiest 5 minutes: {busiest:?} account reads; ARM requests {}, 429s {throttled}",
        arm.len()
    );
    assert!(busiest.is_some_and(|b| b <= 800), "{busiest:?} reads in five minutes: over the Storage RP's limit");
    let runs: Vec<String> = bed.host().function_logs().into_iter().filter(|l| l.contains("key watch:")).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains(&format!("{ACCOUNTS} probes sent, 0 skipped, spread over 499 s")), "{runs:?}");
    assert!(bed.dead_letters().is_empty());
    assert!(bed.events().is_empty(), "healthy accounts: a baseline, no events");
}

/// The customer's key version gets an expiry within the warning window (30 days): one `key_expiring`, not repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_key_is_reported_once() {
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-expiry-1"), "msg-expiry-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    assert!(watch_state(&bed).is_some_and(|s| s.contains(";x=0;")));

    let expires = bed.emulator.shared().clock.now() + time::Duration::days(10);
    let expires = expires.replace_nanosecond(0).unwrap();
    let text = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    bed.apply(vec![Change::SetKeyExpiry {
        vault: "contoso-kv".into(),
        key: "cmk".into(),
        expires: Some(text.clone()),
    }]);
    next_run(&bed).await;
    let expiring = bed.events_of("key_expiring");
    assert_eq!(expiring.len(), 1, "{:#?}", bed.events());
    assert_eq!(expiring[0]["data"]["keyExpiresAt"], text.as_str());
    assert!(watch_state(&bed).is_some_and(|s| s.contains(";x=1;")));
    next_run(&bed).await;
    assert_eq!(bed.events_of("key_expiring").len(), 1, "once per version: {:#?}", bed.events());
    assert!(bed.events_of("key_access_lost").is_empty(), "a key that expires in ten days still works");
}

/// The customer removes the app's role on the vault: once Azure RBAC has propagated the removal, the next run reports
/// it with the fix (the role assignment commands); the role granted again and propagated, the next run reports the
/// restoration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_role_is_reported_after_propagation_and_restored_after_the_fix() {
    const APP_SP_IN_CONTOSO: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
    const ROLE: &str = "Key Vault Crypto Service Encryption User";
    let propagation = std::time::Duration::from_secs(azure_emulator::propagation::ROLE_ASSIGNMENT_SECONDS);
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-role-1"), "msg-role-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;

    bed.apply(vec![Change::RevokeRole {
        vault: Some("contoso-kv".into()),
        principal_id: APP_SP_IN_CONTOSO.into(),
        role: ROLE.into(),
        scope: None,
    }]);
    // Moving the clock past the propagation delay fires the (past-due) run once.
    let before = watch_runs(&bed);
    bed.advance_clock(propagation + INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost.len(), 1, "{:#?}", bed.events());
    let data = &lost[0]["data"];
    assert!(data["actions"].to_string().contains("az role assignment create"), "{data:#}");

    bed.apply(vec![Change::GrantRole {
        vault: Some("contoso-kv".into()),
        assignment: serde_json::from_value(json!({ "principalId": APP_SP_IN_CONTOSO, "role": ROLE })).unwrap(),
    }]);
    let before = watch_runs(&bed);
    bed.advance_clock(propagation + INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
    let restored = bed.events_of("key_access_restored");
    assert_eq!(restored.len(), 1, "{:#?}", bed.events());
    assert_eq!(restored[0]["data"]["reasonCode"], data["reasonCode"]);
    assert_eq!(bed.events_of("key_access_lost").len(), 1);
}

/// Issue 14: a consent that disappears from the key is a lost access like a revocation (the probe runs the
/// onboarding's own key checks, consent included), and its return restores the access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_removed_from_the_key_is_reported_like_a_revocation() {
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-consent-1"), "msg-consent-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    let baseline = watch_state(&bed).expect("the probe recorded the account's state");

    let consent = BTreeMap::from([("cmk-consent-contosodata".to_owned(), CONTOSO_ACCOUNT.to_owned())]);
    bed.apply(vec![Change::SetKeyTags { vault: "contoso-kv".into(), key: "cmk".into(), tags: BTreeMap::new() }]);
    next_run(&bed).await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost.len(), 1, "{:#?}", bed.events());
    assert_eq!(lost[0]["data"]["reasonCode"], "KeyConsentMissing", "{:#}", lost[0]["data"]);
    assert!(lost[0]["data"]["actions"].to_string().contains("cmk-consent"), "{:#}", lost[0]["data"]);

    bed.apply(vec![Change::SetKeyTags { vault: "contoso-kv".into(), key: "cmk".into(), tags: consent }]);
    next_run(&bed).await;
    let restored = bed.events_of("key_access_restored");
    assert_eq!(restored.len(), 1, "{:#?}", bed.events());
    assert_eq!(restored[0]["data"]["reasonCode"], "KeyConsentMissing");
    assert_eq!(state_part(&watch_state(&bed).unwrap()), state_part(&baseline));
}

/// The customer deletes the app's service principal. Entra then refuses the token exchange (AADSTS700016) once the
/// deletion has propagated, but a token issued before stays valid for an hour: the probe exchanges a fresh one
/// (decision 31), so the next run after the propagation delay reports the loss, well within the token's lifetime,
/// with the fix (create the service principal, assign the new one the role again). Re-consent creates a new service
/// principal with a new object id; once it holds the role again, the next run reports the restoration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_service_principal_is_reported_within_one_interval_and_restored_after_re_consent() {
    const NEW_APP_SP_IN_CONTOSO: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbc";
    let sp_propagation = std::time::Duration::from_secs(azure_emulator::propagation::SERVICE_PRINCIPAL_SECONDS);
    let role_propagation = std::time::Duration::from_secs(azure_emulator::propagation::ROLE_ASSIGNMENT_SECONDS);
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-sp-1"), "msg-sp-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    let baseline = watch_state(&bed).expect("the probe recorded the account's state");

    bed.apply(vec![Change::RemoveServicePrincipal {
        tenant_id: CONTOSO_TENANT.into(),
        app_id: crate::testbed::APP_CLIENT_ID.into(),
    }]);
    // The deletion reaches token issuance after its propagation delay; the first run after that reports it. The
    // tokens the handler holds were issued minutes ago and live for an hour.
    let before = watch_runs(&bed);
    bed.advance_clock(sp_propagation + INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost.len(), 1, "{:#?}", bed.events());
    let data = &lost[0]["data"];
    assert_eq!(data["reasonCode"], "ServicePrincipalMissing", "{data:#}");
    assert!(data["missing"].as_str().is_some_and(|m| m.contains("service principal")), "{data:#}");
    let actions = data["actions"].to_string();
    assert!(actions.contains("az ad sp create --id 88888888-8888-8888-8888-888888888888"), "{data:#}");
    assert!(actions.contains("az role assignment create"), "a new SP needs the role again: {data:#}");
    assert!(watch_state(&bed).unwrap().contains(";a=ServicePrincipalMissing;"));

    // Re-consent: a new service principal (new object id), granted the role again.
    let service_principal = serde_json::from_value(json!({
        "id": NEW_APP_SP_IN_CONTOSO, "appId": crate::testbed::APP_CLIENT_ID, "tenantId": CONTOSO_TENANT,
    }))
    .unwrap();
    bed.apply(vec![
        Change::AddServicePrincipal { service_principal },
        Change::GrantRole {
            vault: Some("contoso-kv".into()),
            assignment: serde_json::from_value(
                json!({ "principalId": NEW_APP_SP_IN_CONTOSO, "role": "Key Vault Crypto Service Encryption User" }),
            )
            .unwrap(),
        },
    ]);
    let before = watch_runs(&bed);
    bed.advance_clock(role_propagation.max(sp_propagation) + INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
    let restored = bed.events_of("key_access_restored");
    assert_eq!(restored.len(), 1, "{:#?}", bed.events());
    assert_eq!(restored[0]["data"]["reasonCode"], "ServicePrincipalMissing");
    assert_eq!(state_part(&watch_state(&bed).unwrap()), state_part(&baseline));
    assert_eq!(bed.events_of("key_access_lost").len(), 1);
    assert!(bed.dead_letters().is_empty());
}

/// The customer rotates the key (a new version, tagged with their consent as decision 28 asks). Storage uses the new
/// version only after its daily check (the account names no version), so a run before that reports nothing; the
/// first run after it reports `key_rotated` once, with the previous version, and the next run does not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_reported_once_after_storage_picks_up_the_new_version() {
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-rotate-1"), "msg-rotate-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    let first = azure_emulator::keyvault::deterministic_version("contoso-kv.vault.azure.net", "cmk", 0);
    let second = azure_emulator::keyvault::deterministic_version("contoso-kv.vault.azure.net", "cmk", 1);
    assert!(watch_state(&bed).is_some_and(|s| s.contains(&format!(";k={first};"))), "{:?}", watch_state(&bed));

    let consent = BTreeMap::from([("cmk-consent-contosodata".to_owned(), CONTOSO_ACCOUNT.to_owned())]);
    bed.apply(vec![
        Change::RotateKey { vault: "contoso-kv".into(), key: "cmk".into() },
        Change::SetKeyTags { vault: "contoso-kv".into(), key: "cmk".into(), tags: consent },
    ]);
    // Storage has not looked yet: it still uses the first version, and the app can use the new one.
    next_run(&bed).await;
    let current = |bed: &TestBed| {
        bed.storage_account(CONTOSO_ACCOUNT)["properties"]["encryption"]["keyvaultproperties"]
            ["currentVersionedKeyIdentifier"]
            .as_str()
            .map(str::to_owned)
    };
    assert!(current(&bed).is_some_and(|k| k.ends_with(&first)), "{:?}", current(&bed));
    assert_eq!(bed.events().len(), 1, "only the onboarding's completed: {:#?}", bed.events());

    // Storage's daily check comes due: it moves the account to the new version; the next run reports it.
    bed.apply(vec![Change::RunStorageKeyCheck { account: CONTOSO_ACCOUNT.into() }]);
    assert!(current(&bed).is_some_and(|k| k.ends_with(&second)), "{:?}", current(&bed));
    next_run(&bed).await;
    let rotated = bed.events_of("key_rotated");
    assert_eq!(rotated.len(), 1, "{:#?}", bed.events());
    let data = &rotated[0]["data"];
    assert_eq!(data["previousKeyVersion"], first.as_str(), "{data:#}");
    assert!(data["currentVersionedKeyIdentifier"].as_str().is_some_and(|k| k.ends_with(&second)), "{data:#}");
    assert!(watch_state(&bed).is_some_and(|s| s.contains(&format!(";k={second};"))));

    next_run(&bed).await;
    assert_eq!(bed.events_of("key_rotated").len(), 1, "once: {:#?}", bed.events());
    assert_eq!(bed.events().len(), 2, "completed, rotated: {:#?}", bed.events());
    assert!(bed.dead_letters().is_empty());
}

/// Someone else changes the account's encryption: an ISV operator's tool, under its own identity, PATCHes the account
/// back to Microsoft-managed keys directly through ARM. The next run reports `configuration_drift` once (the recorded
/// configuration is no longer the account's), and later runs do not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_changed_by_someone_else_is_reported_once() {
    const OPERATOR: &str = "0e000000-0000-0000-0000-0000000000f1";
    const ISV_TENANT: &str = "11111111-1111-1111-1111-111111111111";
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-drift-1"), "msg-drift-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    let baseline = watch_state(&bed).expect("the probe recorded the account's state");

    // The operator may write storage accounts in the customers' resource group (once the assignment propagated).
    let role = json!({
        "principalId": OPERATOR,
        "role": "Contributor",
        "scope": "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers",
    });
    bed.apply(vec![Change::GrantRole { vault: None, assignment: serde_json::from_value(role).unwrap() }]);
    let before = watch_runs(&bed);
    bed.advance_clock(std::time::Duration::from_secs(azure_emulator::propagation::ROLE_ASSIGNMENT_SECONDS)).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_queue_idle().await;
    assert_eq!(bed.events().len(), 1, "nothing changed yet: {:#?}", bed.events());

    let shared = bed.emulator.shared();
    let subject = azure_emulator::entra::Subject {
        tenant_id: ISV_TENANT,
        object_id: OPERATOR,
        client_id: OPERATOR,
        mi_resource_id: None,
    };
    let claims = azure_emulator::entra::Claims::issue(
        azure_emulator::cloud::Cloud::Public,
        &subject,
        "https://management.azure.com/",
        shared.tokens.now(),
        3600,
    );
    let token = shared.tokens.mint(claims);
    let answer = azure_emulator::control::AzureClient::new(bed.emulator.url())
        .request(
            reqwest::Method::PATCH,
            &format!("https://management.azure.com{CONTOSO_ACCOUNT}?api-version=2023-05-01"),
        )
        .bearer_auth(token)
        .json(&json!({ "properties": { "encryption": { "keySource": "Microsoft.Storage" } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());

    next_run(&bed).await;
    let drift = bed.events_of("configuration_drift");
    assert_eq!(drift.len(), 1, "{:#?}", bed.events());
    let data = &drift[0]["data"];
    assert_eq!(data["recordedState"], state_part(&baseline), "{data:#}");
    assert!(data["observedState"].as_str().is_some_and(|s| s.ends_with(";c=-")), "{data:#}");
    assert!(bed.events_of("key_access_lost").is_empty() && bed.events_of("key_rotated").is_empty());

    next_run(&bed).await;
    assert_eq!(bed.events_of("configuration_drift").len(), 1, "once: {:#?}", bed.events());
    assert!(bed.dead_letters().is_empty());
}

/// The customer deletes the key (the vault keeps it, soft-deleted): the next run reports the loss with the fix, to
/// recover it (a new key could not read the account's data); once recovered, the next run reports the restoration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_reported_and_restored_after_its_recovery() {
    let mut scenario = sample_scenario();
    let contoso_kv = scenario.vaults.iter_mut().find(|v| v.name == "contoso-kv").unwrap();
    assert!(contoso_kv.soft_delete && contoso_kv.purge_protection, "the sample's vault keeps deleted keys");
    let bed = crate::testbed::start_with(scenario, &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-delete-1"), "msg-delete-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    next_run(&bed).await;
    let baseline = watch_state(&bed).expect("the probe recorded the account's state");

    bed.apply(vec![Change::DeleteKey { vault: "contoso-kv".into(), key: "cmk".into() }]);
    next_run(&bed).await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost.len(), 1, "{:#?}", bed.events());
    let data = &lost[0]["data"];
    assert_eq!(data["reasonCode"], "KeyNotFound", "{data:#}");
    assert!(
        data["actions"].to_string().contains("az keyvault key recover --vault-name contoso-kv --name cmk"),
        "{data:#}"
    );

    bed.apply(vec![Change::RecoverKey { vault: "contoso-kv".into(), key: "cmk".into() }]);
    next_run(&bed).await;
    let restored = bed.events_of("key_access_restored");
    assert_eq!(restored.len(), 1, "{:#?}", bed.events());
    assert_eq!(restored[0]["data"]["reasonCode"], "KeyNotFound");
    assert_eq!(state_part(&watch_state(&bed).unwrap()), state_part(&baseline));
    assert!(bed.dead_letters().is_empty());
}

/// A run cut by its deadline: Service Bus is slow (2 s per send) and the host's `functionTimeout` is 10 s, so the run's
/// work time (5.3 s) ends before its third batch is sent. The batches sent are the start of the schedule (the
/// earliest accounts), and their probes run; the run fails (the host logs it) and nothing else is lost: the next run
/// probes every account. The limits run at a time scale of 60, as in the fan-out test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_by_its_deadline_has_sent_the_start_of_its_schedule_and_the_next_run_probes_all() {
    use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
    const ACCOUNTS: usize = 300;
    let interval = std::time::Duration::from_secs(15 * 60);
    let (scenario, ids) = fleet(ACCOUNTS);
    let bed = cmk_testbed::TestBed::start_custom(
        crate::testbed::handler(),
        scenario,
        &[("CMK_WATCH_SCHEDULE", "0 */15 * * * *"), ("RUST_LOG", "warn"), cmk_testbed::ONE_KEY_MANY_ACCOUNTS],
        |app| {
            let path = app.join("host.json");
            let mut host: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            host["functionTimeout"] = "00:00:10".into();
            std::fs::write(&path, serde_json::to_vec_pretty(&host).unwrap()).unwrap();
        },
    )
    .await;
    let shared = bed.emulator.shared();
    shared.limits.configure(azure_emulator::limits::LimitsConfig { time_scale: 60.0, ..Default::default() }).unwrap();
    tag_fleet(&bed, &ids);
    let slow_sends = FaultRule {
        matcher: FaultMatch {
            host: Some(format!("{}.servicebus.windows.net", crate::testbed::NAMESPACE)),
            method: Some("POST".into()),
            path_contains: Some("/onboarding/messages".into()),
        },
        action: FaultAction::Delay { delay_ms: 2000 },
        times: Some(3),
        probability: None,
        seed: None,
    };
    shared.faults.add(slow_sends).unwrap();

    let due = to_next_quarter_hour(&bed).await;
    bed.wait_until("the watch run to fail", |bed| bed.host().status()["invocations"]["failed"] == 1).await;
    assert_eq!(watch_runs(&bed), 0, "the cut run logged no summary");
    run_scheduled_probes(&bed, due, interval).await;
    let dump = bed.state();
    let recorded: Vec<bool> = ids
        .iter()
        .map(|id| {
            let account = cmk_testbed::find_by_id(&dump["arm"], id).unwrap();
            account["tags"]["cmk-watch-state"].as_str().is_some()
        })
        .collect();
    let sent = recorded.iter().filter(|r| **r).count();
    assert!((100..ACCOUNTS).contains(&sent) && sent % 100 == 0, "whole batches, not all: {sent}");
    assert!(recorded[..sent].iter().all(|r| *r), "the {sent} earliest accounts of the schedule were probed");

    let due = to_next_quarter_hour(&bed).await;
    bed.wait_until("the next watch run", |bed| watch_runs(bed) == 1).await;
    run_scheduled_probes(&bed, due, interval).await;
    assert_eq!(recorded_states(&bed), ACCOUNTS, "the next run probed every account");
    assert_eq!(bed.host().status()["invocations"]["redelivered"], 0, "{}", bed.host().status());
    assert!(bed.dead_letters().is_empty());
    assert!(bed.events().is_empty(), "healthy accounts: a baseline, no events");
    println!("a run cut by its deadline sent {sent} of {ACCOUNTS} probes; the next run probed all");
}

/// Regression: a probe whose tag write fails (here ARM throttles it for ten minutes, longer than any invocation can
/// wait) used to fail its settlement, so the host redelivered the probe at once, spending its delivery count (a
/// fleet's first run under the Storage RP's write limit dead-lettered probes this way). Now the attempt schedules a
/// retry copy, as any failed attempt does, and the copy records the state once it is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_whose_tag_write_is_throttled_retries_by_a_copy_not_a_redelivery() {
    use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    bed.send(&contoso("obd-throttled-1"), "msg-throttled-1");
    bed.wait_until("contoso completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let throttle = FaultRule {
        matcher: FaultMatch {
            host: Some("management.azure.com".into()),
            method: Some("PATCH".into()),
            path_contains: Some("/storageAccounts/contosodata".into()),
        },
        action: FaultAction::Respond { status: 429, retry_after: Some(600), error_code: None, message: None },
        times: Some(1),
        probability: None,
        seed: None,
    };
    bed.emulator.shared().faults.add(throttle).unwrap();

    let before = watch_runs(&bed);
    bed.advance_clock(INTERVAL).await;
    bed.wait_until("the watch run", |bed| watch_runs(bed) > before).await;
    bed.wait_until("a retry copy of the probe, scheduled", |bed| {
        bed.queue().iter().any(|m| {
            m.state == azure_emulator::servicebus::MessageState::Scheduled
                && m.application_properties.contains_key("cmk-attempt")
        })
    })
    .await;
    assert_eq!(watch_state(&bed), None, "not recorded yet");
    assert_eq!(bed.host().status()["invocations"]["redelivered"], 0, "{}", bed.host().status());

    // The copy comes due after the throttling: it probes again and records the baseline.
    bed.advance_clock(std::time::Duration::from_secs(11 * 60)).await;
    bed.wait_until("the state recorded", |bed| watch_state(bed).is_some()).await;
    bed.wait_queue_idle().await;
    assert_eq!(bed.host().status()["invocations"]["redelivered"], 0, "{}", bed.host().status());
    assert!(bed.dead_letters().is_empty());
    assert_eq!(bed.events().len(), 1, "only the onboarding's completed: {:#?}", bed.events());
}
