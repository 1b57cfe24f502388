//! Local testbed: Azure endpoints and the Functions host, emulated on one loopback port.
//!
//! One process serves everything the handler talks to. Requests are routed by the *original* Azure URL, carried in
//! the `x-recording-upstream-base-uri` header (the Azure SDK test-proxy convention) or, failing that, by the `Host`
//! header. Requests addressed to the emulator itself reach the control surface (`/_emulator/*`), the App Service
//! managed-identity endpoint (`/msi/token`) and HTTP-triggered functions (`/api/*`).

pub mod arm;
pub mod clock;
pub mod cloud;
pub mod control;
pub mod entra;
pub mod faults;
pub mod graph;
pub mod host;
pub mod http;
pub mod keyvault;
pub mod limits;
pub mod openapi;
pub mod propagation;
pub mod rbac;
pub mod reqlog;
pub mod router;
pub mod scenario;
pub mod servicebus;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

pub use scenario::Scenario;
pub use state::Shared;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    pub scenario: Option<Scenario>,
    /// When set, the emulated Functions host starts the handler from this app root.
    pub host: Option<host::HostOptions>,
}

/// A running emulator. Dropping it stops the server and the handler process it started.
#[derive(Debug)]
pub struct Emulator {
    url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    host: Option<host::HostHandle>,
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("functions host: {0}")]
    Host(#[from] host::HostError),
}

impl Emulator {
    pub async fn start(options: EmulatorOptions) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| StartError::Listen { addr: options.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: options.listen, source })?;
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(url.clone()));
        if let Some(scenario) = &options.scenario {
            shared.load(scenario).map_err(StartError::Scenario)?;
        }
        let app = router::app(shared.clone());
        let server = tokio::spawn(async move {
            // Serving ends only when the task is aborted (on drop or shutdown).
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        let host = match options.host {
            Some(host_options) => Some(host::start(shared.clone(), host_options).await?),
            None => None,
        };
        Ok(Self { url, shared, server, host })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn host(&self) -> Option<&host::HostHandle> {
        self.host.as_ref()
    }

    /// Stops the handler process (if any) and the server.
    pub async fn shutdown(mut self) {
        if let Some(host) = self.host.take() {
            host.stop().await;
        }
        self.server.abort();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}
