//! `events tail`: follows the events topic through a subscription. The REST API only receives destructively (an
//! abandoned message comes straight back), so each event is completed once printed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{ConnectionArgs, OutputFormat, TailArgs};
use crate::connect::Connection;
use crate::exit::Exit;

/// The longest single receive; the idle timeout is checked between receives.
const RECEIVE_WAIT: Duration = Duration::from_secs(30);

pub async fn tail(
    connection: &Connection,
    args: &ConnectionArgs,
    tail: &TailArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let entity = format!("{}/subscriptions/{}", args.topic, tail.subscription);
    let idle_timeout = tail.idle_timeout.map(Duration::from_secs);
    let mut last_event = Instant::now();
    let mut count = 0;
    if format == OutputFormat::Table {
        println!("{:<25}  {:<16}  {:<24}  DETAIL", "TIME", "TYPE", "ONBOARDING ID");
    }
    while tail.max.is_none_or(|max| count < max) {
        let wait = match idle_timeout {
            Some(idle) => match idle.checked_sub(last_event.elapsed()) {
                Some(left) if !left.is_zero() => left.min(RECEIVE_WAIT),
                _ => break,
            },
            None => RECEIVE_WAIT,
        };
        let Some(message) = connection.client.peek_lock(&entity, wait).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let event: Value = serde_json::from_slice(&message.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
        match format {
            OutputFormat::Json => println!("{}", serde_json::to_string(&event).unwrap_or_default()),
            OutputFormat::Table => println!("{}", line(&event)),
        }
        connection.client.complete(&message).await.map_err(|e| e.to_string())?;
        count += 1;
        last_event = Instant::now();
    }
    Ok(Exit::Ok)
}

/// `time  type  onboarding id  reason or key`.
fn line(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("?");
    let short = kind.rsplit('.').nth(1).unwrap_or(kind);
    let data = &event["data"];
    let detail = data["reasonCode"]
        .as_str()
        .map(|reason| match data["message"].as_str() {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_owned(),
        })
        .or_else(|| data["currentVersionedKeyIdentifier"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{:<25}  {short:<16}  {:<24}  {detail}",
        event["time"].as_str().unwrap_or("?"),
        data["onboardingId"].as_str().or(event["onboardingid"].as_str()).unwrap_or("?")
    )
}
