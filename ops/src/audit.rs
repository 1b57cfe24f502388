//! Audit records: one JSON line per message acted on (who, when, which message, outcome), written as soon as the
//! outcome is known, so an interrupted run still leaves a record of everything it did.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;

/// One message's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub operator: String,
    pub credential: String,
    /// `replay` or `purge`.
    pub action: &'static str,
    pub dry_run: bool,
    pub dead_letter_queue: String,
    pub sequence_number: i64,
    pub message_id: Option<String>,
    pub onboarding_id: Option<String>,
    pub reason: String,
    /// `replayed`, `purged`, `would-replay`, `would-purge` or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where records go: a file (appended) or stdout. Cheap to clone; lines never interleave.
#[derive(Clone)]
pub struct AuditLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let sink: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        Ok(Self { sink: Arc::new(Mutex::new(sink)) })
    }

    /// Writes and flushes one line. A record that cannot be written is an error: an unaudited action is not allowed
    /// to pass silently.
    pub fn write(&self, record: &AuditRecord) -> Result<(), String> {
        let mut line = serde_json::to_string(record).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.write_all(line.as_bytes())
            .and_then(|()| sink.flush())
            .map_err(|e| format!("cannot write the audit record: {e}"))
    }
}

/// `--operator`, else the login name; with the credential's kind, that is who acted.
pub fn operator(explicit: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
