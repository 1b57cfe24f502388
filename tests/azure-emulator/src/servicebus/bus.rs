//! The broker: namespaces built from the scenario, sending (sequence numbers, duplicate detection, TTL, scheduling,
//! topic fan-out) and receiving (peek-lock with waiting receivers woken by arrivals, timers and clock jumps).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::scenario::{SasKey, ServiceBusNamespace};

use super::filter::Filter;
use super::iso_duration;
use super::model::{BusError, Delivered, Message, MessageState, NewMessage};
use super::store::{Receiver, ReceiverSettings, SubQueueKind, checked_add};

/// Standard tier's default `maxSizeInMegabytes`.
const MAX_ENTITY_BYTES: usize = 1024 * 1024 * 1024;
/// Service Bus refuses longer message ids.
const MAX_MESSAGE_ID_LEN: usize = 128;

/// The broker: every namespace and entity. Interior locking; no lock is ever held across an `.await`.
#[derive(Debug)]
pub struct Bus {
    clock: Clock,
    inner: Mutex<Inner>,
    /// Wakes every waiting receiver: after a clock jump or a reload.
    everyone: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    cloud: Cloud,
    namespaces: HashMap<String, Namespace>,
}

/// What the REST front end needs to authorise a request to a namespace.
#[derive(Debug, Clone)]
pub struct NamespaceAuth {
    pub tenant_id: String,
    pub local_auth: bool,
    pub sas_keys: Vec<SasKey>,
}

#[derive(Debug)]
struct Namespace {
    auth: NamespaceAuth,
    queues: BTreeMap<String, Queue>,
    topics: BTreeMap<String, Topic>,
}

#[derive(Debug)]
struct Queue {
    intake: Intake,
    receiver: Receiver,
}

#[derive(Debug)]
struct Topic {
    intake: Intake,
    subscriptions: BTreeMap<String, Subscription>,
}

#[derive(Debug)]
struct Subscription {
    filters: Vec<Filter>,
    receiver: Receiver,
}

/// The sending side of a queue or topic.
#[derive(Debug)]
struct Intake {
    next_sequence: i64,
    default_ttl: Option<Duration>,
    max_message_bytes: usize,
    duplicate_window: Option<Duration>,
    seen: HashMap<String, OffsetDateTime>,
    seen_order: VecDeque<(OffsetDateTime, String)>,
}

impl Intake {
    fn new(
        first_sequence: i64,
        default_ttl: Option<&str>,
        max_kib: u32,
        dedupe: bool,
        window: &str,
    ) -> Result<Self, String> {
        Ok(Self {
            next_sequence: first_sequence,
            default_ttl: default_ttl.map(iso_duration::parse).transpose()?,
            max_message_bytes: max_kib as usize * 1024,
            duplicate_window: dedupe.then(|| iso_duration::parse(window)).transpose()?,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
        })
    }

    /// Records `message_id` and says whether it was already seen within the window.
    fn is_duplicate(&mut self, message_id: &str, now: OffsetDateTime) -> bool {
        let Some(window) = self.duplicate_window else { return false };
        while let Some((at, _)) = self.seen_order.front() {
            if checked_add(*at, window).is_some_and(|end| end > now) {
                break;
            }
            let (at, id) = self.seen_order.pop_front().expect("front exists");
            if self.seen.get(&id) == Some(&at) {
                self.seen.remove(&id);
            }
        }
        if self.seen.contains_key(message_id) {
            return true;
        }
        self.seen.insert(message_id.to_owned(), now);
        self.seen_order.push_back((now, message_id.to_owned()));
        false
    }
}

/// A parsed entity path: `queue`, `queue/$DeadLetterQueue`, `topic/subscriptions/sub[/$DeadLetterQueue]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityPath {
    pub entity: String,
    pub subscription: Option<String>,
    pub kind: SubQueueKind,
}

impl EntityPath {
    pub fn parse(path: &str) -> Self {
        let mut path = path.trim_matches('/');
        let mut kind = SubQueueKind::Main;
        if let Some((rest, last)) = path.rsplit_once('/')
            && last.eq_ignore_ascii_case("$DeadLetterQueue")
        {
            path = rest;
            kind = SubQueueKind::DeadLetter;
        }
        let lower = path.to_ascii_lowercase();
        if let Some(index) = lower.rfind("/subscriptions/") {
            return Self {
                entity: lower[..index].to_owned(),
                subscription: Some(lower[index + "/subscriptions/".len()..].to_owned()),
                kind,
            };
        }
        Self { entity: lower, subscription: None, kind }
    }
}

impl Bus {
    pub fn new(clock: Clock) -> Self {
        Self { clock, inner: Mutex::new(Inner::default()), everyone: Notify::new() }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("service bus lock poisoned")
    }

    /// Replaces every namespace with those of the scenario. Filters are parsed here: a bad one fails the load.
    pub fn load(&self, namespaces: &[ServiceBusNamespace], cloud: Cloud) -> Result<(), String> {
        let mut built = HashMap::new();
        for namespace in namespaces {
            let context = |e: String| format!("service bus namespace {}: {e}", namespace.name);
            built.insert(namespace.name.to_ascii_lowercase(), build_namespace(namespace).map_err(context)?);
        }
        *self.inner() = Inner { cloud, namespaces: built };
        self.everyone.notify_waiters();
        Ok(())
    }

    /// The cloud's DNS suffix (`servicebus.windows.net`), for lock URLs and SAS resources.
    pub fn suffix(&self) -> &'static str {
        self.inner().cloud.servicebus_suffix()
    }

    pub fn namespace_auth(&self, ns: &str) -> Option<NamespaceAuth> {
        self.inner().namespaces.get(&ns.to_ascii_lowercase()).map(|namespace| namespace.auth.clone())
    }

    /// Sends to a queue or topic. Returns the sequence number, or `None` when dropped as a duplicate.
    pub fn send(&self, ns: &str, entity: &str, message: NewMessage) -> Result<Option<i64>, BusError> {
        let now = self.clock.now();
        let mut inner = self.inner();
        let suffix = inner.cloud.servicebus_suffix();
        let not_found = || BusError::EntityNotFound(format!("sb://{ns}.{suffix}/{entity}"));
        let path = EntityPath::parse(entity);
        if path.kind == SubQueueKind::DeadLetter || path.subscription.is_some() {
            return Err(BusError::BadRequest(format!(
                "Cannot send to '{entity}': messages are sent to a queue or topic, not to a subscription or dead-letter queue."
            )));
        }
        let namespace = inner.namespaces.get_mut(&ns.to_ascii_lowercase()).ok_or_else(not_found)?;
        if let Some(queue) = namespace.queues.get_mut(&path.entity) {
            let Some(stored) = admit(&mut queue.intake, message, now)? else { return Ok(None) };
            if queue.receiver.bytes() + stored.body.len() > MAX_ENTITY_BYTES {
                return Err(BusError::QuotaExceeded(entity.to_owned()));
            }
            let sequence = stored.sequence_number;
            queue.receiver.accept(stored);
            return Ok(Some(sequence));
        }
        let topic = namespace.topics.get_mut(&path.entity).ok_or_else(not_found)?;
        let Some(stored) = admit(&mut topic.intake, message, now)? else { return Ok(None) };
        let targets: Vec<&mut Subscription> = topic
            .subscriptions
            .values_mut()
            .filter(|subscription| subscription.filters.iter().any(|filter| filter.matches(&stored)))
            .collect();
        if targets.iter().any(|subscription| subscription.receiver.bytes() + stored.body.len() > MAX_ENTITY_BYTES) {
            return Err(BusError::QuotaExceeded(entity.to_owned()));
        }
        let sequence = stored.sequence_number;
        for subscription in targets {
            subscription.receiver.accept(stored.clone());
        }
        Ok(Some(sequence))
    }

    /// Peek-lock receive; waits up to `wait` (real time) for a message.
    pub async fn receive(&self, ns: &str, entity: &str, wait: Duration) -> Result<Option<Delivered>, BusError> {
        self.wait_for(ns, entity, wait, |receiver, kind, now| receiver.lock_next(kind, now)).await
    }

    /// Receive-and-delete; waits up to `wait` for a message.
    pub async fn receive_and_delete(
        &self,
        ns: &str,
        entity: &str,
        wait: Duration,
    ) -> Result<Option<Message>, BusError> {
        self.wait_for(ns, entity, wait, |receiver, kind, _| receiver.take_next(kind)).await
    }

    async fn wait_for<T>(
        &self,
        ns: &str,
        entity: &str,
        wait: Duration,
        mut take: impl FnMut(&mut Receiver, SubQueueKind, OffsetDateTime) -> Option<T>,
    ) -> Result<Option<T>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        let path = EntityPath::parse(entity);
        loop {
            // Register interest before looking, so an arrival between the look and the wait is not missed.
            let everyone = self.everyone.notified();
            tokio::pin!(everyone);
            everyone.as_mut().enable();
            let notifier = self.with_receiver(ns, entity, |receiver, _| receiver.notifier(path.kind))?;
            let arrival = notifier.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (taken, next_event) = self.with_receiver(ns, entity, |receiver, now| {
                let taken = take(receiver, path.kind, now);
                (taken, receiver.next_event(now))
            })?;
            if taken.is_some() {
                return Ok(taken);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut sleep_for = deadline - now;
            if let Some(at) = next_event {
                let gap = at - self.clock.now();
                let gap = Duration::try_from(gap).unwrap_or(Duration::ZERO).max(Duration::from_millis(1));
                sleep_for = sleep_for.min(gap);
            }
            tokio::select! {
                _ = everyone => {}
                _ = arrival => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Runs `f` on the addressed receiver after bringing it up to the clock's now.
    fn with_receiver<T>(
        &self,
        ns: &str,
        entity: &str,
        f: impl FnOnce(&mut Receiver, OffsetDateTime) -> T,
    ) -> Result<T, BusError> {
        let now = self.clock.now();
        let mut inner = self.inner();
        let suffix = inner.cloud.servicebus_suffix();
        let not_found = || BusError::EntityNotFound(format!("sb://{ns}.{suffix}/{entity}"));
        let path = EntityPath::parse(entity);
        let namespace = inner.namespaces.get_mut(&ns.to_ascii_lowercase()).ok_or_else(not_found)?;
        let receiver = match &path.subscription {
            None => &mut namespace.queues.get_mut(&path.entity).ok_or_else(not_found)?.receiver,
            Some(subscription) => {
                let topic = namespace.topics.get_mut(&path.entity).ok_or_else(not_found)?;
                &mut topic.subscriptions.get_mut(subscription).ok_or_else(not_found)?.receiver
            }
        };
        receiver.catch_up(now);
        Ok(f(receiver, now))
    }

    pub fn complete(&self, ns: &str, entity: &str, lock_token: Uuid) -> Result<(), BusError> {
        let kind = EntityPath::parse(entity).kind;
        self.with_receiver(ns, entity, |receiver, _| receiver.complete(kind, lock_token))?
            .then_some(())
            .ok_or(BusError::LockLost)
    }

    pub fn abandon(&self, ns: &str, entity: &str, lock_token: Uuid) -> Result<(), BusError> {
        let kind = EntityPath::parse(entity).kind;
        self.with_receiver(ns, entity, |receiver, _| receiver.abandon(kind, lock_token))?
            .then_some(())
            .ok_or(BusError::LockLost)
    }

    /// Moves a locked message to the dead-letter queue with an application-chosen reason.
    pub fn dead_letter(
        &self,
        ns: &str,
        entity: &str,
        lock_token: Uuid,
        reason: &str,
        description: &str,
    ) -> Result<(), BusError> {
        if EntityPath::parse(entity).kind == SubQueueKind::DeadLetter {
            return Err(BusError::BadRequest("A message cannot be dead-lettered from a dead-letter queue.".into()));
        }
        self.with_receiver(ns, entity, |receiver, _| receiver.dead_letter_locked(lock_token, reason, description))?
            .then_some(())
            .ok_or(BusError::LockLost)
    }

    pub fn renew_lock(&self, ns: &str, entity: &str, lock_token: Uuid) -> Result<OffsetDateTime, BusError> {
        let kind = EntityPath::parse(entity).kind;
        self.with_receiver(ns, entity, |receiver, now| receiver.renew(kind, lock_token, now))?.ok_or(BusError::LockLost)
    }

    /// The sequence number and message id a live lock holds (for the REST lock URLs, which name either).
    pub fn lock_owner(
        &self,
        ns: &str,
        entity: &str,
        lock_token: Uuid,
    ) -> Result<Option<(i64, Option<String>)>, BusError> {
        let kind = EntityPath::parse(entity).kind;
        self.with_receiver(ns, entity, |receiver, _| {
            let sequence = receiver.locked_sequence(kind, lock_token)?;
            Some((sequence, receiver.locked_message_id(kind, lock_token).map(str::to_owned)))
        })
    }

    /// Non-destructive browse (no lock, no delivery-count change), from a sequence number, at most `max`.
    pub fn peek(&self, ns: &str, entity: &str, from_sequence: i64, max: usize) -> Result<Vec<Message>, BusError> {
        let kind = EntityPath::parse(entity).kind;
        self.with_receiver(ns, entity, |receiver, _| receiver.peek(kind, from_sequence, max))
    }

    /// Active, scheduled and dead-lettered message counts of a queue or subscription (the management API's
    /// `CountDetails`).
    pub fn counts(&self, ns: &str, entity: &str) -> Result<(usize, usize, usize), BusError> {
        self.with_receiver(ns, entity, |receiver, _| receiver.counts())
    }

    /// State dump for `/_emulator/state`: every entity with its active, scheduled, locked and dead-lettered messages.
    pub fn snapshot(&self) -> serde_json::Value {
        let now = self.clock.now();
        let mut inner = self.inner();
        let mut namespaces = serde_json::Map::new();
        for (name, namespace) in &mut inner.namespaces {
            let mut queues = serde_json::Map::new();
            for (queue_name, queue) in &mut namespace.queues {
                queue.receiver.catch_up(now);
                queues.insert(queue_name.clone(), queue.receiver.snapshot());
            }
            let mut topics = serde_json::Map::new();
            for (topic_name, topic) in &mut namespace.topics {
                let mut subscriptions = serde_json::Map::new();
                for (subscription_name, subscription) in &mut topic.subscriptions {
                    subscription.receiver.catch_up(now);
                    subscriptions.insert(subscription_name.clone(), subscription.receiver.snapshot());
                }
                topics.insert(topic_name.clone(), serde_json::json!({ "subscriptions": subscriptions }));
            }
            namespaces.insert(name.clone(), serde_json::json!({ "queues": queues, "topics": topics }));
        }
        serde_json::json!({ "namespaces": namespaces })
    }

    /// Called after the clock jumped forward, so waiting receivers re-check scheduled messages, locks and TTLs.
    pub fn clock_advanced(&self) {
        self.everyone.notify_waiters();
    }
}

/// Checks and numbers a message for an entity; `None` when it is a duplicate to drop.
fn admit(intake: &mut Intake, message: NewMessage, now: OffsetDateTime) -> Result<Option<Message>, BusError> {
    let size = message.size();
    if size > intake.max_message_bytes {
        return Err(BusError::MessageTooLarge { size, limit: intake.max_message_bytes });
    }
    if message.message_id.as_ref().is_some_and(|id| id.len() > MAX_MESSAGE_ID_LEN) {
        return Err(BusError::BadRequest(format!("The MessageId exceeds the maximum length of {MAX_MESSAGE_ID_LEN}.")));
    }
    if let (Some(session), Some(partition)) = (&message.session_id, &message.partition_key)
        && session != partition
    {
        return Err(BusError::BadRequest(
            "SessionId and PartitionKey must have the same value when both are set.".into(),
        ));
    }
    // The REST front end gives every message an id, as the service does.
    let message_id = message.message_id.clone().unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    if intake.is_duplicate(&message_id, now) {
        return Ok(None);
    }
    let sequence = intake.next_sequence;
    intake.next_sequence += 1;
    // A message cannot outlive its entity's default TTL.
    let ttl = match (message.time_to_live, intake.default_ttl) {
        (Some(own), Some(default)) => Some(own.min(default)),
        (own, default) => own.or(default),
    };
    let scheduled = message.scheduled_enqueue_time.filter(|at| *at > now);
    let enqueued_time = scheduled.unwrap_or(now);
    Ok(Some(Message {
        body: message.body,
        content_type: message.content_type,
        message_id: Some(message_id),
        correlation_id: message.correlation_id,
        session_id: message.session_id,
        label: message.label,
        to: message.to,
        reply_to: message.reply_to,
        reply_to_session_id: message.reply_to_session_id,
        partition_key: message.partition_key,
        time_to_live: ttl,
        scheduled_enqueue_time: message.scheduled_enqueue_time,
        application_properties: message.application_properties,
        sequence_number: sequence,
        enqueued_sequence_number: sequence,
        enqueued_time,
        expires_at: ttl.and_then(|ttl| checked_add(enqueued_time, ttl)),
        delivery_count: 0,
        state: if scheduled.is_some() { MessageState::Scheduled } else { MessageState::Active },
        dead_letter_source: None,
        dead_letter_reason: None,
        dead_letter_error_description: None,
    }))
}

fn build_namespace(spec: &ServiceBusNamespace) -> Result<Namespace, String> {
    let mut queues = BTreeMap::new();
    for queue in &spec.queues {
        let context = |e: String| format!("queue {}: {e}", queue.name);
        let intake = Intake::new(
            spec.first_sequence_number,
            queue.default_message_time_to_live.as_deref(),
            queue.max_message_size_in_kilobytes,
            queue.requires_duplicate_detection,
            &queue.duplicate_detection_history_time_window,
        )
        .map_err(context)?;
        let settings = receiver_settings(
            &queue.lock_duration,
            queue.max_delivery_count,
            queue.dead_lettering_on_message_expiration,
        )
        .map_err(context)?;
        let receiver = Receiver::new(queue.name.clone(), settings);
        queues.insert(queue.name.to_ascii_lowercase(), Queue { intake, receiver });
    }
    let mut topics = BTreeMap::new();
    for topic in &spec.topics {
        let context = |e: String| format!("topic {}: {e}", topic.name);
        if queues.contains_key(&topic.name.to_ascii_lowercase()) {
            return Err(context("a queue has the same name".into()));
        }
        let intake = Intake::new(
            spec.first_sequence_number,
            topic.default_message_time_to_live.as_deref(),
            topic.max_message_size_in_kilobytes,
            topic.requires_duplicate_detection,
            &topic.duplicate_detection_history_time_window,
        )
        .map_err(context)?;
        let mut subscriptions = BTreeMap::new();
        for subscription in &topic.subscriptions {
            let context = |e: String| format!("topic {}: subscription {}: {e}", topic.name, subscription.name);
            let settings = receiver_settings(
                &subscription.lock_duration,
                subscription.max_delivery_count,
                subscription.dead_lettering_on_message_expiration,
            )
            .map_err(context)?;
            let filters = if subscription.rules.is_empty() {
                vec![Filter::match_all()]
            } else {
                subscription.rules.iter().map(parse_rule).collect::<Result<_, _>>().map_err(context)?
            };
            let path = format!("{}/subscriptions/{}", topic.name, subscription.name);
            subscriptions.insert(
                subscription.name.to_ascii_lowercase(),
                Subscription { filters, receiver: Receiver::new(path, settings) },
            );
        }
        topics.insert(topic.name.to_ascii_lowercase(), Topic { intake, subscriptions });
    }
    let auth = NamespaceAuth {
        tenant_id: spec.tenant_id.clone(),
        local_auth: spec.local_auth,
        sas_keys: spec.sas_keys.clone(),
    };
    Ok(Namespace { auth, queues, topics })
}

fn parse_rule(rule: &crate::scenario::Rule) -> Result<Filter, String> {
    match (&rule.sql_filter, &rule.correlation_filter) {
        (Some(sql), None) => {
            Filter::sql(sql).map_err(|e| format!("rule {}: invalid SQL filter {sql:?}: {e}", rule.name))
        }
        (None, Some(correlation)) => Ok(Filter::Correlation(correlation.clone())),
        _ => Err(format!("rule {}: give exactly one of sqlFilter and correlationFilter", rule.name)),
    }
}

fn receiver_settings(
    lock: &str,
    max_delivery_count: u32,
    dead_letter_on_expiration: bool,
) -> Result<ReceiverSettings, String> {
    let lock_duration = iso_duration::parse(lock).map_err(|e| format!("lockDuration: {e}"))?;
    if max_delivery_count == 0 {
        return Err("maxDeliveryCount must be at least 1".into());
    }
    Ok(ReceiverSettings { lock_duration, max_delivery_count, dead_letter_on_expiration })
}
