//! Stub, replaced by its owner.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::Req;
use crate::state::Shared;

pub async fn handle(_shared: &Shared, _req: Req) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "graph").into_response()
}
