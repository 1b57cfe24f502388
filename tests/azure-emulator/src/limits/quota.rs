//! The counting behind the documented request limits (pure): sliding windows (the Storage RP's "observation
//! windows", Key Vault's 10-second windows) and token buckets (ARM's subscription limits since 2024), on Azure time
//! in seconds.

use std::collections::VecDeque;

/// At most `limit` requests in any `window` seconds.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    pub limit: u32,
    pub window: f64,
    admitted: VecDeque<f64>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: f64) -> Self {
        Self { limit, window, admitted: VecDeque::new() }
    }

    fn expire(&mut self, now: f64) {
        while self.admitted.front().is_some_and(|&t| t + self.window <= now) {
            self.admitted.pop_front();
        }
    }

    /// Requests still allowed in the window ending now.
    pub fn remaining(&mut self, now: f64) -> u32 {
        self.expire(now);
        self.limit.saturating_sub(self.admitted.len() as u32)
    }

    /// `None` when a request is allowed now, else how long until one is (Azure seconds).
    pub fn wait(&mut self, now: f64) -> Option<f64> {
        if self.remaining(now) > 0 {
            return None;
        }
        let oldest = self.admitted.front().copied().unwrap_or(now);
        Some((oldest + self.window - now).max(0.0))
    }

    pub fn admit(&mut self, now: f64) {
        self.admitted.push_back(now);
    }
}

/// A bucket of `capacity` tokens refilled at `refill` tokens per second; a request takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    pub capacity: f64,
    pub refill: f64,
    tokens: f64,
    at: f64,
}

impl TokenBucket {
    pub fn new(capacity: u32, refill: f64, now: f64) -> Self {
        Self { capacity: f64::from(capacity), refill, tokens: f64::from(capacity), at: now }
    }

    fn fill(&mut self, now: f64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.refill).min(self.capacity);
            self.at = now;
        }
    }

    /// Whole tokens left (what ARM's `x-ms-ratelimit-remaining-subscription-*` headers report).
    pub fn remaining(&mut self, now: f64) -> u32 {
        self.fill(now);
        self.tokens.floor() as u32
    }

    /// `None` when a token is there now, else how long until one is (Azure seconds).
    pub fn wait(&mut self, now: f64) -> Option<f64> {
        self.fill(now);
        (self.tokens < 1.0).then(|| (1.0 - self.tokens) / self.refill)
    }

    pub fn admit(&mut self, now: f64) {
        self.fill(now);
        self.tokens -= 1.0;
    }
}

/// A window as .NET's `TimeSpan` renders it ("c" format: `[d.]hh:mm:ss[.fffffff]`), which is how the Storage RP names
/// its observation windows (`Write_ObservationWindow_01:00:00`).
pub fn timespan(seconds: f64) -> String {
    let ticks = (seconds * 10_000_000.0).round() as u64;
    let (whole, fraction) = (ticks / 10_000_000, ticks % 10_000_000);
    let (days, hours, minutes, secs) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60, whole % 60);
    let mut text = if days > 0 { format!("{days}.") } else { String::new() };
    text.push_str(&format!("{hours:02}:{minutes:02}:{secs:02}"));
    if fraction > 0 {
        text.push_str(&format!(".{fraction:07}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_window_frees_a_slot_when_its_oldest_request_leaves_it() {
        let mut window = SlidingWindow::new(2, 10.0);
        assert_eq!(window.wait(0.0), None);
        window.admit(0.0);
        window.admit(4.0);
        assert_eq!(window.remaining(5.0), 0);
        assert_eq!(window.wait(5.0), Some(5.0));
        assert_eq!(window.wait(10.0), None);
        assert_eq!(window.remaining(14.0), 2);
    }

    #[test]
    fn a_token_bucket_refills_at_its_rate_up_to_its_capacity() {
        let mut bucket = TokenBucket::new(2, 10.0, 0.0);
        bucket.admit(0.0);
        bucket.admit(0.0);
        assert_eq!(bucket.remaining(0.0), 0);
        let wait = bucket.wait(0.0).unwrap();
        assert!((wait - 0.1).abs() < 1e-9, "{wait}");
        assert_eq!(bucket.remaining(0.1), 1);
        assert_eq!(bucket.remaining(100.0), 2);
    }

    #[test]
    fn windows_are_named_like_dotnet_timespans() {
        assert_eq!(timespan(3600.0), "01:00:00");
        assert_eq!(timespan(300.0), "00:05:00");
        assert_eq!(timespan(1.0), "00:00:01");
        assert_eq!(timespan(12.0), "00:00:12");
        assert_eq!(timespan(1.0 / 300.0), "00:00:00.0033333");
        assert_eq!(timespan(90_000.0), "1.01:00:00");
    }
}
