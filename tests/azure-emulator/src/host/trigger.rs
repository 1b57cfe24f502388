//! Service Bus trigger dispatch: one listener per `serviceBusTrigger` function receives under peek-lock, up to
//! `maxConcurrentCalls` at once, invokes the handler and settles as the extension does (reference §3, §8.2):
//! success → outputs, then complete; failure → abandon at once; timeout → abandon and restart the handler.
//!
//! With `isSessionsEnabled` the extension runs a session processor instead: up to `maxConcurrentSessions` sessions
//! held at once, one message at a time in each (the processor's `MaxConcurrentCallsPerSession` is 1, and extension
//! 5.x has no setting for it), a session closed after `sessionIdleTimeout` without a message, and the session lock
//! renewed from acceptance for up to `maxAutoLockRenewalDuration` (`SessionReceiverManager.RenewSessionLock`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::access;
use super::config::{self, FunctionConfig};
use super::invoke::{self, Outcome};
use super::payload::{self, InvocationContext, TriggerMessage};
use super::process::WorkerState;
use super::runtime::Runtime;
use crate::servicebus::Delivered;
use crate::servicebus::access::Right;
use crate::state::Shared;

/// How long one receive call waits before the listener looks at the handler state again.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

/// Where one function listens.
#[derive(Debug, Clone)]
pub struct Listener {
    pub function: FunctionConfig,
    pub trigger_name: String,
    pub namespace: String,
    pub fully_qualified_namespace: String,
    /// `queue` or `topic/subscriptions/sub`.
    pub entity: String,
    /// The trigger's `connection` setting name (`None`: `AzureWebJobsServiceBus`).
    pub connection: Option<String>,
    pub binary: bool,
    pub auto_complete: bool,
    /// `isSessionsEnabled`: receive through session locks.
    pub sessions: bool,
    client_id: Uuid,
}

/// Resolves every Service Bus-triggered function to its namespace and entity.
pub fn listeners(runtime: &Runtime, suffix: &str) -> Result<Vec<Listener>, String> {
    let mut found = Vec::new();
    for function in runtime.config.functions.iter().filter(|f| !f.disabled) {
        let Some(trigger) = function.trigger().filter(|t| t.kind == "servicebustrigger") else { continue };
        let entity = match (trigger.str("queueName"), trigger.str("topicName"), trigger.str("subscriptionName")) {
            (Some(queue), _, _) => queue.to_owned(),
            (None, Some(topic), Some(subscription)) => format!("{topic}/subscriptions/{subscription}"),
            _ => {
                return Err(format!(
                    "function {}: the trigger needs queueName or topicName + subscriptionName",
                    function.name
                ));
            }
        };
        let namespace = config::namespace_of(trigger.str("connection"), &runtime.settings)
            .map_err(|e| format!("function {}: {e}", function.name))?;
        if trigger.str("cardinality").is_some_and(|c| c.eq_ignore_ascii_case("many")) {
            return Err(format!("function {}: cardinality \"many\" (batch dispatch) is not emulated", function.name));
        }
        let auto_complete =
            trigger.bool("autoCompleteMessages").unwrap_or(runtime.config.host.service_bus.auto_complete_messages);
        found.push(Listener {
            function: function.clone(),
            trigger_name: trigger.name.clone(),
            fully_qualified_namespace: format!("{namespace}.{}", suffix),
            namespace,
            entity,
            connection: trigger.str("connection").map(str::to_owned),
            binary: trigger.is_binary(),
            auto_complete,
            sessions: trigger.bool("isSessionsEnabled").unwrap_or(false),
            client_id: Uuid::new_v4(),
        });
    }
    Ok(found)
}

/// Starts a receive loop per listener; abort the handles to stop.
pub fn spawn(shared: &Arc<Shared>, runtime: &Arc<Runtime>, listeners: Vec<Listener>) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|listener| tokio::spawn(listen(shared.clone(), runtime.clone(), Arc::new(listener))))
        .collect()
}

async fn listen(shared: Arc<Shared>, runtime: Arc<Runtime>, listener: Arc<Listener>) {
    if listener.sessions {
        return listen_to_sessions(shared, runtime, listener).await;
    }
    let slots = Arc::new(Semaphore::new(runtime.config.host.service_bus.max_concurrent_calls));
    let mut reported = false;
    loop {
        if matches!(runtime.worker.state(), WorkerState::ShutDown(_) | WorkerState::Stopped) {
            return;
        }
        // The receiver needs Listen on the entity, checked on every receive as the service does: without it the real
        // host's processor logs the error and retries, and no message is ever processed.
        let allowed =
            access::check(&shared, &runtime.settings, listener.connection.as_deref(), &listener.entity, Right::Listen);
        runtime.record_listener(&listener.function.name, &listener.entity, allowed.as_ref().err());
        if allowed.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        match shared.bus.receive(&listener.namespace, &listener.entity, RECEIVE_WAIT).await {
            Ok(Some(delivered)) => {
                let (shared, runtime, listener) = (shared.clone(), runtime.clone(), listener.clone());
                tokio::spawn(async move {
                    process(&shared, &runtime, &listener, delivered, true).await;
                    drop(slot);
                });
            }
            Ok(None) => {}
            Err(e) => {
                if !reported {
                    tracing::error!(function = listener.function.name, entity = listener.entity, "receive failed: {e}");
                    reported = true;
                }
                // The SDK's processor backs off on errors the same way.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The session processor: `maxConcurrentSessions` pumps, each accepting the next available session and working
/// through it. Dropping this future (the listener's abort) stops every pump.
async fn listen_to_sessions(shared: Arc<Shared>, runtime: Arc<Runtime>, listener: Arc<Listener>) {
    let mut pumps = tokio::task::JoinSet::new();
    for _ in 0..runtime.config.host.service_bus.max_concurrent_sessions {
        pumps.spawn(session_pump(shared.clone(), runtime.clone(), listener.clone()));
    }
    while pumps.join_next().await.is_some() {}
}

async fn session_pump(shared: Arc<Shared>, runtime: Arc<Runtime>, listener: Arc<Listener>) {
    let (namespace, entity) = (&listener.namespace, &listener.entity);
    let mut reported = false;
    loop {
        if matches!(runtime.worker.state(), WorkerState::ShutDown(_) | WorkerState::Stopped) {
            return;
        }
        match shared.bus.accept_next_session(namespace, entity, RECEIVE_WAIT).await {
            Ok(Some(session)) => {
                let token = session.token;
                let renewal = AbortOnDrop(tokio::spawn(renew_lock(
                    shared.clone(),
                    LockKind::Session,
                    namespace.clone(),
                    entity.clone(),
                    token,
                    session.locked_until,
                    runtime.config.host.service_bus.max_auto_lock_renewal,
                )));
                work_through_session(&shared, &runtime, &listener, token).await;
                drop(renewal);
                // Closing after the last message, or after the lock was lost (then there is nothing to close).
                let _ = shared.bus.release_session(namespace, entity, token);
            }
            Ok(None) => {}
            Err(e) => {
                if !reported {
                    tracing::error!(function = listener.function.name, entity, "accepting a session failed: {e}");
                    reported = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One message at a time until the session stays idle for `sessionIdleTimeout` or its lock is lost.
async fn work_through_session(shared: &Arc<Shared>, runtime: &Arc<Runtime>, listener: &Listener, session: Uuid) {
    let idle = runtime.config.host.service_bus.session_idle_timeout;
    loop {
        if matches!(runtime.worker.state(), WorkerState::ShutDown(_) | WorkerState::Stopped) {
            return;
        }
        match shared.bus.receive_from_session(&listener.namespace, &listener.entity, session, idle).await {
            Ok(Some(delivered)) => process(shared, runtime, listener, delivered, false).await,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(function = listener.function.name, entity = listener.entity, "session ended: {e}");
                return;
            }
        }
    }
}

/// Aborts a background task when the work it supports ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `renew_message_lock`: false inside a session, whose lock covers the message and is renewed for the session.
async fn process(
    shared: &Arc<Shared>,
    runtime: &Arc<Runtime>,
    listener: &Listener,
    delivered: Delivered,
    renew_message_lock: bool,
) {
    let invocation_id = Uuid::new_v4();
    let lock_token = delivered.lock_token;
    runtime.record_delivery(delivered.message.delivery_count);
    let function = &listener.function.name;
    let context = InvocationContext {
        function_name: function.clone(),
        trigger_name: listener.trigger_name.clone(),
        binary: listener.binary,
        fully_qualified_namespace: listener.fully_qualified_namespace.clone(),
        client_id: listener.client_id,
        utc_now: shared.clock.now(),
        rand_guid: Uuid::new_v4(),
    };
    let body = payload::service_bus_request(&trigger_message(&delivered), &context);
    let renewal = renew_message_lock.then(|| {
        AbortOnDrop(tokio::spawn(renew_lock(
            shared.clone(),
            LockKind::Message,
            listener.namespace.clone(),
            listener.entity.clone(),
            lock_token,
            delivered.locked_until,
            runtime.config.host.service_bus.max_auto_lock_renewal,
        )))
    });
    let outcome = invoke::invoke(
        &runtime.client,
        &runtime.worker,
        runtime.hold,
        function,
        invocation_id,
        body,
        runtime.config.host.function_timeout,
    )
    .await;
    drop(renewal);
    let succeeded = match outcome {
        Outcome::Success(answer) => {
            runtime.log_answer(function, &answer);
            match runtime.send_service_bus_outputs(&listener.function, &answer, invocation_id).await {
                Ok(_) => {
                    runtime.record_ok();
                    true
                }
                Err(message) => {
                    runtime.record_failure(function, &message);
                    false
                }
            }
        }
        Outcome::Failure(message) => {
            runtime.record_failure(function, &message);
            false
        }
        Outcome::TimedOut => {
            runtime.record_timeout(function);
            false
        }
    };
    let settled = if succeeded {
        if !listener.auto_complete {
            // autoCompleteMessages=false: nobody completes; the lock expires and the message comes back.
            return;
        }
        shared.bus.complete(&listener.namespace, &listener.entity, lock_token)
    } else {
        // Abandoned regardless of autoCompleteMessages, with no back-off.
        shared.bus.abandon(&listener.namespace, &listener.entity, lock_token)
    };
    if let Err(e) = settled {
        runtime.record_settle_failed();
        tracing::warn!(function, entity = listener.entity, succeeded, "settling the message failed: {e}");
    }
}

/// Which lock a renewal loop keeps.
#[derive(Debug, Clone, Copy)]
enum LockKind {
    /// A message's, while its invocation runs.
    Message,
    /// A session's, while the session is held.
    Session,
}

/// Keeps the lock, up to `maxAutoLockRenewalDuration` from the start.
async fn renew_lock(
    shared: Arc<Shared>,
    kind: LockKind,
    namespace: String,
    entity: String,
    lock_token: Uuid,
    mut locked_until: time::OffsetDateTime,
    limit: Duration,
) {
    let started = Instant::now();
    loop {
        let remaining = (locked_until - shared.clock.now()).max(time::Duration::ZERO);
        let pause = Duration::try_from(remaining / 2).unwrap_or_default().max(Duration::from_millis(10));
        tokio::time::sleep(pause).await;
        if started.elapsed() >= limit {
            tracing::warn!(entity, %lock_token, "maxAutoLockRenewalDuration reached; the lock is no longer renewed");
            return;
        }
        let renewed = match kind {
            LockKind::Message => shared.bus.renew_lock(&namespace, &entity, lock_token),
            LockKind::Session => shared.bus.renew_session_lock(&namespace, &entity, lock_token),
        };
        match renewed {
            Ok(until) => locked_until = until,
            Err(e) => {
                tracing::warn!(entity, %lock_token, "lock renewal failed: {e}");
                return;
            }
        }
    }
}

fn trigger_message(delivered: &Delivered) -> TriggerMessage {
    let message = &delivered.message;
    TriggerMessage {
        body: message.body.clone(),
        delivery_count: message.delivery_count,
        lock_token: delivered.lock_token,
        expires_at: message.expires_at,
        enqueued_time: message.enqueued_time,
        sequence_number: message.sequence_number,
        message_id: message.message_id.clone(),
        content_type: message.content_type.clone(),
        reply_to: message.reply_to.clone(),
        to: message.to.clone(),
        subject: message.label.clone(),
        correlation_id: message.correlation_id.clone(),
        session_id: message.session_id.clone(),
        reply_to_session_id: message.reply_to_session_id.clone(),
        partition_key: message.partition_key.clone(),
        dead_letter_source: message.dead_letter_source.clone(),
        application_properties: message.application_properties.clone(),
    }
}
