//! Entra ID: the directory (tenants, apps, federated credentials, service principals, managed identities), token
//! minting and verification, the App Service managed-identity endpoint and the v2.0 token endpoint.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::http::Req;
use crate::scenario::{Change, Scenario};
use crate::state::Shared;

/// Tenants, applications, service principals and managed identities.
#[derive(Debug, Default)]
pub struct Directory {}

impl Directory {
    pub fn from_scenario(_scenario: &Scenario) -> Result<Self, String> {
        Ok(Self {})
    }

    pub fn apply(&mut self, change: &Change) -> Result<(), String> {
        Err(format!("not implemented yet: {change:?}"))
    }
}

/// Mints and verifies the emulator's JWT-shaped tokens.
#[derive(Debug)]
pub struct TokenMinter {
    #[allow(dead_code)]
    clock: Clock,
}

impl TokenMinter {
    pub fn new(clock: Clock) -> Self {
        Self { clock }
    }
}

/// `POST https://{login}/{tenant}/oauth2/v2.0/token` and friends.
pub async fn handle(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "entra").into_response()
}

/// The App Service managed-identity endpoint (`GET /msi/token`).
pub async fn msi(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "msi").into_response()
}
