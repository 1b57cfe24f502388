//! Walking a dead-letter queue over the REST API, which has no non-destructive peek: each message is peek-locked and
//! kept locked (renewed before it expires) until the run settles it or releases (abandons) it. Holding the locks is
//! what makes a walk see each message once, and what makes a selection bind: nobody else can take, settle or change a
//! message this run holds.
//!
//! Cost of reading: Service Bus counts each lock as a delivery, so every walk raises each visited dead letter's
//! DeliveryCount by one. Dead letters are never dead-lettered again, so nothing else changes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmk_handler::azure::servicebus::{ReceivedMessage, ServiceBusClient};
use cmk_handler::error::Error;
use futures::StreamExt;
use time::OffsetDateTime;

use crate::dead_letter::parse_broker_date;

/// How long one receive waits for a message before the walk concludes the queue is drained. The REST API's minimum.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Unlocks and renewals in flight at once.
const SETTLE_CONCURRENCY: usize = 32;
/// How often the renewer looks for locks that are due.
const RENEW_TICK: Duration = Duration::from_millis(500);
/// Lock duration assumed when a message does not say how long it is locked for.
const FALLBACK_LOCK: Duration = Duration::from_secs(30);
/// No run holds locks longer than this: the renewer stops, and the locks expire on their own.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// One locked message and when its lock was last taken or renewed.
#[derive(Debug)]
struct Held {
    message: ReceivedMessage,
    renewed_at: Instant,
    lock_for: Duration,
    lost: bool,
}

/// The locks one run holds on `{queue}/$DeadLetterQueue` (or another entity), keyed by sequence number, renewed in the background at half
/// their duration until they are taken (to be settled) or released.
#[derive(Debug)]
pub struct LockSet {
    client: ServiceBusClient,
    entity: String,
    held: Arc<Mutex<BTreeMap<i64, Held>>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LockSet {
    pub fn new(client: &ServiceBusClient, queue: &str) -> Self {
        Self::on(client, &dead_letter_queue(queue))
    }

    /// Locks on any entity that receives (a topic subscription: `events tail` holds the events it does not show).
    pub fn on(client: &ServiceBusClient, entity: &str) -> Self {
        let held: Arc<Mutex<BTreeMap<i64, Held>>> = Arc::default();
        let renewer = tokio::spawn(renew(client.clone(), held.clone()));
        Self { client: client.clone(), entity: entity.to_owned(), held, renewer }
    }

    /// The dead-letter queue's path, `queue/$DeadLetterQueue`.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    pub fn client(&self) -> &ServiceBusClient {
        &self.client
    }

    /// Locks the next message and holds it; `None` once the entity has no unlocked message left.
    pub async fn lock_next(&self) -> Result<Option<ReceivedMessage>, Error> {
        let Some(message) = self.client.peek_lock(&self.entity, RECEIVE_WAIT).await? else { return Ok(None) };
        let lock_for = message
            .broker_properties
            .locked_until_utc
            .as_deref()
            .and_then(parse_broker_date)
            .map(|until| until - OffsetDateTime::now_utc())
            .and_then(|left| Duration::try_from(left).ok())
            .unwrap_or(FALLBACK_LOCK)
            .clamp(Duration::from_secs(5), Duration::from_secs(300));
        let held = Held { message: message.clone(), renewed_at: Instant::now(), lock_for, lost: false };
        self.held().insert(message.broker_properties.sequence_number.unwrap_or_default(), held);
        Ok(Some(message))
    }

    /// Takes a held message out of the set to settle it; `Err` names why it cannot be acted on.
    pub fn take(&self, sequence_number: i64) -> Result<ReceivedMessage, &'static str> {
        let mut held = self.held();
        match held.remove(&sequence_number) {
            Some(entry) if entry.lost => Err("its lock was lost (it expired or could not be renewed)"),
            Some(entry) if entry.renewed_at.elapsed() >= entry.lock_for => Err("its lock expired"),
            Some(entry) => Ok(entry.message),
            None => Err("this run does not hold it"),
        }
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.held().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unlocks every message still held. Failures are reported but do not stop the others: a lock that cannot be
    /// released expires on its own after the entity's lock duration.
    pub async fn release(self) -> Result<(), Error> {
        self.renewer.abort();
        let messages: Vec<ReceivedMessage> =
            std::mem::take(&mut *self.held()).into_values().filter(|h| !h.lost).map(|h| h.message).collect();
        let client = &self.client;
        let results: Vec<Result<(), Error>> = futures::stream::iter(messages)
            .map(|message| async move { client.abandon(&message).await })
            .buffer_unordered(SETTLE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LockSet {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews every held lock that has run half its duration, until [`MAX_HOLD`] after the set was made.
async fn renew(client: ServiceBusClient, held: Arc<Mutex<BTreeMap<i64, Held>>>) {
    let started = Instant::now();
    while started.elapsed() < MAX_HOLD {
        tokio::time::sleep(RENEW_TICK).await;
        let due: Vec<(i64, ReceivedMessage)> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, h)| !h.lost && h.renewed_at.elapsed() >= h.lock_for / 2)
            .map(|(seq, h)| (*seq, h.message.clone()))
            .collect();
        let client = &client;
        let results: Vec<(i64, Instant, bool)> = futures::stream::iter(due)
            .map(|(seq, message)| async move {
                let asked = Instant::now();
                (seq, asked, client.renew_lock(&message).await.is_ok())
            })
            .buffer_unordered(SETTLE_CONCURRENCY)
            .collect()
            .await;
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        for (seq, asked, renewed) in results {
            if let Some(entry) = held.get_mut(&seq) {
                if renewed {
                    entry.renewed_at = asked;
                } else {
                    entry.lost = true;
                }
            }
        }
    }
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{}/$DeadLetterQueue", queue.trim_matches('/'))
}
