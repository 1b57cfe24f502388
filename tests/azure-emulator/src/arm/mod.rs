//! Azure Resource Manager: features, providers, user-assigned identities and storage accounts.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::Req;
use crate::scenario::{Change, Scenario};
use crate::state::Shared;

/// Subscriptions, features, providers, identities, storage accounts and ISV-side denials.
#[derive(Debug, Default)]
pub struct ArmState {}

impl ArmState {
    pub fn from_scenario(_scenario: &Scenario) -> Result<Self, String> {
        Ok(Self {})
    }

    pub fn apply(&mut self, change: &Change) -> Result<(), String> {
        Err(format!("not implemented yet: {change:?}"))
    }

    /// State dump for `/_emulator/state`: subscriptions, identities and storage accounts as ARM would show them.
    pub fn dump(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

pub async fn handle(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "arm").into_response()
}
