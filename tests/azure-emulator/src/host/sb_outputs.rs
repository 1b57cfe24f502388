//! Sends what a successful answer put in its `serviceBus` output bindings: one message per converted body, each
//! `ContentType: text/plain` with `$AzureWebJobsParentId` = the invocation id, sent immediately and in order
//! (reference §2.2, `MessageSenderAsyncCollector`).

use uuid::Uuid;

use super::config::{self, FunctionConfig};
use super::outputs;
use super::result::Outputs;
use super::settings::Settings;
use crate::servicebus::NewMessage;
use crate::state::Shared;

/// Returns how many messages were sent.
pub fn send(
    shared: &Shared,
    settings: &Settings,
    function: &FunctionConfig,
    values: &Outputs,
    invocation_id: Uuid,
) -> Result<usize, String> {
    let mut sent = 0;
    for binding in function.outputs().filter(|b| b.kind == "servicebus") {
        let Some(value) = values.get(&binding.name) else { continue };
        // `queueName` wins when both are present (`JobHostMetadataProvider.Touchups`).
        let entity = binding
            .str("queueName")
            .or_else(|| binding.str("topicName"))
            .ok_or_else(|| format!("output binding {}: neither queueName nor topicName is set", binding.name))?;
        let namespace = config::namespace_of(binding.str("connection"), settings)
            .map_err(|e| format!("output binding {}: {e}", binding.name))?;
        for body in outputs::message_bodies(value, binding.is_binary()) {
            let message = NewMessage {
                body: body.into_bytes(),
                content_type: Some("text/plain".to_owned()),
                application_properties: [(
                    "$AzureWebJobsParentId".to_owned(),
                    serde_json::Value::String(invocation_id.to_string()),
                )]
                .into(),
                ..NewMessage::default()
            };
            shared
                .bus
                .send(&namespace, entity, message)
                .map_err(|e| format!("output binding {} to {namespace}/{entity}: {e}", binding.name))?;
            sent += 1;
        }
    }
    Ok(sent)
}
