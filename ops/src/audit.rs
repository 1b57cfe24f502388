//! The audit trail of `dlq replay`/`dlq purge` (CLI and console): JSON lines appended to one file.
//!
//! Each run writes, in this order: an **intent** (what will be done to which messages, flushed and synced to disk
//! before the first message is touched), one **result** per message as soon as it is known, and an **end**. A run
//! killed in between leaves an intent without an end; the next run that opens the file reports it (which messages
//! have no recorded outcome) and appends a **reported** line, so each interrupted run is reported once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Only this much of the end of the file is read to find interrupted runs.
const TAIL_BYTES: u64 = 64 * 1024 * 1024;

/// One message named in an intent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntendedMessage {
    pub sequence_number: i64,
    pub message_id: Option<String>,
    pub onboarding_id: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_queue: Option<String>,
}

/// What a run is about to do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    pub record: &'static str,
    pub run: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub operator: String,
    pub credential: String,
    /// `replay` or `purge`.
    pub action: &'static str,
    pub dead_letter_queue: String,
    pub host: String,
    pub pid: u32,
    /// Where the bodies of purged messages were archived (purge without `--no-archive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<PathBuf>,
    pub messages: Vec<IntendedMessage>,
}

/// One message's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub record: &'static str,
    pub run: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub operator: String,
    pub credential: String,
    /// `replay` or `purge`.
    pub action: &'static str,
    pub dead_letter_queue: String,
    pub sequence_number: i64,
    pub message_id: Option<String>,
    pub onboarding_id: Option<String>,
    pub reason: String,
    /// `replayed`, `purged`, `skipped` (not acted on: its lock was lost) or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run that recorded an intent and never its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unfinished {
    pub run: String,
    pub action: String,
    pub operator: String,
    pub at: String,
    pub intended: usize,
    /// Sequence numbers named in the intent with no recorded result: their fate is unknown.
    pub without_result: Vec<i64>,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} ({} by {} at {}) did not finish: {} of {} message(s) have no recorded outcome",
            self.run,
            self.action,
            self.operator,
            self.at,
            self.without_result.len(),
            self.intended
        )?;
        if !self.without_result.is_empty() {
            let shown: Vec<String> = self.without_result.iter().take(20).map(i64::to_string).collect();
            let more = self.without_result.len().saturating_sub(20);
            write!(
                f,
                " (sequence numbers {}{})",
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            )?;
        }
        f.write_str("; check the queue and its dead-letter queue for them")
    }
}

/// The audit file of this run. Cheap to clone; lines never interleave.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    pub run: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).field("run", &self.run).finish()
    }
}

impl AuditLog {
    /// Opens (creating) the file and returns the runs that others left unfinished, marking them reported.
    pub fn open(path: &Path) -> Result<(Self, Vec<Unfinished>), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))?;
        let unfinished = unfinished_runs(&tail(&mut file)?);
        let log =
            Self { path: path.to_owned(), file: Arc::new(Mutex::new(file)), run: uuid::Uuid::new_v4().to_string() };
        for run in &unfinished {
            let at = rfc3339(OffsetDateTime::now_utc());
            log.append(&serde_json::json!({ "record": "reported", "run": run.run, "by": log.run, "at": at }), false)?;
        }
        Ok((log, unfinished))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the intent and syncs it to disk: nothing is done before this returns.
    pub fn intent(&self, intent: &Intent) -> Result<(), String> {
        self.append(intent, true)
    }

    /// Writes one outcome (flushed to the OS: it survives the process being killed).
    pub fn result(&self, record: &AuditRecord) -> Result<(), String> {
        self.append(record, false)
    }

    /// Closes the run with its counts, synced.
    pub fn end(&self, succeeded: usize, failed: usize) -> Result<(), String> {
        let at = rfc3339(OffsetDateTime::now_utc());
        let end =
            serde_json::json!({ "record": "end", "run": self.run, "at": at, "succeeded": succeeded, "failed": failed });
        self.append(&end, true)
    }

    fn append(&self, record: &impl Serialize, sync: bool) -> Result<(), String> {
        let mut line = serde_json::to_string(record).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
            .map_err(|e| format!("cannot write the audit record to {}: {e}", self.path.display()))
    }
}

/// The last [`TAIL_BYTES`] of the file, from the first whole line.
fn tail(file: &mut File) -> Result<String, String> {
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if start > 0 { text.split_once('\n').map(|(_, rest)| rest.to_owned()).unwrap_or_default() } else { text })
}

/// Intents with neither an end nor a report, whose process is not still running on this host.
pub fn unfinished_runs(text: &str) -> Vec<Unfinished> {
    let mut intents: BTreeMap<String, Value> = BTreeMap::new();
    let mut order = Vec::new();
    let mut closed = BTreeSet::new();
    let mut results: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for record in text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        let Some(run) = record["run"].as_str().map(str::to_owned) else { continue };
        match record["record"].as_str() {
            Some("intent") => {
                order.push(run.clone());
                intents.insert(run, record);
            }
            Some("result") => {
                if let Some(seq) = record["sequenceNumber"].as_i64() {
                    results.entry(run).or_default().insert(seq);
                }
            }
            Some("end" | "reported") => {
                closed.insert(run);
            }
            _ => {}
        }
    }
    let host = host_name();
    order
        .into_iter()
        .filter(|run| !closed.contains(run))
        .filter_map(|run| {
            let intent = intents.get(&run)?;
            let alive = intent["host"].as_str() == Some(host.as_str())
                && intent["pid"].as_u64().is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return None;
            }
            let done = results.get(&run);
            let named: Vec<i64> =
                intent["messages"].as_array()?.iter().filter_map(|m| m["sequenceNumber"].as_i64()).collect();
            Some(Unfinished {
                action: intent["action"].as_str().unwrap_or("?").to_owned(),
                operator: intent["operator"].as_str().unwrap_or("?").to_owned(),
                at: intent["at"].as_str().unwrap_or("?").to_owned(),
                intended: named.len(),
                without_result: named.into_iter().filter(|seq| !done.is_some_and(|d| d.contains(seq))).collect(),
                run,
            })
        })
        .collect()
}

/// `--operator`, else the login name; with the credential's identity, that is who acted.
pub fn operator(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Where `cmkctl` keeps its files (audit trail, purge archives, the enqueue journal): `$CMKCTL_STATE_DIR`, else
/// `$XDG_STATE_HOME/cmkctl`, else `~/.local/state/cmkctl`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CMKCTL_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("cmkctl");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/cmkctl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_without_an_end_is_reported_once_with_what_has_no_result() {
        let lines = [
            r#"{"record":"intent","run":"a","action":"purge","operator":"alice","at":"T","host":"elsewhere","pid":1,"messages":[{"sequenceNumber":1},{"sequenceNumber":2},{"sequenceNumber":3}]}"#,
            r#"{"record":"result","run":"a","sequenceNumber":1,"outcome":"purged"}"#,
            r#"{"record":"intent","run":"b","action":"replay","operator":"bob","at":"T","host":"elsewhere","pid":1,"messages":[{"sequenceNumber":9}]}"#,
            r#"{"record":"result","run":"b","sequenceNumber":9,"outcome":"replayed"}"#,
            r#"{"record":"end","run":"b","succeeded":1,"failed":0}"#,
        ];
        let unfinished = unfinished_runs(&lines.join("\n"));
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].run, "a");
        assert_eq!(unfinished[0].without_result, [2, 3]);
        assert!(unfinished[0].to_string().contains("2 of 3"), "{}", unfinished[0]);
        let reported = format!("{}\n{}", lines.join("\n"), r#"{"record":"reported","run":"a","by":"c"}"#);
        assert!(unfinished_runs(&reported).is_empty(), "reported once");
    }

    #[test]
    fn a_run_still_in_progress_on_this_host_is_not_reported() {
        let line = format!(
            r#"{{"record":"intent","run":"live","action":"replay","operator":"me","at":"T","host":"{}","pid":{},"messages":[]}}"#,
            host_name(),
            std::process::id()
        );
        assert!(unfinished_runs(&line).is_empty());
    }
}
