//! `probe`: one key-watch probe of one account, now, instead of at the next timer run. The message is the one the
//! timer sends (`watch::probe_message`, in the account's session), for the onboarding and tenant the account records:
//! given, or looked up with the status function. The handler probes only for what the account's tags record, so a
//! wrong pair does nothing.

use cmk_handler::contract::{ValidatedMessage, normalize_guid, parse_message};
use cmk_handler::workflow::watch::probe_message;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::{ConnectionArgs, OutputFormat, ProbeArgs};
use crate::connect::connect;
use crate::exit::Exit;
use crate::policy;

pub async fn probe(connection: &ConnectionArgs, args: &ProbeArgs, format: OutputFormat) -> Result<Exit, String> {
    let policy = policy::load(args.settings.as_deref())?;
    let (onboarding_id, tenant) = match (&args.onboarding_id, &args.tenant) {
        (Some(onboarding_id), Some(tenant)) => (onboarding_id.clone(), tenant.clone()),
        _ => {
            let base = args.function_app.clone().or_else(|| connection.emulator.clone()).ok_or(
                "pass --onboarding-id and --tenant, or --function-app URL and --function-key KEY to look them up",
            )?;
            let key =
                args.function_key.as_deref().ok_or("pass --function-key KEY (or --onboarding-id and --tenant)")?;
            let status = crate::status::account_status(&base, key, &args.storage_account, None).await?;
            let recorded = &status["onboarding"];
            let (Some(id), Some(tenant)) = (recorded["onboardingId"].as_str(), recorded["customerTenantId"].as_str())
            else {
                return Err(format!(
                    "{} records no onboarding with a customer tenant (status {}): nothing to probe",
                    args.storage_account, status["status"]
                ));
            };
            (id.to_owned(), tenant.to_owned())
        }
    };
    let tenant = normalize_guid(&tenant).ok_or_else(|| format!("{tenant:?} is not a tenant GUID"))?;
    let now = OffsetDateTime::now_utc().format(&Rfc3339).map_err(|e| e.to_string())?;
    let run_id = format!("cmkctl-{}", uuid::Uuid::new_v4());
    let message = probe_message(&args.storage_account, &onboarding_id, &tenant, &now, &run_id)
        .ok_or_else(|| format!("{} is not a storage account resource id", args.storage_account))?;
    // The handler's own validation, with the app's settings (allowed scopes, identity set): a probe it would
    // dead-letter is not sent.
    match parse_message(&message.body, &policy) {
        Ok(ValidatedMessage::Probe(_)) => {}
        Ok(_) => return Err("the probe message did not validate as a probe".into()),
        Err(invalid) => {
            eprintln!("invalid: {} at {}: {}", invalid.code, invalid.field, invalid.message);
            return Ok(Exit::Rejected);
        }
    }
    let connected = connect(connection)?;
    connected.client.send(&connection.queue, &message).await.map_err(|e| e.to_string())?;
    let message_id = message.message_id.clone().unwrap_or_default();
    let sent = json!({ "sent": true, "queue": connection.queue, "messageId": message_id,
        "sessionId": message.session_id, "onboardingId": onboarding_id, "customerTenantId": tenant });
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&sent).unwrap_or_default()),
        OutputFormat::Table => println!(
            "probe of {} for onboarding {onboarding_id} sent as message {message_id}; its events (if the state changed) \
             follow on the topic",
            args.storage_account
        ),
    }
    Ok(Exit::Ok)
}
