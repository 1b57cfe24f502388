//! Session locks on a session-enabled queue or subscription (Service Bus "Message sessions"): a receiver accepts a
//! session and then holds an exclusive lock on every message with that SessionId, present and future; inside it,
//! messages come in sequence order, and a message lock is covered by the session lock.
//!
//! Delivery counts follow the documented table ("Impact of delivery count"): when a session lock expires, the messages
//! received under it count a delivery (and dead-letter once `maxDeliveryCount` is spent); when the receiver closes
//! the session, its unsettled messages become available again without one. Abandon inside a session counts as usual,
//! and the abandoned message is the next one the session serves.

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;
use uuid::Uuid;

use super::super::model::Delivered;
use super::{Lock, Receiver, SubQueueKind, checked_add};

/// A session a receiver holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSession {
    pub session_id: String,
    pub token: Uuid,
    pub locked_until: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct Held {
    session_id: String,
    until: OffsetDateTime,
}

/// The sessions locked on one entity: one holder per SessionId.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_token: HashMap<Uuid, Held>,
    by_id: HashMap<String, Uuid>,
    expiries: BTreeSet<(OffsetDateTime, Uuid)>,
}

impl Sessions {
    pub(super) fn next_expiry(&self) -> Option<OffsetDateTime> {
        self.expiries.first().map(|&(at, _)| at)
    }

    fn forget(&mut self, token: Uuid) -> Option<Held> {
        let held = self.by_token.remove(&token)?;
        self.by_id.remove(&held.session_id);
        self.expiries.remove(&(held.until, token));
        Some(held)
    }

    pub(super) fn snapshot(&self) -> Vec<serde_json::Value> {
        let mut held: Vec<&Held> = self.by_token.values().collect();
        held.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        held.iter()
            .map(|held| {
                serde_json::json!({
                    "sessionId": held.session_id,
                    "lockedUntil": held.until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                })
            })
            .collect()
    }
}

impl Receiver {
    pub fn requires_session(&self) -> bool {
        self.settings.requires_session
    }

    /// Locks the session of the oldest available message whose session nobody holds; `None` when there is none.
    /// (Service Bus does not document which available session "next" is; oldest first is our choice.)
    pub fn accept_next_session(&mut self, now: OffsetDateTime) -> Option<AcceptedSession> {
        let session_id = self.main.unlocked.iter().find_map(|sequence| {
            let id = self.main.messages.get(sequence)?.message.session_id.as_deref()?;
            (!self.sessions.by_id.contains_key(id)).then(|| id.to_owned())
        })?;
        let token = Uuid::new_v4();
        let until = checked_add(now, self.settings.lock_duration).unwrap_or(now);
        self.sessions.by_id.insert(session_id.clone(), token);
        self.sessions.by_token.insert(token, Held { session_id: session_id.clone(), until });
        self.sessions.expiries.insert((until, token));
        Some(AcceptedSession { session_id, token, locked_until: until })
    }

    /// The next message of a held session, in sequence order, under a message lock covered by the session lock.
    /// `None` inside `Some`: the session has nothing available now. Outer `None`: the session lock is gone.
    pub fn lock_next_in_session(&mut self, token: Uuid) -> Option<Option<Delivered>> {
        let held = self.sessions.by_token.get(&token)?.clone();
        let sequence = self.main.unlocked.iter().copied().find(|sequence| {
            self.main.messages.get(sequence).and_then(|stored| stored.message.session_id.as_deref())
                == Some(held.session_id.as_str())
        });
        let Some(sequence) = sequence else { return Some(None) };
        self.main.unlocked.remove(&sequence);
        let stored = self.main.messages.get_mut(&sequence).expect("unlocked index names a stored message");
        let message_token = Uuid::new_v4();
        stored.lock = Some(message_token);
        stored.message.delivery_count += 1;
        let message = stored.message.clone();
        let lock = Lock { kind: SubQueueKind::Main, sequence, until: held.until, session: Some(token) };
        self.locks.insert(message_token, lock);
        Some(Some(Delivered { message, lock_token: message_token, locked_until: held.until }))
    }

    /// Extends a session lock by `lock_duration` from `now`, and with it the locks of its messages.
    pub fn renew_session(&mut self, token: Uuid, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let held = self.sessions.by_token.get_mut(&token)?;
        let until = checked_add(now, self.settings.lock_duration).unwrap_or(now);
        self.sessions.expiries.remove(&(held.until, token));
        held.until = until;
        self.sessions.expiries.insert((until, token));
        for lock in self.locks.values_mut().filter(|lock| lock.session == Some(token)) {
            lock.until = until;
        }
        Some(until)
    }

    /// The receiver closes the session: its unsettled messages become available again, without counting a delivery.
    pub fn release_session(&mut self, token: Uuid) -> bool {
        if self.sessions.forget(token).is_none() {
            return false;
        }
        for message_token in self.message_locks_of(token) {
            if let Some(lock) = self.locks.remove(&message_token)
                && let Some(stored) = self.main.messages.get_mut(&lock.sequence)
            {
                stored.lock = None;
                stored.message.delivery_count = stored.message.delivery_count.saturating_sub(1);
                self.main.unlocked.insert(lock.sequence);
            }
        }
        self.main.notify.notify_waiters();
        true
    }

    /// Session locks that ran out: their messages count the delivery, as an expired message lock does.
    pub(super) fn expire_sessions(&mut self, now: OffsetDateTime) {
        while let Some(&(until, token)) = self.sessions.expiries.first() {
            if until > now {
                break;
            }
            self.sessions.forget(token);
            for message_token in self.message_locks_of(token) {
                self.release(message_token, None);
            }
            self.main.notify.notify_waiters();
        }
    }

    fn message_locks_of(&self, session: Uuid) -> Vec<Uuid> {
        self.locks.iter().filter(|(_, lock)| lock.session == Some(session)).map(|(&token, _)| token).collect()
    }

    pub(super) fn sessions_snapshot(&self) -> Vec<serde_json::Value> {
        self.sessions.snapshot()
    }
}
