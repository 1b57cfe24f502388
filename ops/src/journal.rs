//! What `enqueue` sent, so it can tell when Service Bus would drop the next send.
//!
//! Service Bus answers a send whose MessageId it saw within the queue's duplicate-detection window exactly like any
//! other send (REST: 201 Created) and silently drops it; the REST send returns no sequence number that would tell the
//! two apart. So the only thing a client can know is what *it* sent: this journal (JSON lines in the state
//! directory) records each send's namespace, queue, MessageId and content hash, and a later send with the same
//! MessageId inside the window is reported before it is made. Sends by other machines or producers are invisible
//! here (docs/cmkctl.md says so).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The queue's duplicate-detection window as deployed (`infra/modules/servicebus.bicep`; a test keeps them equal).
pub const DUPLICATE_DETECTION_WINDOW: time::Duration = time::Duration::days(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub namespace: String,
    pub queue: String,
    pub message_id: String,
    pub onboarding_id: String,
    pub content_hash: String,
}

/// What the broker would do with a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing with this MessageId was sent from here within the window.
    New,
    /// The same content was sent at `Sent::at`: Service Bus would drop this one, and the first is what counts.
    Repeat(Sent),
    /// Other content was sent with this MessageId: Service Bus would drop this one, swallowing a correction.
    Swallowed(Sent),
}

#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn at(path: &Path) -> Self {
        Self { path: path.to_owned() }
    }

    /// What the broker would do with `next` at `now`, judged from the sends recorded here.
    pub fn verdict(&self, next: &Sent, now: OffsetDateTime) -> Result<Verdict, String> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::New),
            Err(e) => return Err(format!("cannot read the send journal {}: {e}", self.path.display())),
        };
        let earlier = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Sent>(&line).ok())
            .filter(|sent| {
                now - sent.at < DUPLICATE_DETECTION_WINDOW
                    && sent.namespace.eq_ignore_ascii_case(&next.namespace)
                    && sent.queue.eq_ignore_ascii_case(&next.queue)
                    && sent.message_id == next.message_id
            })
            .last();
        Ok(match earlier {
            None => Verdict::New,
            Some(sent) if sent.content_hash == next.content_hash => Verdict::Repeat(sent),
            Some(sent) => Verdict::Swallowed(sent),
        })
    }

    /// Appends a send (synced: a crash right after the send still leaves the record).
    pub fn record(&self, sent: &Sent) -> Result<(), String> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let fail = |e: std::io::Error| format!("cannot write the send journal {}: {e}", self.path.display());
        let mut line = serde_json::to_string(sent).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(fail)?;
        file.write_all(line.as_bytes()).and_then(|()| file.sync_data()).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn sent(at: OffsetDateTime, id: &str, hash: &str) -> Sent {
        Sent {
            at,
            namespace: "ns.servicebus.windows.net".into(),
            queue: "onboarding".into(),
            message_id: id.into(),
            onboarding_id: "obd-1".into(),
            content_hash: hash.into(),
        }
    }

    #[test]
    fn repeats_and_swallowed_corrections_are_told_apart_within_the_window() {
        let dir = std::env::temp_dir().join(format!("cmkctl-journal-{}", std::process::id()));
        let journal = Journal::at(&dir.join("sent.jsonl"));
        let t0 = datetime!(2026-11-29 10:00 UTC);
        assert_eq!(journal.verdict(&sent(t0, "m", "h1"), t0).unwrap(), Verdict::New);
        journal.record(&sent(t0, "m", "h1")).unwrap();
        let soon = t0 + time::Duration::minutes(5);
        assert!(matches!(journal.verdict(&sent(soon, "m", "h1"), soon).unwrap(), Verdict::Repeat(_)));
        assert!(matches!(journal.verdict(&sent(soon, "m", "h2"), soon).unwrap(), Verdict::Swallowed(_)));
        assert_eq!(journal.verdict(&sent(soon, "other", "h1"), soon).unwrap(), Verdict::New);
        let later = t0 + DUPLICATE_DETECTION_WINDOW + time::Duration::seconds(1);
        assert_eq!(journal.verdict(&sent(later, "m", "h2"), later).unwrap(), Verdict::New, "outside the window");
        let _ = std::fs::remove_dir_all(dir);
    }
}
