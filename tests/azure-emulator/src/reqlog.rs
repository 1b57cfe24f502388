//! The request log: every request the emulator served, with its original URL, for call-count assertions.

use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::clock::Clock;

/// One served request, as `GET /_emulator/requests` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// 1-based, increasing in the order requests finished; never reused, even after a clear.
    pub seq: u64,
    /// Emulated time when the request finished.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub method: String,
    /// The original URL (Azure host, path and query).
    pub url: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub duration_ms: u64,
}

/// Append-only (until cleared) log of served requests.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    records: Vec<RequestRecord>,
}

impl RequestLog {
    pub fn record(&self, clock: &Clock, method: &Method, url: &Url, status: StatusCode, elapsed: std::time::Duration) {
        let mut inner = self.inner.lock().expect("request log lock poisoned");
        inner.next_seq += 1;
        let record = RequestRecord {
            seq: inner.next_seq,
            time: clock.now(),
            method: method.to_string(),
            url: url.to_string(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            path: url.path().to_owned(),
            status: status.as_u16(),
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        };
        inner.records.push(record);
    }

    /// Records in order, optionally only those for one host (case-insensitive).
    pub fn list(&self, host: Option<&str>) -> Vec<RequestRecord> {
        let inner = self.inner.lock().expect("request log lock poisoned");
        inner.records.iter().filter(|r| host.is_none_or(|h| r.host.eq_ignore_ascii_case(h))).cloned().collect()
    }

    /// How many requests were served since the start (clearing the log does not reset it).
    pub fn served(&self) -> u64 {
        self.inner.lock().expect("request log lock poisoned").next_seq
    }

    pub fn clear(&self) {
        self.inner.lock().expect("request log lock poisoned").records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_filters_and_clears() {
        let log = RequestLog::default();
        let clock = Clock::default();
        let a = Url::parse("https://management.azure.com/subscriptions/s").unwrap();
        let b = Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap();
        log.record(&clock, &Method::GET, &a, StatusCode::OK, std::time::Duration::from_millis(3));
        log.record(&clock, &Method::POST, &b, StatusCode::BAD_REQUEST, std::time::Duration::ZERO);
        let all = log.list(None);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(log.list(Some("LOGIN.microsoftonline.com")).len(), 1);
        log.clear();
        assert!(log.list(None).is_empty());
        log.record(&clock, &Method::GET, &a, StatusCode::OK, std::time::Duration::ZERO);
        assert_eq!(log.list(None)[0].seq, 3);
    }
}
