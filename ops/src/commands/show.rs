//! `dlq show`: one dead letter in full.

use serde_json::{Value, json};

use crate::cli::{ConnectionArgs, FilterArgs, OutputFormat, ShowArgs};
use crate::connect::Connection;
use crate::dead_letter::Filter;
use crate::exit::Exit;
use crate::selection::{self, Bounds};

pub async fn show(
    connection: &Connection,
    args: &ConnectionArgs,
    show: &ShowArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let filter = Filter::new(FilterArgs { sequence: vec![show.sequence], ..FilterArgs::default() });
    let bounds = Bounds { limit: Some(1), ..Bounds::default() };
    let (selected, _) = selection::read(&connection.client, &args.queue, &filter, bounds).await?;
    let Some((message, letter)) = selected.into_iter().next() else {
        return Err(format!("no dead letter with sequence number {} in {}", show.sequence, args.queue));
    };
    let body = serde_json::from_slice::<Value>(&message.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
    let broker = &message.broker_properties;
    let system = json!({
        "messageId": broker.message_id,
        "correlationId": broker.correlation_id,
        "sessionId": broker.session_id,
        "label": broker.label,
        "contentType": message.content_type,
        "sequenceNumber": broker.sequence_number,
        "enqueuedSequenceNumber": broker.enqueued_sequence_number,
        "enqueuedTimeUtc": broker.enqueued_time_utc,
        "deliveryCount": broker.delivery_count,
        "timeToLive": broker.time_to_live,
        "state": broker.state,
        "deadLetterSource": broker.dead_letter_source,
    });
    let full = json!({
        "summary": letter,
        "systemProperties": system,
        "applicationProperties": message.application_properties,
        "body": body,
    });
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&full).unwrap_or_default()),
        OutputFormat::Table => {
            println!("Dead letter {} in {}/$DeadLetterQueue", show.sequence, args.queue);
            println!("\nSystem properties:");
            print_properties(&system);
            println!("\nApplication properties:");
            print_properties(&json!(message.application_properties));
            println!("\nBody:\n{}", serde_json::to_string_pretty(&body).unwrap_or_default());
        }
    }
    Ok(Exit::Ok)
}

fn print_properties(properties: &Value) {
    let Some(map) = properties.as_object() else { return };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in map.iter().filter(|(_, v)| !v.is_null()) {
        let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        println!("  {name:<width$}  {text}");
    }
}
