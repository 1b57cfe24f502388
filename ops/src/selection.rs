//! Selecting dead letters: one bounded walk that locks what it visits, decided **before** anything is done. The set
//! is fixed by sequence number when the walk ends; a run acts on that set and on nothing else, so a message it
//! resubmits that fails again and comes back to the dead-letter queue is never part of the same run.
//!
//! A selection can be bound to what an operator saw and confirmed ([`Expected::Exactly`]: sequence number and
//! MessageId, from the interactive listing, a selection file or the console): anything else is reported, not acted on.

use std::collections::BTreeMap;

use cmk_handler::azure::servicebus::{ReceivedMessage, ServiceBusClient};
use serde::{Deserialize, Serialize};

use crate::cli::FilterArgs;
use crate::dead_letter::{DeadLetter, Filter, ReasonRecords};
use crate::walk::LockSet;

/// The most dead letters one walk visits unless told otherwise: a hard bound on the walk, and on the locks it holds.
pub const DEFAULT_SCAN_LIMIT: usize = 5_000;

/// What identifies one dead letter across two walks: its sequence number (unique in the queue) and MessageId.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub sequence_number: i64,
    pub message_id: Option<String>,
}

impl Identity {
    pub fn of(letter: &DeadLetter) -> Self {
        Self { sequence_number: letter.sequence_number, message_id: letter.message_id.clone() }
    }
}

/// Which messages the run may act on.
#[derive(Debug, Clone, Default)]
pub enum Expected {
    /// Whatever matches the filter now (bounded).
    #[default]
    Matching,
    /// Exactly these (as listed and confirmed earlier); the filter still applies.
    Exactly(Vec<Identity>),
}

/// Bounds of one walk.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Select at most this many.
    pub limit: Option<usize>,
    /// Visit at most this many dead letters.
    pub scan_limit: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { limit: None, scan_limit: DEFAULT_SCAN_LIMIT }
    }
}

/// A selection whose messages are still locked by this run.
#[derive(Debug)]
pub struct Locked {
    pub locks: LockSet,
    /// The selected dead letters, in sequence order.
    pub chosen: Vec<DeadLetter>,
    /// Bodies and properties of the chosen ones, by sequence number (what was shown is what is acted on).
    pub messages: BTreeMap<i64, ReceivedMessage>,
    pub report: Report,
}

impl Locked {
    /// Takes reason records out of the selection (they stay locked until released) and reports them. A record's
    /// body is the handler's note, not an onboarding: replaying it would enqueue a message that can only fail. Its
    /// original, named by sequence number, is what gets replayed; the record stays until purged.
    pub fn set_aside_reason_records(&mut self) {
        let (records, onboardings): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.chosen).into_iter().partition(DeadLetter::is_reason_record);
        for record in &records {
            self.messages.remove(&record.sequence_number);
        }
        self.report.reason_records.extend(records.iter().map(Identity::of));
        self.chosen = onboardings;
    }
}

/// What the walk saw besides the selection: the differences from what was expected.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Dead letters visited.
    pub seen: usize,
    /// The walk stopped at the scan limit: more dead letters may exist.
    pub truncated: bool,
    /// Expected but not found (replayed, purged or expired since, or locked by another run).
    pub missing: Vec<Identity>,
    /// Found under an expected sequence number, but with another MessageId.
    pub changed: Vec<Identity>,
    /// Matching the filter but not expected (arrived after the listing).
    pub unexpected: Vec<Identity>,
    /// Reason records left out of a replay: each explains another dead letter, and its body is no onboarding.
    pub reason_records: Vec<Identity>,
}

/// Walks the dead-letter queue once and keeps every visited message locked; the caller acts on `chosen` and then
/// releases the rest.
pub async fn lock(
    client: &ServiceBusClient,
    queue: &str,
    filter: &Filter,
    expected: &Expected,
    bounds: Bounds,
    mut visited: impl FnMut(usize),
) -> Result<Locked, String> {
    let locks = LockSet::new(client, queue);
    let mut chosen = Vec::new();
    let mut messages = BTreeMap::new();
    let mut report = Report::default();
    let mut records = ReasonRecords::default();
    let wanted: BTreeMap<i64, &Identity> = match expected {
        Expected::Matching => BTreeMap::new(),
        Expected::Exactly(ids) => ids.iter().map(|id| (id.sequence_number, id)).collect(),
    };
    let walked: Result<(), String> = async {
        loop {
            if bounds.limit.is_some_and(|limit| chosen.len() >= limit) {
                break;
            }
            if matches!(expected, Expected::Exactly(_)) && chosen.len() + report.changed.len() == wanted.len() {
                break;
            }
            if report.seen >= bounds.scan_limit {
                report.truncated = true;
                break;
            }
            let Some(message) = locks.lock_next().await.map_err(|e| e.to_string())? else { break };
            report.seen += 1;
            visited(report.seen);
            let letter = DeadLetter::from_message(&message);
            records.note(&letter);
            if !filter.matches(&letter) {
                continue;
            }
            match expected {
                Expected::Matching => {}
                Expected::Exactly(_) => match wanted.get(&letter.sequence_number) {
                    None => {
                        report.unexpected.push(Identity::of(&letter));
                        continue;
                    }
                    Some(id) if id.message_id != letter.message_id => {
                        report.changed.push(Identity::of(&letter));
                        continue;
                    }
                    Some(_) => {}
                },
            }
            messages.insert(letter.sequence_number, message);
            chosen.push(letter);
        }
        Ok(())
    }
    .await;
    if let Err(error) = walked {
        // A walk that failed halfway must not leave messages locked for a lock duration.
        let _ = locks.release().await;
        return Err(error);
    }
    chosen.sort_by_key(|letter| letter.sequence_number);
    // Pairing covers what this walk visited; a filter on reasons sees an original's own (Service Bus') reason.
    records.explain(&mut chosen);
    if let Expected::Exactly(ids) = expected {
        let found: std::collections::BTreeSet<i64> =
            chosen.iter().map(|l| l.sequence_number).chain(report.changed.iter().map(|c| c.sequence_number)).collect();
        report.missing = ids.iter().filter(|id| !found.contains(&id.sequence_number)).cloned().collect();
    }
    Ok(Locked { locks, chosen, messages, report })
}

/// Selects and releases at once: for reading (list, show, diagnose), so slow work never outlives a lock.
pub async fn read(
    client: &ServiceBusClient,
    queue: &str,
    filter: &Filter,
    bounds: Bounds,
) -> Result<(Vec<(ReceivedMessage, DeadLetter)>, Report), String> {
    let mut progress = crate::progress::Progress::new("reading", None);
    let locked = lock(client, queue, filter, &Expected::Matching, bounds, |_| progress.advance(true)).await;
    progress.finish();
    let Locked { locks, chosen, mut messages, report } = locked?;
    locks.release().await.map_err(|e| format!("could not unlock every dead letter: {e}"))?;
    let selected = chosen
        .into_iter()
        .filter_map(|letter| messages.remove(&letter.sequence_number).map(|message| (message, letter)))
        .collect();
    Ok((selected, report))
}

/// A selection saved by `dlq list --save` (or a dry run) for a later, non-interactive `--selection FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectionFile {
    pub dead_letter_queue: String,
    #[serde(with = "time::serde::rfc3339")]
    pub listed_at: time::OffsetDateTime,
    /// The filter the listing used; a run from this file applies it too.
    pub filter: FilterArgs,
    pub messages: Vec<Identity>,
}

impl SelectionFile {
    pub fn write(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write the selection {}: {e}", path.display()))
    }

    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the selection {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a selection file: {e}", path.display()))
    }
}
