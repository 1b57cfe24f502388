//! The `OnboardingStatus` function (decision 30) through the real binary under the emulated host: the function key
//! is required, the answer comes from the account in Azure (its encryption, the onboarding its tags record, the key
//! watch's record), an onboarding that is not the recorded one is never reported as done, and accounts outside the
//! allowed scopes are never read.

use std::path::Path;

use azure_emulator::faults::{FaultAction, FaultMatch, FaultRule};
use azure_emulator::scenario::Change;
use serde_json::Value;

use crate::key_watch::{SCHEDULE, next_run};
use crate::testbed::{CONTOSO_ACCOUNT, TestBed, contoso, sample_scenario};

const OUTSIDE: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/elsewhere/providers/Microsoft.Storage/storageAccounts/contosodata";
const UNKNOWN: &str = "/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/isv-customers/providers/Microsoft.Storage/storageAccounts/nosuchaccount";

enum Key<'a> {
    None,
    Header(&'a str),
    Query(&'a str),
}

async fn status(bed: &TestBed, query: &[(&str, &str)], key: Key<'_>) -> (u16, Option<String>, Value) {
    let mut pairs: Vec<(&str, &str)> = query.to_vec();
    let mut request = reqwest::Client::new().get(format!("{}/api/status", bed.emulator.url()));
    match key {
        Key::None => {}
        Key::Header(key) => request = request.header("x-functions-key", key),
        Key::Query(key) => pairs.push(("code", key)),
    }
    let response = request.query(&pairs).send().await.unwrap();
    let code = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (code, retry_after, response.json().await.unwrap_or(Value::Null))
}

fn check_schema(answer: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/status-response.v1.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(answer).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{answer:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_from_the_account_with_a_function_key_only() {
    let bed = crate::testbed::start().await;
    let (master, function_key) = bed.host().keys();
    let account = [("storageAccountId", CONTOSO_ACCOUNT)];

    // The host refuses the function without a key, or with a wrong one: the handler never sees those.
    let account_reads = |bed: &TestBed| bed.requests().iter().filter(|r| r.path.contains("/storageAccounts/")).count();
    assert_eq!(status(&bed, &account, Key::None).await.0, 401);
    assert_eq!(status(&bed, &account, Key::Header("not-the-key")).await.0, 401);
    assert_eq!(status(&bed, &account, Key::Query("not-the-key")).await.0, 401);
    assert_eq!(account_reads(&bed), 0, "nothing was read for a refused call");

    // Before any onboarding: not onboarded, and an onboarding asked about is not recorded.
    let asked = [("storageAccountId", CONTOSO_ACCOUNT), ("onboardingId", "obd-status-1")];
    let (code, _, before) = status(&bed, &asked, Key::Header(&function_key)).await;
    assert_eq!(code, 200, "{before}");
    check_schema(&before);
    assert_eq!(before["status"], "not_onboarded", "{before:#}");
    assert_eq!(before["onboarding"], Value::Null);
    assert_eq!(before["requestedOnboarding"]["standing"], "no_onboarding_recorded");
    assert_eq!(before["encryption"]["throughOurIdentity"], false);

    // Onboarded: the key Storage uses, and the onboarding, from the account itself.
    bed.send(&contoso("obd-status-1"), "msg-status-1");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;
    let completed = bed.events_of("completed")[0]["data"].clone();
    let (code, _, onboarded) = status(&bed, &asked, Key::Query(&function_key)).await;
    assert_eq!(code, 200, "the key in the query works too: {onboarded}");
    check_schema(&onboarded);
    assert_eq!(onboarded["status"], "onboarded", "{onboarded:#}");
    assert_eq!(onboarded["storageAccountId"], CONTOSO_ACCOUNT);
    assert_eq!(onboarded["onboarding"]["onboardingId"], "obd-status-1");
    assert_eq!(onboarded["onboarding"]["customerTenantId"], completed["customerTenantId"]);
    assert!(onboarded["onboarding"]["onboardingOrder"].as_str().is_some_and(|o| o.contains('#')), "{onboarded:#}");
    assert_eq!(onboarded["requestedOnboarding"]["standing"], "current");
    let encryption = &onboarded["encryption"];
    assert_eq!(encryption["keySource"], "Microsoft.Keyvault");
    assert_eq!(encryption["throughOurIdentity"], true);
    assert_eq!(encryption["keyName"], "cmk");
    assert_eq!(
        encryption["currentVersionedKeyIdentifier"], completed["currentVersionedKeyIdentifier"],
        "{encryption:#}"
    );
    assert_eq!(onboarded["watch"], Value::Null, "no probe yet");

    // A newer onboarding of the account: the older one is answered truthfully, never as done.
    bed.send(&contoso("obd-status-2"), "msg-status-2");
    bed.wait_until("the second completed", |bed| bed.events_of("completed").len() == 2).await;
    bed.wait_queue_idle().await;
    let (_, _, older) = status(&bed, &asked, Key::Header(&master)).await;
    check_schema(&older);
    assert_eq!(older["requestedOnboarding"]["standing"], "other_onboarding_recorded", "{older:#}");
    assert_eq!(older["onboarding"]["onboardingId"], "obd-status-2");
    assert_eq!(older["status"], "onboarded", "the account is; the asked onboarding is not its current one");

    // Status writes nothing and publishes nothing.
    let writes = |bed: &TestBed| bed.requests().iter().filter(|r| r.method != "GET").count();
    let (writes_before, events_before) = (writes(&bed), bed.events().len());
    let seq_before = bed.requests().last().map_or(0, |r| r.seq);

    // No such account in an allowed scope: 404 with Azure's reason.
    let (code, _, missing) = status(&bed, &[("storageAccountId", UNKNOWN)], Key::Header(&function_key)).await;
    assert_eq!((code, missing["error"]["code"].as_str()), (404, Some("StorageAccountNotFound")), "{missing}");

    // Outside the allowed scopes: refused before anything is read.
    let (code, _, outside) = status(&bed, &[("storageAccountId", OUTSIDE)], Key::Header(&function_key)).await;
    assert_eq!((code, outside["error"]["code"].as_str()), (403, Some("StorageAccountNotAllowed")), "{outside}");

    // Bad input: 400 with the contract's reason codes.
    for (query, reason) in [
        (vec![("storageAccountId", "contosodata")], "InvalidStorageAccountId"),
        (vec![], "InvalidStorageAccountId"),
        (vec![("storageAccountId", CONTOSO_ACCOUNT), ("onboardingId", "../x")], "InvalidOnboardingId"),
        (vec![("storageAccountId", CONTOSO_ACCOUNT), ("storageAccountId", CONTOSO_ACCOUNT)], "InvalidStorageAccountId"),
        (vec![("storageAccountId", CONTOSO_ACCOUNT), ("verbose", "1")], "UnknownParameter"),
    ] {
        let (code, _, bad) = status(&bed, &query, Key::Header(&function_key)).await;
        assert_eq!((code, bad["error"]["code"].as_str()), (400, Some(reason)), "{query:?}: {bad}");
    }
    let after: Vec<_> = bed.requests().into_iter().filter(|r| r.seq > seq_before).collect();
    assert!(after.iter().all(|r| !r.path.to_ascii_lowercase().contains("/resourcegroups/elsewhere/")), "{after:#?}");
    assert_eq!(after.iter().filter(|r| r.path.contains("/storageAccounts/")).count(), 1, "only the 404's read");
    assert_eq!((writes(&bed), bed.events().len()), (writes_before, events_before), "status changes nothing");

    // The function key never reaches the handler's logs (it may arrive in the query).
    assert!(bed.host().handler_output().iter().all(|line| !line.contains(&function_key)), "the key was logged");

    // Azure throttling the read past the invocation's time: 503 with Azure's Retry-After, so the caller asks later.
    bed.emulator
        .shared()
        .faults
        .add(FaultRule {
            matcher: FaultMatch {
                host: Some("management.azure.com".into()),
                method: Some("GET".into()),
                path_contains: Some("/storageAccounts/contosodata".into()),
            },
            action: FaultAction::Respond {
                status: 429,
                retry_after: Some(3600),
                error_code: Some("TooManyRequests".into()),
                message: None,
            },
            times: None,
            probability: None,
            seed: None,
        })
        .unwrap();
    let (code, retry_after, throttled) = status(&bed, &account, Key::Header(&function_key)).await;
    assert_eq!((code, retry_after.as_deref()), (503, Some("3600")), "{throttled}");
    assert_eq!(throttled["error"]["disposition"], "transient", "{throttled}");
}

/// After probes: the last event the key watch published and when the state was seen, from the account's tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_last_probe_state_and_event() {
    let bed = crate::testbed::start_with(sample_scenario(), &[("CMK_WATCH_SCHEDULE", SCHEDULE)]).await;
    let (_, function_key) = bed.host().keys();
    let account = [("storageAccountId", CONTOSO_ACCOUNT), ("onboardingId", "obd-status-watch")];
    bed.send(&contoso("obd-status-watch"), "msg-status-watch");
    bed.wait_until("completed", |bed| bed.events_of("completed").len() == 1).await;
    bed.wait_queue_idle().await;

    next_run(&bed).await;
    let (code, _, baseline) = status(&bed, &account, Key::Header(&function_key)).await;
    assert_eq!(code, 200, "{baseline}");
    check_schema(&baseline);
    let watch = &baseline["watch"];
    assert_eq!(watch["keyAccess"], "ok", "{baseline:#}");
    assert_eq!(watch["lastEvent"], Value::Null, "a healthy baseline publishes nothing");
    assert!(watch["stateSince"].is_string(), "{watch:#}");

    bed.apply(vec![Change::SetKeyEnabled { vault: "contoso-kv".into(), key: "cmk".into(), enabled: false }]);
    next_run(&bed).await;
    let lost = bed.events_of("key_access_lost");
    assert_eq!(lost.len(), 1, "{:#?}", bed.events());
    let (_, _, after) = status(&bed, &account, Key::Header(&function_key)).await;
    check_schema(&after);
    let watch = &after["watch"];
    assert_eq!(watch["keyAccess"], "KeyDisabled", "{after:#}");
    assert_eq!(watch["lastEvent"]["type"], "com.cmkonboard.onboarding.key_access_lost.v1");
    assert_eq!(watch["lastEvent"]["id"], lost[0]["id"], "the event's own id");
    assert!(watch["stateSince"].as_str() >= baseline["watch"]["stateSince"].as_str(), "{watch:#}");
    assert_eq!(after["requestedOnboarding"]["standing"], "current");
}
