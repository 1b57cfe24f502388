//! Stub, replaced by its owner.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::Req;
use crate::state::Shared;

pub async fn handle(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "keyvault").into_response()
}

/// All vaults, their keys and role assignments.
#[derive(Debug, Default)]
pub struct Vaults {}

impl Vaults {
    pub fn from_scenario(_scenario: &crate::scenario::Scenario, _cloud: crate::cloud::Cloud) -> Result<Self, String> {
        Ok(Self {})
    }

    pub fn apply(&mut self, change: &crate::scenario::Change) -> Result<(), String> {
        Err(format!("not implemented yet: {change:?}"))
    }

    /// State dump for `/_emulator/state`: vaults, key versions (no private material) and role assignments.
    pub fn dump(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}
