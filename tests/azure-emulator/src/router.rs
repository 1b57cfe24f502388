//! Routes every request to the emulated service it was meant for, by its original URL.
//!
//! The original URL is `x-recording-upstream-base-uri` + path + query when that header is present (the Azure SDK
//! test-proxy convention), else `https://{Host}` + path + query when `Host` names an Azure host. Anything else is
//! addressed to the emulator itself.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::cloud::{Cloud, Service};
use crate::http::Req;
use crate::state::Shared;
use crate::{arm, control, entra, graph, host, keyvault, servicebus};

/// The header that carries the original scheme and host.
pub const UPSTREAM_HEADER: &str = "x-recording-upstream-base-uri";

/// Largest request body the emulator reads (Premium Service Bus messages go up to 100 MB).
const MAX_BODY: usize = 110 * 1024 * 1024;

pub fn app(shared: Arc<Shared>) -> Router {
    Router::new().nest("/_emulator", control::router()).fallback(dispatch).with_state(shared)
}

/// Where a request is going.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Azure(Cloud, Service),
    /// An Azure-looking URL for a host no emulated service knows.
    UnknownHost(String),
    /// The emulator itself (managed identity endpoint, HTTP triggers).
    Local,
}

/// Rebuilds the original URL of a request. Pure, so it can be tested with data.
pub fn original_url(
    upstream: Option<&str>,
    host: Option<&str>,
    path_and_query: &str,
    local_base: &str,
) -> Result<(Url, bool), String> {
    if let Some(base) = upstream {
        let base = base.trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path_and_query}"))
            .map_err(|e| format!("bad {UPSTREAM_HEADER} {base:?}: {e}"))?;
        return Ok((url, false));
    }
    if let Some(host) = host {
        let bare = host.split(':').next().unwrap_or(host);
        if Cloud::service_for_host(bare).is_some() {
            let url = Url::parse(&format!("https://{bare}{path_and_query}")).map_err(|e| e.to_string())?;
            return Ok((url, false));
        }
    }
    let url = Url::parse(&format!("{local_base}{path_and_query}")).map_err(|e| e.to_string())?;
    Ok((url, true))
}

pub fn target_of(url: &Url, local: bool) -> Target {
    if local {
        return Target::Local;
    }
    let host = url.host_str().unwrap_or_default();
    match Cloud::service_for_host(host) {
        Some((cloud, service)) => Target::Azure(cloud, service),
        None => Target::UnknownHost(host.to_owned()),
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let upstream = parts.headers.get(UPSTREAM_HEADER).and_then(|v| v.to_str().ok());
    let host_header = parts.headers.get("host").and_then(|v| v.to_str().ok());
    let (url, local) = match original_url(upstream, host_header, path_and_query, &shared.base_url) {
        Ok(found) => found,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let req = Req { method: parts.method, url, headers: parts.headers, body };
    serve(&shared, req, local).await
}

/// Applies fault rules, serves the request and records it in the request log.
async fn serve(shared: &Arc<Shared>, req: Req, local: bool) -> Response {
    let started = std::time::Instant::now();
    let method = req.method.clone();
    let url = req.url.clone();
    let target = target_of(&req.url, local);
    if let Some(latency) = shared.limits.latency(&req.host()) {
        tokio::time::sleep(latency).await;
    }
    let response = match shared.faults.check(&req, &shared.clock) {
        Some(crate::faults::Fault::Respond(response)) => response,
        Some(crate::faults::Fault::Reset) => crate::faults::reset_response(),
        Some(crate::faults::Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            limited(shared, req, target).await
        }
        None => limited(shared, req, target).await,
    };
    shared.log.record(&shared.clock, &method, &url, response.status(), started.elapsed());
    response
}

/// Counts the request against Azure's documented limits (`limits`): a throttled one is answered with the service's
/// 429, an admitted one is served with the remaining-quota headers added.
async fn limited(shared: &Arc<Shared>, req: Req, target: Target) -> Response {
    let offset = std::time::Duration::try_from(shared.clock.offset()).unwrap_or_default();
    let region_of = |account_id: &str| {
        let key = crate::arm::ids::ResourceId::parse(account_id)?.key();
        let world = shared.world.lock().expect("world lock poisoned");
        world.arm.storage.get(&key).map(|account| account.location.clone())
    };
    let actor = || {
        let token = req.header("authorization")?.strip_prefix("Bearer ")?;
        shared.tokens.verify_signature(token).ok().map(|claims| claims.oid)
    };
    match shared.limits.admit(&req, offset, region_of, actor) {
        crate::limits::Admission::Throttled(response) => response,
        crate::limits::Admission::Admitted(headers) => {
            let mut response = route(shared, req, target).await;
            response.headers_mut().extend(headers);
            response
        }
    }
}

async fn route(shared: &Arc<Shared>, req: Req, target: Target) -> Response {
    match target {
        Target::Azure(_, Service::Arm) => arm::handle(shared, req).await,
        Target::Azure(_, Service::Login) => entra::handle(shared, req).await,
        Target::Azure(_, Service::Graph) => graph::handle(shared, req).await,
        Target::Azure(_, Service::KeyVault { .. }) => keyvault::handle(shared, req).await,
        Target::Azure(_, Service::ServiceBus { namespace }) => servicebus::handle(shared, &namespace, req).await,
        Target::UnknownHost(host) => unknown_host(&host),
        Target::Local => match req.url.path() {
            "/msi/token" => entra::msi(shared, req).await,
            path if path == "/api" || path.starts_with("/api/") => host::http_trigger(shared, req).await,
            _ => (StatusCode::NOT_FOUND, "no such emulator endpoint").into_response(),
        },
    }
}

/// What a client sees for a host that does not exist: DNS would fail, reported as a forward proxy reports it.
fn unknown_host(host: &str) -> Response {
    tracing::warn!(host, "request for a host no emulated service knows; answering as a DNS failure");
    crate::faults::name_not_resolved(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_header_wins() {
        let (url, local) = original_url(
            Some("https://management.azure.com"),
            Some("127.0.0.1:1234"),
            "/subscriptions/s?api-version=1",
            "http://127.0.0.1:1234",
        )
        .unwrap();
        assert_eq!(url.as_str(), "https://management.azure.com/subscriptions/s?api-version=1");
        assert!(!local);
    }

    #[test]
    fn azure_host_header_routes_without_upstream() {
        let (url, local) =
            original_url(None, Some("myvault.vault.azure.net"), "/keys/k", "http://127.0.0.1:1").unwrap();
        assert_eq!(url.host_str(), Some("myvault.vault.azure.net"));
        assert_eq!(
            target_of(&url, local),
            Target::Azure(Cloud::Public, Service::KeyVault { vault: "myvault".into(), managed_hsm: false })
        );
    }

    #[test]
    fn loopback_is_local() {
        let (url, local) =
            original_url(None, Some("127.0.0.1:9"), "/msi/token?resource=x", "http://127.0.0.1:9").unwrap();
        assert!(local);
        assert_eq!(url.path(), "/msi/token");
    }

    #[test]
    fn lookalike_hosts_are_unknown() {
        let url = Url::parse("https://x.vault.azure.net.evil.com/keys/k").unwrap();
        assert_eq!(target_of(&url, false), Target::UnknownHost("x.vault.azure.net.evil.com".into()));
    }
}
