//! `events tail`: follows the events topic through a subscription. The REST API only receives destructively (an
//! abandoned message comes straight back), so each event is completed once printed.
//!
//! With filters (`--type`, `--onboarding-id`, `--tenant`, `--storage-account`) the tail consumes only what it prints:
//! an event it does not show is held locked (renewed, `walk::LockSet`) so the tail moves past it, and every held
//! event is released (abandoned) when the tail ends, back to the subscription for its other readers (the console, the
//! next tail). Dropping them instead would lose events an operator did not ask about on a shared subscription. The
//! cost: each release counts as a delivery (the `ops` subscription dead-letters an event after 10), and the tail
//! holds at most `--hold-limit` events and at most an hour (`walk::MAX_HOLD`), then stops.

use std::time::{Duration, Instant};

use cmk_handler::events::EventType;
use serde_json::Value;

use crate::cli::{ConnectionArgs, OutputFormat, TailArgs};
use crate::connect::Connection;
use crate::events::{EventFilter, next_event, subscription_path, summary};
use crate::exit::Exit;
use crate::walk::{LockSet, MAX_HOLD};

/// The longest single receive; the idle timeout is checked between receives.
const RECEIVE_WAIT: Duration = Duration::from_secs(30);

pub async fn tail(
    connection: &Connection,
    args: &ConnectionArgs,
    tail: &TailArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let entity = subscription_path(&args.topic, &tail.subscription);
    let filter = EventFilter {
        types: tail.event_types.clone(),
        onboarding_ids: tail.onboarding_id.clone(),
        tenants: tail.tenant.clone(),
        storage_accounts: tail.storage_account.clone(),
    };
    // A misspelt type would match nothing and hold every event until the hold limit: refuse it.
    if let Some(unknown) = filter.types.iter().find(|t| !crate::events::is_event_type(t)) {
        return Err(format!(
            "--type {unknown:?} is no event type; use one of {}",
            EventType::ALL.iter().map(|t| crate::events::short_type(t.as_str())).collect::<Vec<_>>().join(", ")
        ));
    }
    if format == OutputFormat::Table {
        println!("{:<25}  {:<16}  {:<24}  DETAIL", "TIME", "TYPE", "ONBOARDING ID");
    }
    if filter.is_empty() {
        return unfiltered(connection, &entity, tail, format).await;
    }
    filtered(connection, &entity, tail, &filter, format).await
}

/// When the tail stops for lack of events: `None` to follow forever.
fn idle_deadline(tail: &TailArgs, last_shown: Instant) -> Option<Instant> {
    tail.idle_timeout.map(|seconds| last_shown + Duration::from_secs(seconds))
}

fn show(event: &Value, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(event).unwrap_or_default()),
        OutputFormat::Table => {
            let (time, kind, onboarding, detail) = summary(event);
            println!("{time:<25}  {kind:<16}  {onboarding:<24}  {detail}");
        }
    }
}

async fn unfiltered(
    connection: &Connection,
    entity: &str,
    tail: &TailArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let mut last_shown = Instant::now();
    let mut count = 0;
    while tail.max.is_none_or(|max| count < max) {
        let wait = match idle_deadline(tail, last_shown) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(RECEIVE_WAIT),
                _ => break,
            },
            None => RECEIVE_WAIT,
        };
        let Some(event) = next_event(connection, entity, wait).await? else { continue };
        show(&event, format);
        count += 1;
        last_shown = Instant::now();
    }
    Ok(Exit::Ok)
}

async fn filtered(
    connection: &Connection,
    entity: &str,
    tail: &TailArgs,
    filter: &EventFilter,
    format: OutputFormat,
) -> Result<Exit, String> {
    let held = LockSet::on(&connection.client, entity);
    let started = Instant::now();
    let mut last_shown = Instant::now();
    let mut count = 0;
    let outcome = loop {
        if tail.max.is_some_and(|max| count >= max) {
            break Ok(());
        }
        if idle_deadline(tail, last_shown).is_some_and(|until| Instant::now() >= until) {
            break Ok(());
        }
        if held.len() >= tail.hold_limit {
            eprintln!("{} events not shown are held (--hold-limit); stopping to release them", held.len());
            break Ok(());
        }
        if started.elapsed() >= MAX_HOLD {
            eprintln!("a filtered tail holds the events it does not show for an hour at most; stopping");
            break Ok(());
        }
        // Each receive waits a second at most (the REST API's minimum), so the bounds above are checked often.
        let message = match held.lock_next().await {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(error) => break Err(error.to_string()),
        };
        let event: Value = serde_json::from_slice(&message.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&message.body).into_owned()));
        if !filter.matches(&event) {
            continue;
        }
        let sequence = message.broker_properties.sequence_number.unwrap_or_default();
        let taken = held.take(sequence).map_err(|why| format!("event {sequence}: {why}"));
        if let Err(error) = async { connection.client.complete(&taken?).await.map_err(|e| e.to_string()) }.await {
            break Err(error);
        }
        show(&event, format);
        count += 1;
        last_shown = Instant::now();
    };
    let skipped = held.len();
    let released = held.release().await.map_err(|e| format!("releasing {skipped} held events: {e}"));
    outcome?;
    released?;
    Ok(Exit::Ok)
}
