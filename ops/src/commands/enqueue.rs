//! `validate` and `enqueue`: the handler's own validator, with the app's own settings, before anything is sent.

use std::io::Read;
use std::path::Path;

use cmk_handler::azure::servicebus::OutgoingMessage;
use cmk_handler::contract::{ValidatedOnboarding, parse_and_validate};
use serde_json::json;

use crate::cli::{ConnectionArgs, EnqueueArgs, OutputFormat, ValidateArgs};
use crate::connect::connect;
use crate::exit::Exit;
use crate::policy;

pub fn validate(args: &ValidateArgs, format: OutputFormat) -> Result<Exit, String> {
    Ok(match checked(args, format)? {
        Some((onboarding, _)) => {
            report(format, json!({ "valid": true, "onboardingId": onboarding.onboarding_id }), "valid");
            Exit::Ok
        }
        None => Exit::Rejected,
    })
}

pub async fn enqueue(connection: &ConnectionArgs, args: &EnqueueArgs, format: OutputFormat) -> Result<Exit, String> {
    let Some((onboarding, body)) = checked(&args.message, format)? else { return Ok(Exit::Rejected) };
    let client = connect(connection)?.client;
    let message_id = args.message_id.clone().unwrap_or_else(|| onboarding.onboarding_id.clone());
    // One session per storage account serialises its onboardings; any other SessionId is dead-lettered.
    let session_id = onboarding.storage_account.session_id();
    if let Some(given) = args.session_id.as_ref().filter(|given| **given != session_id) {
        return Err(format!(
            "--session-id {given:?} is not the storage account's session {session_id:?}; the handler would dead-letter it"
        ));
    }
    let message = OutgoingMessage {
        body,
        content_type: Some("application/json".to_owned()),
        message_id: Some(message_id.clone()),
        correlation_id: Some(args.correlation_id.clone().unwrap_or_else(|| onboarding.onboarding_id.clone())),
        session_id: Some(session_id.clone()),
        ..OutgoingMessage::default()
    };
    client.send(&connection.queue, &message).await.map_err(|e| e.to_string())?;
    let sent = json!({ "sent": true, "queue": connection.queue, "messageId": message_id, "sessionId": session_id, "onboardingId": onboarding.onboarding_id });
    report(format, sent, &format!("sent {} as message {message_id} to {}", onboarding.onboarding_id, connection.queue));
    Ok(Exit::Ok)
}

/// The validated message and its bytes, or `None` after reporting why it is invalid.
fn checked(args: &ValidateArgs, format: OutputFormat) -> Result<Option<(ValidatedOnboarding, Vec<u8>)>, String> {
    let policy = policy::load(args.settings.as_deref())?;
    let body = read(&args.file)?;
    match parse_and_validate(&body, &policy) {
        Ok(onboarding) => Ok(Some((onboarding, body))),
        Err(error) => {
            let rejected =
                json!({ "valid": false, "reasonCode": error.code, "field": error.field, "message": error.message });
            let text = format!("invalid: {} at {}: {}", error.code, error.field, error.message);
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rejected).unwrap_or_default()),
                OutputFormat::Table => eprintln!("{text}"),
            }
            Ok(None)
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    if file == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(body);
    }
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

fn report(format: OutputFormat, value: serde_json::Value, text: &str) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default()),
        OutputFormat::Table => println!("{text}"),
    }
}
