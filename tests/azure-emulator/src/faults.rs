//! Fault rules: answer a status, delay, or reset the connection for matching requests.

use axum::response::Response;

use crate::clock::Clock;
use crate::http::Req;

/// The configured fault rules.
#[derive(Debug, Default)]
pub struct Faults {}

/// What a matching rule does to a request.
#[derive(Debug)]
pub enum Fault {
    Respond(Response),
    Delay(std::time::Duration),
    Reset,
}

impl Faults {
    pub fn check(&self, _req: &Req, _clock: &Clock) -> Option<Fault> {
        None
    }
}

/// A response whose body fails, so the server drops the connection mid-response.
pub fn reset_response() -> Response {
    use axum::response::IntoResponse;
    (axum::http::StatusCode::BAD_GATEWAY, "reset").into_response()
}
