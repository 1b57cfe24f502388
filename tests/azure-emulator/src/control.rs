//! The control surface under `/_emulator/`: scenario, changes, faults, request log, state dumps, clock.

use std::sync::Arc;

use axum::Router;

use crate::state::Shared;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
}
