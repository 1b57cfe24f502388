//! The request log: every request the emulator served, with its original URL, for call-count assertions.

use axum::http::{Method, StatusCode};
use url::Url;

use crate::clock::Clock;

/// Append-only log of served requests.
#[derive(Debug, Default)]
pub struct RequestLog {}

impl RequestLog {
    pub fn record(&self, _clock: &Clock, _method: &Method, _url: &Url, _status: StatusCode, _elapsed: std::time::Duration) {}
}
