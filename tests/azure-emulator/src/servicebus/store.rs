//! One receivable entity (a queue, or a topic subscription) with its dead-letter sub-queue: scheduled messages,
//! peek-locks, delivery counts, TTL expiry and dead-lettering. Pure state, driven by the time it is given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::model::{Delivered, Message, MessageState};

/// The service's reason and description when the delivery count runs out.
pub const MAX_DELIVERY_REASON: &str = "MaxDeliveryCountExceeded";
/// The service's reason and description when a message expires on an entity that dead-letters expired messages.
pub const TTL_REASON: &str = "TTLExpiredException";
pub const TTL_DESCRIPTION: &str = "The message expired and was dead lettered.";

/// Lock and dead-letter settings of a queue or subscription.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
    pub dead_letter_on_expiration: bool,
}

/// Which of the two sub-queues an operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubQueueKind {
    Main,
    DeadLetter,
}

#[derive(Debug)]
struct Stored {
    message: Message,
    lock: Option<Uuid>,
}

/// Messages that can be delivered (locked or not), in sequence order, plus what a waiting receiver needs.
#[derive(Debug, Default)]
struct SubQueue {
    messages: BTreeMap<i64, Stored>,
    unlocked: BTreeSet<i64>,
    /// Expiry times of messages that observe TTL (never in the dead-letter queue).
    expiries: BTreeSet<(OffsetDateTime, i64)>,
    notify: Arc<Notify>,
}

impl SubQueue {
    fn insert(&mut self, message: Message, observe_ttl: bool) {
        let sequence = message.sequence_number;
        if observe_ttl && let Some(at) = message.expires_at {
            self.expiries.insert((at, sequence));
        }
        self.unlocked.insert(sequence);
        self.messages.insert(sequence, Stored { message, lock: None });
        self.notify.notify_waiters();
    }

    fn remove(&mut self, sequence: i64) -> Option<Message> {
        let stored = self.messages.remove(&sequence)?;
        self.unlocked.remove(&sequence);
        if let Some(at) = stored.message.expires_at {
            self.expiries.remove(&(at, sequence));
        }
        Some(stored.message)
    }
}

#[derive(Debug, Clone, Copy)]
struct Lock {
    kind: SubQueueKind,
    sequence: i64,
    until: OffsetDateTime,
}

/// A queue or subscription: what the broker delivers from.
#[derive(Debug)]
pub struct Receiver {
    /// `queue` or `topic/subscriptions/sub`: the `DeadLetterSource` of its dead letters.
    pub path: String,
    pub settings: ReceiverSettings,
    main: SubQueue,
    dead_letters: SubQueue,
    scheduled: BTreeMap<i64, Message>,
    scheduled_due: BTreeSet<(OffsetDateTime, i64)>,
    locks: HashMap<Uuid, Lock>,
    lock_expiries: BTreeSet<(OffsetDateTime, Uuid)>,
    bytes: usize,
}

impl Receiver {
    pub fn new(path: String, settings: ReceiverSettings) -> Self {
        Self {
            path,
            settings,
            main: SubQueue::default(),
            dead_letters: SubQueue::default(),
            scheduled: BTreeMap::new(),
            scheduled_due: BTreeSet::new(),
            locks: HashMap::new(),
            lock_expiries: BTreeSet::new(),
            bytes: 0,
        }
    }

    /// Bytes stored (all sub-queues), for the entity size quota.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn notifier(&self, kind: SubQueueKind) -> Arc<Notify> {
        self.sub(kind).notify.clone()
    }

    fn sub(&self, kind: SubQueueKind) -> &SubQueue {
        match kind {
            SubQueueKind::Main => &self.main,
            SubQueueKind::DeadLetter => &self.dead_letters,
        }
    }

    /// Accepts a message whose sequence number, times and state the caller set.
    pub fn accept(&mut self, message: Message) {
        self.bytes += message.body.len();
        if message.state == MessageState::Scheduled {
            let due = message.scheduled_enqueue_time.unwrap_or(message.enqueued_time);
            self.scheduled_due.insert((due, message.sequence_number));
            self.scheduled.insert(message.sequence_number, message);
        } else {
            self.main.insert(message, true);
        }
    }

    /// Brings the entity up to `now`: scheduled messages become active, expired locks are released (and dead-letter
    /// when the delivery count ran out), expired messages dead-letter or disappear.
    pub fn catch_up(&mut self, now: OffsetDateTime) {
        while let Some(&(due, sequence)) = self.scheduled_due.first() {
            if due > now {
                break;
            }
            self.scheduled_due.pop_first();
            if let Some(mut message) = self.scheduled.remove(&sequence) {
                message.state = MessageState::Active;
                message.enqueued_time = due;
                message.expires_at = message.time_to_live.and_then(|ttl| checked_add(due, ttl));
                self.main.insert(message, true);
            }
        }
        while let Some(&(until, token)) = self.lock_expiries.first() {
            if until > now {
                break;
            }
            self.release(token, None);
        }
        let expired: Vec<i64> = self.main.expiries.range(..=(now, i64::MAX)).map(|&(_, sequence)| sequence).collect();
        for sequence in expired {
            let locked = self.main.messages.get(&sequence).is_some_and(|stored| stored.lock.is_some());
            if locked {
                continue;
            }
            if let Some(message) = self.main.remove(sequence) {
                if self.settings.dead_letter_on_expiration {
                    self.dead_letter(message, TTL_REASON, TTL_DESCRIPTION);
                } else {
                    self.bytes -= message.body.len();
                }
            }
        }
    }

    /// The next instant at which `catch_up` would change something, for receivers' timers.
    pub fn next_event(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let scheduled = self.scheduled_due.first().map(|&(at, _)| at);
        let lock = self.lock_expiries.first().map(|&(at, _)| at);
        let expiry =
            self.main.expiries.range((Bound::Excluded((now, i64::MAX)), Bound::Unbounded)).next().map(|&(at, _)| at);
        [scheduled, lock, expiry].into_iter().flatten().min()
    }

    /// Locks the first available message (sequence order) for `lock_duration` and counts the delivery.
    pub fn lock_next(&mut self, kind: SubQueueKind, now: OffsetDateTime) -> Option<Delivered> {
        let lock_duration = self.settings.lock_duration;
        let sub = match kind {
            SubQueueKind::Main => &mut self.main,
            SubQueueKind::DeadLetter => &mut self.dead_letters,
        };
        let sequence = sub.unlocked.pop_first()?;
        let stored = sub.messages.get_mut(&sequence).expect("unlocked index names a stored message");
        let token = Uuid::new_v4();
        let until = checked_add(now, lock_duration).unwrap_or(now);
        stored.lock = Some(token);
        stored.message.delivery_count += 1;
        let message = stored.message.clone();
        self.locks.insert(token, Lock { kind, sequence, until });
        self.lock_expiries.insert((until, token));
        Some(Delivered { message, lock_token: token, locked_until: until })
    }

    /// Receive-and-delete: removes the first available message.
    pub fn take_next(&mut self, kind: SubQueueKind) -> Option<Message> {
        let sub = match kind {
            SubQueueKind::Main => &mut self.main,
            SubQueueKind::DeadLetter => &mut self.dead_letters,
        };
        let sequence = *sub.unlocked.first()?;
        let mut message = sub.remove(sequence)?;
        message.delivery_count += 1;
        self.bytes -= message.body.len();
        Some(message)
    }

    fn lock_of(&self, kind: SubQueueKind, token: Uuid) -> Option<Lock> {
        self.locks.get(&token).copied().filter(|lock| lock.kind == kind)
    }

    /// The sequence number a lock token holds, if the lock is alive.
    pub fn locked_sequence(&self, kind: SubQueueKind, token: Uuid) -> Option<i64> {
        self.lock_of(kind, token).map(|lock| lock.sequence)
    }

    pub fn locked_message_id(&self, kind: SubQueueKind, token: Uuid) -> Option<&str> {
        let lock = self.lock_of(kind, token)?;
        self.sub(kind).messages.get(&lock.sequence)?.message.message_id.as_deref()
    }

    /// Completes a delivery: the message is gone. `false` when the lock is unknown or expired.
    pub fn complete(&mut self, kind: SubQueueKind, token: Uuid) -> bool {
        let Some(lock) = self.forget_lock(kind, token) else { return false };
        let sub = match kind {
            SubQueueKind::Main => &mut self.main,
            SubQueueKind::DeadLetter => &mut self.dead_letters,
        };
        if let Some(message) = sub.remove(lock.sequence) {
            self.bytes -= message.body.len();
        }
        true
    }

    /// Abandons a delivery. `false` when the lock is unknown or expired.
    pub fn abandon(&mut self, kind: SubQueueKind, token: Uuid) -> bool {
        if self.lock_of(kind, token).is_none() {
            return false;
        }
        self.release(token, None);
        true
    }

    /// Explicit dead-lettering by the receiver (not possible from a dead-letter queue).
    pub fn dead_letter_locked(&mut self, token: Uuid, reason: &str, description: &str) -> bool {
        if self.lock_of(SubQueueKind::Main, token).is_none() {
            return false;
        }
        self.release(token, Some((reason, description)));
        true
    }

    /// Extends a lock by `lock_duration` from `now`.
    pub fn renew(&mut self, kind: SubQueueKind, token: Uuid, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let lock = self.lock_of(kind, token)?;
        let until = checked_add(now, self.settings.lock_duration).unwrap_or(now);
        self.lock_expiries.remove(&(lock.until, token));
        self.lock_expiries.insert((until, token));
        self.locks.insert(token, Lock { until, ..lock });
        Some(until)
    }

    fn forget_lock(&mut self, kind: SubQueueKind, token: Uuid) -> Option<Lock> {
        let lock = self.lock_of(kind, token)?;
        self.locks.remove(&token);
        self.lock_expiries.remove(&(lock.until, token));
        Some(lock)
    }

    /// Ends a lock (abandon, expiry or explicit dead-letter). A main-queue message whose deliveries reached
    /// `max_delivery_count` moves to the dead-letter queue instead of becoming available again.
    fn release(&mut self, token: Uuid, dead_letter: Option<(&str, &str)>) {
        let Some(lock) = self.locks.remove(&token) else { return };
        self.lock_expiries.remove(&(lock.until, token));
        let max = self.settings.max_delivery_count;
        let sub = match lock.kind {
            SubQueueKind::Main => &mut self.main,
            SubQueueKind::DeadLetter => &mut self.dead_letters,
        };
        let Some(stored) = sub.messages.get_mut(&lock.sequence) else { return };
        stored.lock = None;
        let exhausted = lock.kind == SubQueueKind::Main && stored.message.delivery_count >= max;
        let reason = match dead_letter {
            Some((reason, description)) => Some((reason.to_owned(), description.to_owned())),
            None if exhausted => Some((
                MAX_DELIVERY_REASON.to_owned(),
                format!("Message could not be consumed after {max} delivery attempts."),
            )),
            None => None,
        };
        match reason {
            Some((reason, description)) => {
                if let Some(message) = self.main.remove(lock.sequence) {
                    self.dead_letter(message, &reason, &description);
                }
            }
            None => {
                sub.unlocked.insert(lock.sequence);
                sub.notify.notify_waiters();
            }
        }
    }

    fn dead_letter(&mut self, mut message: Message, reason: &str, description: &str) {
        message.dead_letter_source = Some(self.path.clone());
        message.dead_letter_reason = Some(reason.to_owned());
        message.dead_letter_error_description = Some(description.to_owned());
        // Service Bus carries both as application properties too; that is how REST and AMQP receivers see them.
        message.application_properties.insert("DeadLetterReason".into(), reason.into());
        message.application_properties.insert("DeadLetterErrorDescription".into(), description.into());
        message.state = MessageState::Active;
        self.dead_letters.insert(message, false);
    }

    /// Browses without locking: active and scheduled messages (or dead letters) from `from_sequence`, at most `max`.
    pub fn peek(&self, kind: SubQueueKind, from_sequence: i64, max: usize) -> Vec<Message> {
        let active =
            self.sub(kind).messages.range(from_sequence..).map(|(&sequence, stored)| (sequence, &stored.message));
        let mut found: Vec<(i64, &Message)> = active.take(max).collect();
        if kind == SubQueueKind::Main {
            found.extend(
                self.scheduled.range(from_sequence..).take(max).map(|(&sequence, message)| (sequence, message)),
            );
            found.sort_by_key(|&(sequence, _)| sequence);
            found.truncate(max);
        }
        found.into_iter().map(|(_, message)| message.clone()).collect()
    }

    /// Runtime counts as the management API reports them: active (locked ones included), scheduled, dead-lettered.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.main.messages.len(), self.scheduled.len(), self.dead_letters.messages.len())
    }

    /// State dump: each message with where it is.
    pub fn snapshot(&self) -> serde_json::Value {
        let render = |message: &Message, locked_until: Option<OffsetDateTime>| {
            let mut value = serde_json::to_value(message).unwrap_or_default();
            value["body"] = String::from_utf8_lossy(&message.body).into_owned().into();
            if let Some(until) = locked_until {
                value["lockedUntil"] =
                    until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default().into();
            }
            value
        };
        let lock_until = |kind: SubQueueKind, stored: &Stored| {
            stored.lock.and_then(|token| self.lock_of(kind, token)).map(|lock| lock.until)
        };
        let split = |kind: SubQueueKind| {
            let (locked, active): (Vec<_>, Vec<_>) =
                self.sub(kind).messages.values().partition(|stored| stored.lock.is_some());
            (
                active.into_iter().map(|stored| render(&stored.message, None)).collect::<Vec<_>>(),
                locked.into_iter().map(|stored| render(&stored.message, lock_until(kind, stored))).collect::<Vec<_>>(),
            )
        };
        let (active, locked) = split(SubQueueKind::Main);
        let (dead_active, dead_locked) = split(SubQueueKind::DeadLetter);
        let dead_lettered: Vec<_> = dead_active.into_iter().chain(dead_locked).collect();
        serde_json::json!({
            "activeMessageCount": active.len() + locked.len(),
            "scheduledMessageCount": self.scheduled.len(),
            "deadLetterMessageCount": dead_lettered.len(),
            "active": active,
            "locked": locked,
            "scheduled": self.scheduled.values().map(|message| render(message, None)).collect::<Vec<_>>(),
            "deadLettered": dead_lettered,
        })
    }
}

/// `at + duration`, or `None` past the end of time (an effectively infinite TTL).
pub fn checked_add(at: OffsetDateTime, duration: Duration) -> Option<OffsetDateTime> {
    let duration = time::Duration::try_from(duration).ok()?;
    at.checked_add(duration)
}
