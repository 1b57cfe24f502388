//! Replay and purge of a locked selection: the one implementation behind `dlq replay`, `dlq purge` and the console.
//!
//! The run acts on the messages it selected and still holds, and on nothing else. Before the first one it archives
//! what a purge deletes and writes (and syncs) its intent to the audit trail; each outcome follows as soon as it is
//! known, and an end record closes the run.
//!
//! Replay order is send-then-complete: if the run dies between the two, the dead letter is still there (its lock
//! expires) and the resubmission is in the queue. Re-running sends the same MessageId again, which the queue's
//! duplicate detection drops, then completes the dead letter; the end state is the same as an uninterrupted run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cmk_handler::azure::servicebus::ReceivedMessage;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::audit::{AuditLog, AuditRecord, IntendedMessage, Intent, host_name};
use crate::connect::Connection;
use crate::dead_letter::DeadLetter;
use crate::messages::{replay_message, replay_message_id};
use crate::progress::RateLimit;
use crate::selection::{Locked, Report};

#[derive(Debug, Clone)]
pub enum Action {
    /// Resubmit to the queue the message came from, then complete the dead letter.
    Replay { rate: f64, concurrency: usize },
    /// Delete, after archiving to `archive` (unless `None`).
    Purge { archive: Option<PathBuf> },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replay { .. } => "replay",
            Self::Purge { .. } => "purge",
        }
    }
}

/// Who acts, where, and where it is recorded.
#[derive(Debug, Clone)]
pub struct Actor {
    pub connection: Connection,
    /// The onboarding queue (replays go back to it unless the broker recorded another source).
    pub queue: String,
    pub operator: String,
    pub audit: AuditLog,
}

/// How far a run has got: `done` of `total` settled, `failed` of them not done.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub run: String,
    pub action: &'static str,
    pub selected: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub elapsed_seconds: f64,
    pub audit_file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<PathBuf>,
    /// What the walk found besides the selection (bound selections): reported, not acted on.
    pub report: Report,
    pub outcomes: Vec<AuditRecord>,
}

/// Acts on every chosen message of `locked`, then releases whatever is left locked.
pub async fn execute(
    locked: Locked,
    action: Action,
    actor: &Actor,
    on_progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<Summary, String> {
    let mut locked = locked;
    if matches!(action, Action::Replay { .. }) {
        // The callers set them aside before showing the selection; this keeps any other caller from replaying one.
        locked.set_aside_reason_records();
    }
    let Locked { locks, chosen, messages, report } = locked;
    let started = Instant::now();
    let dead_letter_queue = locks.entity().to_owned();
    let credential = actor.connection.principal().await;
    let context = Arc::new(Context { actor: actor.clone(), credential, dead_letter_queue, action: action.clone() });

    let archive = match &action {
        Action::Purge { archive: Some(path) } => {
            crate::archive::write(path, chosen.iter().filter_map(|l| messages.get(&l.sequence_number)))?;
            Some(path.clone())
        }
        _ => None,
    };
    let intent = Intent {
        record: "intent",
        run: actor.audit.run.clone(),
        at: OffsetDateTime::now_utc(),
        operator: actor.operator.clone(),
        credential: context.credential.clone(),
        action: action.name(),
        dead_letter_queue: context.dead_letter_queue.clone(),
        host: host_name(),
        pid: std::process::id(),
        archive: archive.clone(),
        messages: chosen
            .iter()
            .map(|letter| {
                let message = messages.get(&letter.sequence_number);
                let replay = matches!(action, Action::Replay { .. });
                IntendedMessage {
                    sequence_number: letter.sequence_number,
                    message_id: letter.message_id.clone(),
                    onboarding_id: letter.onboarding_id.clone(),
                    reason: letter.reason().to_owned(),
                    replay_message_id: message
                        .filter(|_| replay)
                        .map(|m| replay_message_id(&context.dead_letter_queue, m)),
                    target_queue: message.filter(|_| replay).map(|m| target_queue(m, &actor.queue)),
                }
            })
            .collect(),
    };
    if let Err(error) = actor.audit.intent(&intent) {
        let _ = locks.release().await;
        return Err(error);
    }

    let (rate, concurrency) = match action {
        Action::Replay { rate, concurrency } => (rate, concurrency.max(1)),
        Action::Purge { .. } => (0.0, 16),
    };
    let locks = Arc::new(locks);
    let mut limiter = RateLimit::new(rate);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<AuditRecord> = JoinSet::new();
    let mut progress = Progress { total: chosen.len(), ..Progress::default() };
    on_progress(progress);
    let mut outcomes = Vec::with_capacity(chosen.len());
    let mut settle = |record: AuditRecord, progress: &mut Progress| {
        progress.done += 1;
        if record.outcome != "replayed" && record.outcome != "purged" {
            progress.failed += 1;
        }
        on_progress(*progress);
        outcomes.push(record);
    };
    for letter in chosen {
        while let Some(done) = tasks.try_join_next() {
            settle(done.map_err(|e| e.to_string())?, &mut progress);
        }
        limiter.acquire().await;
        let permit = permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (context, locks) = (context.clone(), locks.clone());
        tasks.spawn(async move {
            let record = match locks.take(letter.sequence_number) {
                Ok(message) => context.act(&message, &letter).await,
                Err(why) => context.record(&letter, "skipped", None, Some(format!("not acted on: {why}"))),
            };
            drop(permit);
            if let Err(problem) = context.actor.audit.result(&record) {
                eprintln!("error: {problem}");
            }
            record
        });
    }
    while let Some(done) = tasks.join_next().await {
        settle(done.map_err(|e| e.to_string())?, &mut progress);
    }
    outcomes.sort_by_key(|r| r.sequence_number);
    let succeeded = progress.done - progress.failed;
    let ended = actor.audit.end(succeeded, progress.failed);
    let released = match Arc::try_unwrap(locks) {
        Ok(locks) => locks.release().await.map_err(|e| format!("could not unlock every dead letter: {e}")),
        Err(_) => Ok(()),
    };
    ended?;
    released?;
    Ok(Summary {
        run: actor.audit.run.clone(),
        action: action.name(),
        selected: progress.total,
        succeeded,
        failed: progress.failed,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        audit_file: actor.audit.path().to_owned(),
        archive,
        report,
        outcomes,
    })
}

/// What every task needs to act on one message and record it.
#[derive(Debug)]
struct Context {
    actor: Actor,
    credential: String,
    dead_letter_queue: String,
    action: Action,
}

impl Context {
    /// Acts on one locked dead letter; the record says how it went.
    async fn act(&self, message: &ReceivedMessage, letter: &DeadLetter) -> AuditRecord {
        let client = &self.actor.connection.client;
        match &self.action {
            Action::Replay { .. } => {
                let target = target_queue(message, &self.actor.queue);
                let outgoing =
                    replay_message(&self.dead_letter_queue, message, &self.actor.operator, OffsetDateTime::now_utc());
                // Only after the send succeeded: a failure here leaves the dead letter for the next run.
                let result = match client.send(&target, &outgoing).await {
                    Ok(()) => client.complete(message).await,
                    Err(error) => Err(error),
                };
                let mut record = match result {
                    Ok(()) => self.record(letter, "replayed", None, None),
                    Err(error) => self.record(letter, "failed", None, Some(error.to_string())),
                };
                record.replay_message_id = outgoing.message_id;
                record.target_queue = Some(target);
                record
            }
            Action::Purge { .. } => match client.complete(message).await {
                Ok(()) => self.record(letter, "purged", None, None),
                Err(error) => self.record(letter, "failed", None, Some(error.to_string())),
            },
        }
    }

    fn record(
        &self,
        letter: &DeadLetter,
        outcome: &'static str,
        target: Option<String>,
        error: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            record: "result",
            run: self.actor.audit.run.clone(),
            at: OffsetDateTime::now_utc(),
            operator: self.actor.operator.clone(),
            credential: self.credential.clone(),
            action: self.action.name(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            sequence_number: letter.sequence_number,
            message_id: letter.message_id.clone(),
            onboarding_id: letter.onboarding_id.clone(),
            reason: letter.reason().to_owned(),
            outcome,
            replay_message_id: None,
            target_queue: target,
            error,
        }
    }
}

/// The queue the message was dead-lettered from: `DeadLetterSource` when the broker recorded one (auto-forwarding
/// chains), else the queue whose dead-letter queue this is.
pub fn target_queue(message: &ReceivedMessage, queue: &str) -> String {
    message
        .broker_properties
        .dead_letter_source
        .as_deref()
        .filter(|source| !source.is_empty() && !source.contains("/subscriptions/"))
        .unwrap_or(queue)
        .to_owned()
}
