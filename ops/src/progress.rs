//! Progress on stderr for long runs (redrawn in place on a terminal, silent otherwise), and the replay rate limit.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A one-line progress display: `replay [#####-----] 120/1000 (12 failed) 85/s`.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: Option<usize>,
    done: usize,
    failed: usize,
    started: Instant,
    last_drawn: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// `total` is unknown while the queue is being walked; the bar then shows a count.
    pub fn new(label: &'static str, total: Option<usize>) -> Self {
        let enabled = std::io::stderr().is_terminal();
        Self { label, total, done: 0, failed: 0, started: Instant::now(), last_drawn: None, enabled }
    }

    pub fn advance(&mut self, ok: bool) {
        self.done += 1;
        if !ok {
            self.failed += 1;
        }
        // Redrawing more than ~10 times a second only costs time.
        if self.last_drawn.is_none_or(|at| at.elapsed() > Duration::from_millis(100)) {
            self.draw();
        }
    }

    /// Sets the counts (for runs that report totals rather than single steps).
    pub fn advance_to(&mut self, done: usize, failed: usize) {
        self.done = done;
        self.failed = failed;
        if self.last_drawn.is_none_or(|at| at.elapsed() > Duration::from_millis(100)) {
            self.draw();
        }
    }

    pub fn finish(&mut self) {
        self.draw();
        if self.enabled {
            eprintln!();
        }
    }

    fn draw(&mut self) {
        if !self.enabled {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let bar = match self.total {
            Some(total) if total > 0 => {
                let filled = (self.done * 30 / total).min(30);
                format!("[{}{}] {}/{total}", "#".repeat(filled), "-".repeat(30 - filled), self.done)
            }
            _ => format!("{}", self.done),
        };
        let mut err = std::io::stderr();
        let failed = if self.failed > 0 { format!(" ({} failed)", self.failed) } else { String::new() };
        let _ = write!(err, "\r{} {bar}{failed} {rate:.0}/s ", self.label);
        let _ = err.flush();
    }
}

/// At most `per_second` starts per second, evenly spaced (no bursts).
#[derive(Debug)]
pub struct RateLimit {
    interval: Option<Duration>,
    next: tokio::time::Instant,
}

impl RateLimit {
    /// `per_second <= 0` means no limit.
    pub fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        Self { interval, next: tokio::time::Instant::now() }
    }

    /// Waits for the next slot.
    pub async fn acquire(&mut self) {
        let Some(interval) = self.interval else { return };
        let now = tokio::time::Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + interval;
    }
}
