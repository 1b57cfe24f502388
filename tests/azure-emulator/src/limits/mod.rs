//! Azure's pace: per-host latency (fixed plus jitter) and the documented request limits, with each service's 429
//! body, `Retry-After` and remaining-quota headers; a time scale shrinks Azure's windows, waits and latencies together
//! so an hour of Azure runs in seconds. Limits and their sources: `tests/azure-emulator/docs/limits.md`.
//!
//! Modelled limits (Azure time):
//! - ARM, per subscription (token buckets since 2024): reads 250 / 25 per s, writes 200 / 10 per s, deletes 200 / 10
//!   per s; headers `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}`; 429 `SubscriptionRequestsThrottled`.
//! - Storage RP, per subscription and region: reads 800 per 5 min, writes 10 per s and 1,200 per h, lists 100 per
//!   5 min; header `x-ms-ratelimit-remaining-resource` (`Microsoft.Storage/<window>;<n>`); 429 `TooManyRequests`.
//! - Key Vault, per vault: 4,000 transactions per 10 s (RSA 2,048 software keys), 20 key creations per 10 s;
//!   429 `Throttled`. Throttled requests count against nothing.

pub mod quota;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cloud::{Cloud, Service};
use crate::http::Req;
use quota::{SlidingWindow, TokenBucket, timespan};

/// What `PUT /_emulator/limits` takes and `GET` shows (with counters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Azure seconds per real second (1: real time; 300: an hour of Azure in 12 s). Divides every window, every
    /// `Retry-After` and every latency.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Enforce the documented request limits (on by default: the emulator is as strict as Azure).
    #[serde(default = "yes")]
    pub throttling: bool,
    /// Latency per host, first match wins; none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyRule>,
    /// Seed of the jitter draws; absent means a random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { time_scale: 1.0, throttling: true, latency: Vec::new(), seed: None }
    }
}

/// Every request to a matching host takes `fixedMs` plus a uniform draw in `[0, jitterMs]` (Azure milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyRule {
    /// Exact host, `*.suffix` or `*`, as in fault rules; local endpoints are `127.0.0.1`.
    pub host: String,
    #[serde(default)]
    pub fixed_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
}

/// A request's fate at the throttles.
#[derive(Debug)]
pub enum Admission {
    /// Serve it; add these headers to the answer.
    Admitted(HeaderMap),
    /// Answer this 429 instead.
    Throttled(Response),
}

/// The limits in force and their counters.
#[derive(Debug)]
pub struct Limits {
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimitsConfig,
    rng: StdRng,
    /// ARM token buckets by (subscription, operation kind).
    arm: HashMap<(String, ArmKind), TokenBucket>,
    /// Storage RP windows by (subscription, region, operation kind).
    storage: HashMap<(String, String, RpKind), Vec<SlidingWindow>>,
    /// Key Vault windows by (vault host, create or other).
    vaults: HashMap<(String, bool), SlidingWindow>,
    admitted: u64,
    throttled: HashMap<&'static str, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ArmKind {
    Reads,
    Writes,
    Deletes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RpKind {
    Read,
    Write,
    List,
}

impl RpKind {
    fn name(self) -> &'static str {
        match self {
            RpKind::Read => "Read",
            RpKind::Write => "Write",
            RpKind::List => "List",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        let rng = seeded(config.seed);
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                config,
                rng,
                arm: HashMap::new(),
                storage: HashMap::new(),
                vaults: HashMap::new(),
                admitted: 0,
                throttled: HashMap::new(),
            }),
        }
    }

    /// Replaces the configuration and starts every window afresh.
    pub fn configure(&self, config: LimitsConfig) -> Result<(), String> {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(format!("timeScale must be a positive number, got {}", config.time_scale));
        }
        *self.inner.lock().expect("limits lock poisoned") = Limits::new(config).inner.into_inner().expect("fresh lock");
        Ok(())
    }

    /// The configuration and what the throttles did so far.
    pub fn status(&self) -> serde_json::Value {
        let inner = self.inner.lock().expect("limits lock poisoned");
        json!({ "config": inner.config, "admitted": inner.admitted, "throttled": inner.throttled })
    }

    /// How long a request to `host` takes before it is served (real time), if a latency rule matches.
    pub fn latency(&self, host: &str) -> Option<Duration> {
        let mut inner = self.inner.lock().expect("limits lock poisoned");
        let rule = inner.config.latency.iter().find(|r| crate::faults::host_matches(&r.host, host))?.clone();
        let jitter = if rule.jitter_ms > 0 { inner.rng.gen_range(0..=rule.jitter_ms) } else { 0 };
        let azure_ms = (rule.fixed_ms + jitter) as f64;
        Some(Duration::from_secs_f64(azure_ms / 1000.0 / inner.config.time_scale))
    }

    /// Azure time in seconds: real time since start, scaled, plus the emulator clock's advances.
    fn azure_now(&self, scale: f64, clock_offset: Duration) -> f64 {
        self.started.elapsed().as_secs_f64() * scale + clock_offset.as_secs_f64()
    }

    /// Counts `req` against the limits of the service it is for. `region_of` names the region of a storage account
    /// (by its resource id);
    /// `actor` is the caller's object id, from a token whose signature holds; `None` for an ARM request ARM would refuse
    /// unauthenticated, which is not counted.
    pub fn admit(
        &self,
        req: &Req,
        clock_offset: Duration,
        region_of: impl FnOnce(&str) -> Option<String>,
        actor: impl FnOnce() -> Option<String>,
    ) -> Admission {
        let mut inner = self.inner.lock().expect("limits lock poisoned");
        if !inner.config.throttling {
            return Admission::Admitted(HeaderMap::new());
        }
        let scale = inner.config.time_scale;
        let now = self.azure_now(scale, clock_offset);
        let host = req.host();
        let admission = match Cloud::service_for_host(&host).map(|(_, service)| service) {
            Some(Service::Arm) => inner.arm_request(req, now, region_of, actor),
            Some(Service::KeyVault { managed_hsm: false, .. }) => inner.vault_request(req, &host, now),
            _ => Ok(HeaderMap::new()),
        };
        match admission {
            Ok(headers) => {
                inner.admitted += 1;
                Admission::Admitted(headers)
            }
            Err(throttle) => {
                *inner.throttled.entry(throttle.counter).or_default() += 1;
                Admission::Throttled(throttle.response(scale))
            }
        }
    }
}

fn seeded(seed: Option<u64>) -> StdRng {
    seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64)
}

/// A refusal: the body, and the wait in Azure seconds.
struct Throttle {
    counter: &'static str,
    body: serde_json::Value,
    wait: f64,
    headers: HeaderMap,
}

impl Throttle {
    /// `Retry-After` in whole seconds, rounded up, as the services send it. Under a time scale the real wait is
    /// usually under a second, which whole seconds cannot say, so `retry-after-ms` carries it as well.
    fn response(self, scale: f64) -> Response {
        let real = self.wait / scale;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.extend(self.headers);
        headers.insert("retry-after", HeaderValue::from(real.ceil().max(0.0) as u64));
        if scale != 1.0 {
            headers.insert("retry-after-ms", HeaderValue::from((real * 1000.0).ceil() as u64));
        }
        response
    }
}

const STORAGE_PROVIDER: &str = "/providers/microsoft.storage/storageaccounts";

impl Inner {
    fn arm_request(
        &mut self,
        req: &Req,
        now: f64,
        region_of: impl FnOnce(&str) -> Option<String>,
        actor: impl FnOnce() -> Option<String>,
    ) -> Result<HeaderMap, Box<Throttle>> {
        let path = req.url.path().to_ascii_lowercase();
        let Some(subscription) = path.strip_prefix("/subscriptions/").and_then(|rest| rest.split('/').next()) else {
            return Ok(HeaderMap::new());
        };
        let subscription = subscription.to_owned();
        // ARM authenticates a request before it counts it against the caller's buckets (throttling is per principal,
        // https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling): a request
        // without a token it can read gets its 401 and spends nothing.
        let Some(actor) = actor() else {
            return Ok(HeaderMap::new());
        };
        let kind = match req.method {
            Method::GET | Method::HEAD => ArmKind::Reads,
            Method::DELETE => ArmKind::Deletes,
            _ => ArmKind::Writes,
        };
        let (capacity, refill) = match kind {
            ArmKind::Reads => (250, 25.0),
            ArmKind::Writes | ArmKind::Deletes => (200, 10.0),
        };
        let word = match kind {
            ArmKind::Reads => "reads",
            ArmKind::Writes => "writes",
            ArmKind::Deletes => "deletes",
        };
        let bucket =
            self.arm.entry((subscription.clone(), kind)).or_insert_with(|| TokenBucket::new(capacity, refill, now));
        if let Some(wait) = bucket.wait(now) {
            let singular = word.trim_end_matches('s');
            let message = format!(
                "Number of '{singular}' requests for subscription '{subscription}' actor '{actor}' exceeded. Please \
                 try again after '{}' seconds after additional tokens are available. Refer to \
                 https://aka.ms/arm-throttling for additional information.",
                wait.ceil() as u64
            );
            return Err(Box::new(Throttle {
                counter: "arm",
                body: json!({ "error": { "code": "SubscriptionRequestsThrottled", "message": message } }),
                wait,
                headers: HeaderMap::new(),
            }));
        }
        // The Storage RP sees only what ARM let through; ARM's token is spent either way.
        bucket.admit(now);
        let remaining = bucket.remaining(now);
        let mut headers = HeaderMap::new();
        let name = HeaderName::try_from(format!("x-ms-ratelimit-remaining-subscription-{word}")).expect("header name");
        headers.insert(name, HeaderValue::from(remaining));
        if let Some(at) = path.find(STORAGE_PROVIDER) {
            let account = path[at + STORAGE_PROVIDER.len()..].trim_start_matches('/');
            let (rp_kind, account) = match (account.split('/').next().filter(|a| !a.is_empty()), &req.method) {
                (None, _) => (RpKind::List, None),
                (Some(name), &Method::GET | &Method::HEAD) => (RpKind::Read, Some(name)),
                (Some(name), _) => (RpKind::Write, Some(name)),
            };
            // The account's id: the path up to its name.
            let id = account.map(|name| &path[..at + STORAGE_PROVIDER.len() + 1 + name.len()]);
            let region = id.and_then(region_of).unwrap_or_default().to_ascii_lowercase();
            self.storage_request(&subscription, region, rp_kind, now, &mut headers)?;
        }
        Ok(headers)
    }

    fn storage_request(
        &mut self,
        subscription: &str,
        region: String,
        kind: RpKind,
        now: f64,
        headers: &mut HeaderMap,
    ) -> Result<(), Box<Throttle>> {
        let scale = self.config.time_scale;
        let windows = self.storage.entry((subscription.to_owned(), region, kind)).or_insert_with(|| match kind {
            RpKind::Read => vec![SlidingWindow::new(800, 300.0)],
            RpKind::Write => vec![SlidingWindow::new(10, 1.0), SlidingWindow::new(1200, 3600.0)],
            RpKind::List => vec![SlidingWindow::new(100, 300.0)],
        });
        // The window's name as the RP spells it, in the emulated (scaled) Azure's own time.
        let label =
            |window: &SlidingWindow| format!("{}_ObservationWindow_{}", kind.name(), timespan(window.window / scale));
        if let Some((window, wait)) = windows
            .iter_mut()
            .filter_map(|w| w.wait(now).map(|wait| (w.clone(), wait)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            let message = format!(
                "The request is being throttled as the limit has been reached for operation type - {}. For more \
                 information, see - https://aka.ms/srpthrottlinglimits",
                label(&window)
            );
            return Err(Box::new(Throttle {
                counter: "storage",
                body: json!({ "error": { "code": "TooManyRequests", "message": message } }),
                wait,
                headers: std::mem::take(headers),
            }));
        }
        let mut remaining = Vec::new();
        for window in windows.iter_mut() {
            window.admit(now);
            remaining.push(format!("Microsoft.Storage/{};{}", label(window), window.remaining(now)));
        }
        headers.insert(
            "x-ms-ratelimit-remaining-resource",
            HeaderValue::from_str(&remaining.join(",")).expect("header value"),
        );
        Ok(())
    }

    fn vault_request(&mut self, req: &Req, host: &str, now: f64) -> Result<HeaderMap, Box<Throttle>> {
        let create = req.method == Method::POST && req.url.path().to_ascii_lowercase().ends_with("/create");
        let limit = if create { 20 } else { 4000 };
        let window = self.vaults.entry((host.to_owned(), create)).or_insert_with(|| SlidingWindow::new(limit, 10.0));
        if let Some(wait) = window.wait(now) {
            let message = "Request was not processed because too many requests were received. Reason: \
                           VaultRequestTypeLimitReached";
            return Err(Box::new(Throttle {
                counter: "keyVault",
                body: json!({ "error": { "code": "Throttled", "message": message } }),
                wait,
                headers: HeaderMap::new(),
            }));
        }
        window.admit(now);
        Ok(HeaderMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    fn req(method: Method, url: &str) -> Req {
        Req { method, url: url::Url::parse(url).unwrap(), headers: HeaderMap::new(), body: Bytes::new() }
    }

    const ACCOUNT: &str = "https://management.azure.com/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acc1?api-version=2023-05-01";

    fn admit(limits: &Limits, req: &Req) -> Admission {
        limits.admit(req, Duration::ZERO, |_| Some("westeurope".into()), || Some("oid-1".into()))
    }

    async fn body(response: Response) -> serde_json::Value {
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn storage_writes_stop_at_ten_per_second_with_the_rps_body_and_headers() {
        // A huge scale would let real time pass between calls count; a tiny one freezes Azure time for the test.
        let limits = Limits::new(LimitsConfig { time_scale: 1e-6, ..LimitsConfig::default() });
        for i in 0..10 {
            let Admission::Admitted(headers) = admit(&limits, &req(Method::PATCH, ACCOUNT)) else {
                panic!("write {i}")
            };
            assert_eq!(headers["x-ms-ratelimit-remaining-subscription-writes"], (199 - i).to_string().as_str());
            let resource = headers["x-ms-ratelimit-remaining-resource"].to_str().unwrap();
            assert!(resource.contains(&format!(";{}", 9 - i)), "{resource}");
        }
        let Admission::Throttled(response) = admit(&limits, &req(Method::PATCH, ACCOUNT)) else { panic!("11th write") };
        assert_eq!(response.status(), 429);
        assert!(response.headers().contains_key("retry-after"));
        assert!(response.headers().contains_key("retry-after-ms"), "scaled time says the wait in ms too");
        let body = body(response).await;
        assert_eq!(body["error"]["code"], "TooManyRequests");
        assert!(body["error"]["message"].as_str().unwrap().contains("Write_ObservationWindow_"), "{body}");
        // Reads have their own window.
        assert!(matches!(admit(&limits, &req(Method::GET, ACCOUNT)), Admission::Admitted(_)));
        assert_eq!(limits.status()["throttled"]["storage"], 1);
    }

    #[tokio::test]
    async fn arm_reads_are_a_token_bucket_of_250() {
        let limits = Limits::new(LimitsConfig { time_scale: 1e-6, ..LimitsConfig::default() });
        let identity = "https://management.azure.com/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u?api-version=2023-01-31";
        for _ in 0..250 {
            assert!(matches!(admit(&limits, &req(Method::GET, identity)), Admission::Admitted(_)));
        }
        let Admission::Throttled(response) = admit(&limits, &req(Method::GET, identity)) else { panic!("251st read") };
        let body = body(response).await;
        assert_eq!(body["error"]["code"], "SubscriptionRequestsThrottled");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("'read' requests for subscription 's1' actor 'oid-1'"), "{message}");
        // Another subscription has its own bucket.
        let other = identity.replace("/s1/", "/s2/");
        assert!(matches!(admit(&limits, &req(Method::GET, &other)), Admission::Admitted(_)));
    }

    #[tokio::test]
    async fn the_time_scale_shrinks_windows_and_waits() {
        // 3,600 Azure seconds per real second: the storage write's 1-second window passes in under a millisecond.
        let limits = Limits::new(LimitsConfig { time_scale: 3600.0, ..LimitsConfig::default() });
        for _ in 0..10 {
            assert!(matches!(admit(&limits, &req(Method::PATCH, ACCOUNT)), Admission::Admitted(_)));
        }
        std::thread::sleep(Duration::from_millis(2));
        let Admission::Admitted(headers) = admit(&limits, &req(Method::PATCH, ACCOUNT)) else {
            panic!("window passed")
        };
        let resource = headers["x-ms-ratelimit-remaining-resource"].to_str().unwrap();
        assert!(resource.contains("Microsoft.Storage/Write_ObservationWindow_00:00:01;"), "{resource}");
        assert!(resource.contains("Write_ObservationWindow_00:00:00.0002778;"), "{resource}");
        assert_eq!(limits.latency("management.azure.com"), None);
        limits
            .configure(LimitsConfig {
                time_scale: 100.0,
                latency: vec![LatencyRule { host: "*".into(), fixed_ms: 1000, jitter_ms: 0 }],
                ..LimitsConfig::default()
            })
            .unwrap();
        assert_eq!(limits.latency("management.azure.com"), Some(Duration::from_millis(10)));
    }

    #[tokio::test]
    async fn key_vault_allows_4000_transactions_per_10_seconds_per_vault() {
        let limits = Limits::new(LimitsConfig { time_scale: 1e-6, ..LimitsConfig::default() });
        let get = req(Method::GET, "https://kv1.vault.azure.net/keys/k?api-version=7.4");
        for _ in 0..4000 {
            assert!(matches!(admit(&limits, &get), Admission::Admitted(_)));
        }
        let Admission::Throttled(response) = admit(&limits, &get) else { panic!("4001st") };
        assert_eq!(body(response).await["error"]["code"], "Throttled");
        let other = req(Method::GET, "https://kv2.vault.azure.net/keys/k?api-version=7.4");
        assert!(matches!(admit(&limits, &other), Admission::Admitted(_)));
    }

    /// ARM refuses a request without a readable token before counting it: a flood of them spends no caller's quota.
    #[test]
    fn unauthenticated_arm_requests_are_not_counted() {
        let limits = Limits::new(LimitsConfig { time_scale: 1e-6, ..LimitsConfig::default() });
        let anonymous = |req: &Req| limits.admit(req, Duration::ZERO, |_| Some("westeurope".into()), || None);
        for _ in 0..50 {
            assert!(matches!(anonymous(&req(Method::PATCH, ACCOUNT)), Admission::Admitted(h) if h.is_empty()));
        }
        for _ in 0..10 {
            assert!(matches!(admit(&limits, &req(Method::PATCH, ACCOUNT)), Admission::Admitted(_)));
        }
        assert!(matches!(admit(&limits, &req(Method::PATCH, ACCOUNT)), Admission::Throttled(_)), "the 11th write");
    }

    #[test]
    fn throttling_can_be_switched_off_and_bad_scales_are_refused() {
        let limits = Limits::default();
        assert!(limits.configure(LimitsConfig { time_scale: 0.0, ..LimitsConfig::default() }).is_err());
        let config: LimitsConfig = serde_json::from_str(r#"{"throttling":false}"#).unwrap();
        assert_eq!(config.time_scale, 1.0);
        limits.configure(config).unwrap();
        for _ in 0..20 {
            assert!(matches!(admit(&limits, &req(Method::PATCH, ACCOUNT)), Admission::Admitted(h) if h.is_empty()));
        }
        assert!(serde_json::from_str::<LimitsConfig>(r#"{"bogus":1}"#).is_err());
    }
}
