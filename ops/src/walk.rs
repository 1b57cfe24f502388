//! Walking a dead-letter queue over the REST API, which has no non-destructive peek: each message is peek-locked, and
//! every lock not settled is released (abandoned) at the end. Holding the locks for the whole walk is what makes the
//! walk see each message once: an abandoned message would be the next one delivered again.
//!
//! Cost of reading: Service Bus counts each lock as a delivery, so every walk raises each visited dead letter's
//! DeliveryCount by one. Dead letters are never dead-lettered again, so nothing else changes.

use std::time::Duration;

use cmk_handler::azure::servicebus::{ReceivedMessage, ServiceBusClient};
use cmk_handler::error::Error;

/// How long one receive waits for a message before the walk concludes the queue is drained. The REST API's minimum.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Unlocks in flight at once when the walk ends.
const RELEASE_CONCURRENCY: usize = 32;

/// One pass over `{queue}/$DeadLetterQueue`.
#[derive(Debug)]
pub struct DeadLetterWalk {
    client: ServiceBusClient,
    entity: String,
    held: Vec<ReceivedMessage>,
}

impl DeadLetterWalk {
    pub fn new(client: &ServiceBusClient, queue: &str) -> Self {
        Self { client: client.clone(), entity: dead_letter_queue(queue), held: Vec::new() }
    }

    /// The dead-letter queue's path, `queue/$DeadLetterQueue`.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// Locks the next dead letter; `None` once the queue has no unlocked message left.
    pub async fn next(&mut self) -> Result<Option<ReceivedMessage>, Error> {
        self.client.peek_lock(&self.entity, RECEIVE_WAIT).await
    }

    /// Keeps a message locked until [`Self::release`], so the walk moves past it.
    pub fn hold(&mut self, message: ReceivedMessage) {
        self.held.push(message);
    }

    /// Unlocks every held message. Failures are reported but do not stop the others: a lock that cannot be released
    /// expires on its own after the entity's lock duration.
    pub async fn release(self) -> Result<(), Error> {
        use futures::StreamExt;
        let client = &self.client;
        let results: Vec<Result<(), Error>> = futures::stream::iter(self.held.iter())
            .map(|message| client.abandon(message))
            .buffer_unordered(RELEASE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("{}/$DeadLetterQueue", queue.trim_matches('/'))
}
