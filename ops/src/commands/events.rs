//! `events tail`: follows the events topic through a subscription. The REST API only receives destructively (an
//! abandoned message comes straight back), so each event is completed once printed.

use std::time::{Duration, Instant};

use crate::cli::{ConnectionArgs, OutputFormat, TailArgs};
use crate::connect::Connection;
use crate::events::{next_event, subscription_path, summary};
use crate::exit::Exit;

/// The longest single receive; the idle timeout is checked between receives.
const RECEIVE_WAIT: Duration = Duration::from_secs(30);

pub async fn tail(
    connection: &Connection,
    args: &ConnectionArgs,
    tail: &TailArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let entity = subscription_path(&args.topic, &tail.subscription);
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
        let Some(event) = next_event(connection, &entity, wait).await? else { continue };
        match format {
            OutputFormat::Json => println!("{}", serde_json::to_string(&event).unwrap_or_default()),
            OutputFormat::Table => {
                let (time, kind, onboarding, detail) = summary(&event);
                println!("{time:<25}  {kind:<16}  {onboarding:<24}  {detail}");
            }
        }
        count += 1;
        last_event = Instant::now();
    }
    Ok(Exit::Ok)
}
