//! Service Bus: the broker (queues, topics, subscriptions, locks, dead letters) and its REST data plane.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::cloud::Cloud;
use crate::http::Req;
use crate::scenario::ServiceBusNamespace;
use crate::state::Shared;

/// The broker: every namespace and entity.
#[derive(Debug)]
pub struct Bus {
    #[allow(dead_code)]
    clock: Clock,
}

impl Bus {
    pub fn new(clock: Clock) -> Self {
        Self { clock }
    }

    pub fn load(&self, _namespaces: &[ServiceBusNamespace], _cloud: Cloud) -> Result<(), String> {
        Ok(())
    }

    /// State dump for `/_emulator/state`: every entity with its active, scheduled, locked and dead-lettered messages.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({})
    }

    /// Called after the clock jumped forward, so waiting receivers re-check scheduled messages, locks and TTLs.
    pub fn clock_advanced(&self) {}
}

/// REST data plane for `{namespace}.servicebus.windows.net`.
pub async fn handle(_shared: &Shared, _namespace: &str, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "servicebus").into_response()
}
