//! Selecting dead letters by filter: one walk over the dead-letter queue, locks released before the caller works on
//! the copies (so slow work such as diagnosis never outlives a lock).

use cmk_handler::azure::servicebus::{ReceivedMessage, ServiceBusClient};

use crate::dead_letter::{DeadLetter, Filter};
use crate::progress::Progress;
use crate::walk::DeadLetterWalk;

/// The dead letters that matched, in sequence order.
#[derive(Debug)]
pub struct Selection {
    pub messages: Vec<(ReceivedMessage, DeadLetter)>,
    /// How many dead letters the walk saw in all.
    pub seen: usize,
}

pub async fn select(
    client: &ServiceBusClient,
    queue: &str,
    filter: &Filter,
    limit: Option<usize>,
) -> Result<Selection, String> {
    let mut walk = DeadLetterWalk::new(client, queue);
    let mut messages = Vec::new();
    let mut seen = 0;
    let mut progress = Progress::new("reading", None);
    let outcome = async {
        while limit.is_none_or(|limit| messages.len() < limit) {
            let Some(message) = walk.next().await.map_err(|e| e.to_string())? else { break };
            seen += 1;
            progress.advance(true);
            let letter = DeadLetter::from_message(&message);
            if filter.matches(&letter) {
                messages.push((message.clone(), letter));
            }
            walk.hold(message);
        }
        Ok::<(), String>(())
    }
    .await;
    progress.finish();
    // Released whatever happened: a walk that failed halfway must not leave messages locked for a lock duration.
    let released = walk.release().await.map_err(|e| format!("could not unlock every dead letter: {e}"));
    outcome?;
    released?;
    messages.sort_by_key(|(_, letter)| letter.sequence_number);
    Ok(Selection { messages, seen })
}
