//! `dlq replay` and `dlq purge`: select, confirm, act on each message (rate-limited, concurrent, with progress), audit.
//!
//! Replay order is send-then-complete: if the run dies between the two, the dead letter is still there (its lock
//! expires) and the resubmission is in the queue. Re-running sends the same MessageId again, which the queue's
//! duplicate detection drops, then completes the dead letter; the end state is the same as an uninterrupted run.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use cmk_handler::azure::servicebus::ReceivedMessage;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::select;
use crate::audit::{AuditLog, AuditRecord, operator};
use crate::cli::{ActionArgs, ConnectionArgs, OutputFormat};
use crate::connect::Connection;
use crate::dead_letter::{DeadLetter, Filter};
use crate::exit::Exit;
use crate::output::print;
use crate::progress::{Progress, RateLimit};
use crate::replay_message::{replay_message, replay_message_id};
use crate::walk::DeadLetterWalk;

#[derive(Debug, Clone, Copy)]
pub enum Action {
    Replay { rate: f64, concurrency: usize },
    Purge,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Replay { .. } => "replay",
            Self::Purge => "purge",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    action: &'static str,
    dry_run: bool,
    dead_letters_seen: usize,
    selected: usize,
    succeeded: usize,
    failed: usize,
    elapsed_seconds: f64,
}

/// What every task needs to act on one message and record it.
#[derive(Debug, Clone)]
struct Context {
    connection: Connection,
    queue: String,
    dead_letter_queue: String,
    operator: String,
    audit: AuditLog,
}

pub async fn run(
    connection: &Connection,
    args: &ConnectionArgs,
    action: Action,
    options: &ActionArgs,
    format: OutputFormat,
) -> Result<Exit, String> {
    let filter = Filter::new(options.filter.clone());
    if !options.dry_run && !options.yes {
        let selection = select(&connection.client, &args.queue, &filter, options.limit).await?;
        if selection.messages.is_empty() {
            eprintln!("no dead letter matches; nothing to {}", action.name());
            return Ok(Exit::Ok);
        }
        if !confirm(action, selection.messages.len(), &args.queue) {
            return Ok(Exit::Aborted);
        }
    }
    let audit = AuditLog::open(options.audit.as_deref())?;
    let mut walk = DeadLetterWalk::new(&connection.client, &args.queue);
    let mut connection = connection.clone();
    connection.credential = connection.principal().await;
    let context = Context {
        connection,
        queue: args.queue.clone(),
        dead_letter_queue: walk.entity().to_owned(),
        operator: operator(args.operator.as_deref()),
        audit,
    };
    let (rate, concurrency) = match action {
        Action::Replay { rate, concurrency } => (rate, concurrency),
        Action::Purge => (0.0, 16),
    };
    let started = Instant::now();
    let mut limiter = RateLimit::new(rate);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<bool> = JoinSet::new();
    let mut progress = Progress::new(action.name(), options.limit);
    let (mut seen, mut selected, mut succeeded, mut failed) = (0, 0, 0, 0);

    let walked: Result<(), String> = async {
        while options.limit.is_none_or(|limit| selected < limit) {
            // Settle what finished, so progress moves while the walk goes on.
            while let Some(done) = tasks.try_join_next() {
                tally(done, &mut succeeded, &mut failed, &mut progress);
            }
            let Some(message) = walk.next().await.map_err(|e| e.to_string())? else { break };
            seen += 1;
            let letter = DeadLetter::from_message(&message);
            if !filter.matches(&letter) {
                walk.hold(message);
                continue;
            }
            selected += 1;
            if options.dry_run {
                let outcome = match action {
                    Action::Replay { .. } => "would-replay",
                    Action::Purge => "would-purge",
                };
                context.audit.write(&context.record(action, true, &message, &letter, outcome, None))?;
                walk.hold(message);
                succeeded += 1;
                progress.advance(true);
                continue;
            }
            limiter.acquire().await;
            let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            let context = context.clone();
            tasks.spawn(async move {
                let ok = context.act(action, message, letter).await;
                drop(permit);
                ok
            });
        }
        Ok(())
    }
    .await;
    while let Some(done) = tasks.join_next().await {
        tally(done, &mut succeeded, &mut failed, &mut progress);
    }
    progress.finish();
    let released = walk.release().await.map_err(|e| format!("could not unlock every dead letter: {e}"));
    walked?;
    released?;

    let summary = Summary {
        action: action.name(),
        dry_run: options.dry_run,
        dead_letters_seen: seen,
        selected,
        succeeded,
        failed,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let headers = ["ACTION", "DRY RUN", "SEEN", "SELECTED", "SUCCEEDED", "FAILED", "SECONDS"];
    let row = vec![
        summary.action.to_owned(),
        summary.dry_run.to_string(),
        seen.to_string(),
        selected.to_string(),
        succeeded.to_string(),
        failed.to_string(),
        format!("{:.2}", summary.elapsed_seconds),
    ];
    if options.audit.is_some() {
        print(format, &summary, &headers, vec![row]);
    } else {
        // Stdout carries the audit records; the summary must not break a consumer of JSON lines.
        eprint!("{}", crate::output::table(&headers, &[row]));
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

fn tally(
    done: Result<bool, tokio::task::JoinError>,
    succeeded: &mut usize,
    failed: &mut usize,
    progress: &mut Progress,
) {
    let ok = done.unwrap_or(false);
    if ok {
        *succeeded += 1;
    } else {
        *failed += 1;
    }
    progress.advance(ok);
}

impl Context {
    /// Acts on one locked dead letter and audits the outcome; `true` when it succeeded.
    async fn act(&self, action: Action, message: ReceivedMessage, letter: DeadLetter) -> bool {
        let client = &self.connection.client;
        let (result, replay_id, target) = match action {
            Action::Replay { .. } => {
                let target = target_queue(&message, &self.queue);
                let outgoing =
                    replay_message(&self.dead_letter_queue, &message, &self.operator, OffsetDateTime::now_utc());
                let sent = client.send(&target, &outgoing).await;
                // Only after the send succeeded: a failure here leaves the dead letter for the next run.
                let result = match sent {
                    Ok(()) => client.complete(&message).await,
                    Err(error) => Err(error),
                };
                (result, outgoing.message_id, Some(target))
            }
            Action::Purge => (client.complete(&message).await, None, None),
        };
        let (outcome, error) = match (&result, action) {
            (Ok(()), Action::Replay { .. }) => ("replayed", None),
            (Ok(()), Action::Purge) => ("purged", None),
            (Err(error), _) => ("failed", Some(error.to_string())),
        };
        let mut record = self.record(action, false, &message, &letter, outcome, error);
        record.replay_message_id = replay_id;
        record.target_queue = target;
        let audited = self.audit.write(&record);
        if let Err(problem) = &audited {
            eprintln!("error: {problem}");
        }
        result.is_ok() && audited.is_ok()
    }

    fn record(
        &self,
        action: Action,
        dry_run: bool,
        message: &ReceivedMessage,
        letter: &DeadLetter,
        outcome: &'static str,
        error: Option<String>,
    ) -> AuditRecord {
        let replay = matches!(action, Action::Replay { .. });
        AuditRecord {
            at: OffsetDateTime::now_utc(),
            operator: self.operator.clone(),
            credential: self.connection.credential.clone(),
            action: action.name(),
            dry_run,
            dead_letter_queue: self.dead_letter_queue.clone(),
            sequence_number: letter.sequence_number,
            message_id: letter.message_id.clone(),
            onboarding_id: letter.onboarding_id.clone(),
            reason: letter.reason().to_owned(),
            outcome,
            replay_message_id: replay.then(|| replay_message_id(&self.dead_letter_queue, message)),
            target_queue: replay.then(|| target_queue(message, &self.queue)),
            error,
        }
    }
}

/// The queue the message was dead-lettered from: `DeadLetterSource` when the broker recorded one (auto-forwarding
/// chains), else the queue whose dead-letter queue this is.
fn target_queue(message: &ReceivedMessage, queue: &str) -> String {
    message
        .broker_properties
        .dead_letter_source
        .as_deref()
        .filter(|source| !source.is_empty() && !source.contains("/subscriptions/"))
        .unwrap_or(queue)
        .to_owned()
}

/// Asks on the terminal. Without one (a script) nothing destructive happens unless `--yes` was given.
fn confirm(action: Action, count: usize, queue: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!("refusing to {} {count} dead letter(s) without confirmation: no terminal; pass --yes", action.name());
        return false;
    }
    eprint!("{} {count} dead letter(s) from {queue}/$DeadLetterQueue? [y/N] ", action.name());
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
