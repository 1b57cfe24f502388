//! `validate` and `enqueue`: the handler's own validator, with the app's own settings, before anything is sent
//! (onboarding and offboarding messages alike: they share the queue and the account's session).

use std::io::Read;
use std::path::Path;

use cmk_handler::contract::{ValidatedMessage, parse_message};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{rfc3339, state_dir};
use crate::cli::{ConnectionArgs, EnqueueArgs, OutputFormat, ValidateArgs};
use crate::connect::connect;
use crate::exit::Exit;
use crate::journal::{DUPLICATE_DETECTION_WINDOW, Journal, Sent, Verdict};
use crate::messages::{Onboarding, content_hash, onboarding_message};
use crate::policy;

pub fn validate(args: &ValidateArgs, format: OutputFormat) -> Result<Exit, String> {
    Ok(match checked(args, format)? {
        Some((onboarding, _)) => {
            report(format, json!({ "valid": true, "onboardingId": onboarding.onboarding_id() }), "valid");
            Exit::Ok
        }
        None => Exit::Rejected,
    })
}

pub async fn enqueue(connection: &ConnectionArgs, args: &EnqueueArgs, format: OutputFormat) -> Result<Exit, String> {
    let Some((onboarding, body)) = checked(&args.message, format)? else { return Ok(Exit::Rejected) };
    // One session per storage account serialises its onboardings; any other SessionId is dead-lettered.
    let session_id = onboarding.storage_account().session_id();
    if let Some(given) = args.session_id.as_ref().filter(|given| **given != session_id) {
        return Err(format!(
            "--session-id {given:?} is not the storage account's session {session_id:?}; the handler would dead-letter it"
        ));
    }
    let connected = connect(connection)?;
    let message = onboarding_message(&Onboarding {
        body,
        onboarding_id: onboarding.onboarding_id().to_owned(),
        message_id: args.message_id.clone(),
        correlation_id: args.correlation_id.clone(),
        session_id: Some(session_id.clone()),
    });
    let message_id = message.message_id.clone().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let sent = Sent {
        at: now,
        namespace: connected.namespace.clone(),
        queue: connection.queue.clone(),
        message_id: message_id.clone(),
        onboarding_id: onboarding.onboarding_id().to_owned(),
        content_hash: content_hash(&message.body),
    };
    let journal = Journal::at(&args.journal.clone().unwrap_or_else(|| state_dir().join("sent.jsonl")));
    let dropped = match journal.verdict(&sent, now)? {
        Verdict::New => None,
        Verdict::Repeat(first) => Some(("repeat", first, "the same content was sent")),
        Verdict::Swallowed(first) => Some(("swallowed", first, "OTHER content was sent with this MessageId")),
    };
    if let Some((kind, first, what)) = dropped {
        let until = rfc3339(first.at + DUPLICATE_DETECTION_WINDOW);
        let text = format!(
            "not sent: {what} at {} as message {message_id}; Service Bus would drop this send as a duplicate until \
             {until}{}",
            rfc3339(first.at),
            if kind == "swallowed" { " (leave out --message-id: the default id changes with the content)" } else { "" }
        );
        let value = json!({ "sent": false, "duplicate": kind, "queue": connection.queue, "messageId": message_id,
            "onboardingId": onboarding.onboarding_id(), "firstSentAt": rfc3339(first.at), "droppedUntil": until });
        match format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default()),
            OutputFormat::Table => eprintln!("{text}"),
        }
        return Ok(Exit::Duplicate);
    }
    connected.client.send(&connection.queue, &message).await.map_err(|e| e.to_string())?;
    journal.record(&sent)?;
    let value = json!({ "sent": true, "queue": connection.queue, "messageId": message_id, "sessionId": session_id,
        "onboardingId": onboarding.onboarding_id() });
    report(
        format,
        value,
        &format!("sent {} as message {message_id} to {}", onboarding.onboarding_id(), connection.queue),
    );
    Ok(Exit::Ok)
}

/// The validated message and its bytes, or `None` after reporting why it is invalid.
fn checked(args: &ValidateArgs, format: OutputFormat) -> Result<Option<(ValidatedMessage, Vec<u8>)>, String> {
    let policy = policy::load(args.settings.as_deref())?;
    let body = read(&args.file)?;
    match parse_message(&body, &policy) {
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
