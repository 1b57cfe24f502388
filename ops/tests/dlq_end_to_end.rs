//! Done-when 1: a message the handler dead-letters shows in `dlq list` with the handler's reason; `dlq diagnose` names
//! what still blocks it; once the customer side is fixed, `dlq replay` brings it to `completed`.

mod support;

use support::OpsBed as _;

use azure_emulator::scenario::{Change, RoleAssignment, ServicePrincipal};
use azure_emulator::servicebus::NewMessage;
use serde_json::Value;
use support::{FABRIKAM_TENANT, fabrikam, stdout_json};

const FABRIKAM_SP: &str = "cccccccc-cccc-cccc-cccc-cccccccccccc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_onboarding_is_listed_diagnosed_fixed_and_replayed_to_completion() {
    // A delayed-retry copy of an onboarding that has waited on the customer for eight days: the next failure is past
    // the deadline (168 h), so the handler dead-letters it.
    let bed = support::with_handler(&[]).await;
    let mut message = NewMessage::new(fabrikam("obd-fabrikam"));
    message.message_id = Some("msg-fabrikam".into());
    message.correlation_id = Some("corr-fabrikam".into());
    message.content_type = Some("application/json".into());
    let eight_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(8);
    let first_attempt = eight_days_ago.format(&time::format_description::well_known::Rfc3339).unwrap();
    message.application_properties.insert("cmk-attempt".into(), Value::from(40));
    message.application_properties.insert("cmk-first-attempt-at".into(), Value::from(first_attempt));
    bed.send_message(message);
    bed.wait_until("the handler dead-letters the message", |bed| bed.dead_letters().len() == 1).await;
    let failed = bed.events_of("failed");
    let handler_reason = failed[0]["data"]["reasonCode"].as_str().unwrap().to_owned();

    let list = bed.run(&["--output", "json", "dlq", "list"]).await;
    assert_eq!(list.status.code(), Some(0));
    let listed = stdout_json(&list);
    let letter = &listed[0];
    assert_eq!(letter["onboardingId"], "obd-fabrikam");
    assert_eq!(letter["customerTenantId"], FABRIKAM_TENANT);
    assert_eq!(letter["handlerReason"], handler_reason.as_str(), "{letter:#}");
    assert_eq!(letter["deadLetterReason"], "MaxDeliveryCountExceeded");
    assert!(letter["handlerDescription"].as_str().is_some_and(|d| !d.is_empty()));
    let table = bed.run(&["dlq", "list", "--group-by", "reason"]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with(&handler_reason) && l.contains(" 1 ")), "{table}");

    let (master_key, _) = bed.host().keys();
    // `--function-key=KEY`: a random key may begin with `-`.
    let key = format!("--function-key={master_key}");
    let diagnose = ["--output", "json", "dlq", "diagnose", "--tenant", FABRIKAM_TENANT, &key];
    let blocked = bed.run(&diagnose).await;
    assert_eq!(blocked.status.code(), Some(3), "still blocked");
    let blocked = stdout_json(&blocked);
    assert_eq!(blocked[0]["ready"], false);
    assert_eq!(blocked[0]["blockedBy"], "customer_preflight: ServicePrincipalMissing", "{blocked:#}");

    bed.apply(vec![
        Change::AddServicePrincipal {
            service_principal: ServicePrincipal {
                id: FABRIKAM_SP.into(),
                app_id: support::APP_CLIENT_ID.into(),
                tenant_id: FABRIKAM_TENANT.into(),
                account_enabled: true,
            },
        },
        Change::GrantRole {
            vault: "fabrikam-kv".into(),
            assignment: RoleAssignment {
                principal_id: FABRIKAM_SP.into(),
                role: "Key Vault Crypto Service Encryption User".into(),
                scope: "/".into(),
            },
        },
        Change::SetPurgeProtection { vault: "fabrikam-kv".into(), enabled: true },
    ]);
    let ready = bed.run(&diagnose).await;
    assert_eq!(ready.status.code(), Some(0), "{}", String::from_utf8_lossy(&ready.stdout));
    assert_eq!(stdout_json(&ready)[0]["ready"], true);

    let audit = bed.dir.path().join("audit.jsonl");
    let replay = bed.run(&["dlq", "replay", "--yes", "--audit", audit.to_str().unwrap()]).await;
    assert_eq!(replay.status.code(), Some(0));
    bed.wait_until("the replayed onboarding completes", |bed| !bed.events_of("completed").is_empty()).await;
    assert!(bed.dead_letters().is_empty());
    let completed = &bed.events_of("completed")[0];
    assert_eq!(completed["data"]["onboardingId"], "obd-fabrikam");
    assert_eq!(completed["data"]["attempts"], 1, "the replay starts counting afresh");

    let lines = support::json_lines(&audit);
    let records = support::records(&lines, "result");
    assert_eq!(records.len(), 1);
    let record = records[0];
    assert_eq!(record["outcome"], "replayed");
    assert_eq!(record["operator"], "test-operator");
    assert_eq!(record["credential"], "sas:RootManageSharedAccessKey");
    assert_eq!(record["onboardingId"], "obd-fabrikam");
    assert_eq!(record["reason"], handler_reason.as_str());
}
