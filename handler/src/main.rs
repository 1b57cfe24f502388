//! The `handler` executable that the Functions host starts: read settings, start telemetry, serve the host.
//!
//! Nothing runs before the port is bound that the host's readiness probe does not need (cold start); the HTTP
//! client to Azure is built in the background right after.

use std::process::ExitCode;
use std::sync::Arc;

use cmk_handler::config::{LogFormat, Settings};
use cmk_handler::{function, telemetry, workflow};

#[tokio::main]
async fn main() -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    let settings = match Settings::from_lookup(lookup) {
        Ok(settings) => settings,
        Err(error) => {
            // stderr: the host logs it as an error. A non-zero exit makes the host retry, then stop.
            eprintln!("handler: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(settings.log_format == LogFormat::Json, telemetry::otlp_configured(&lookup));
    if let Some(proxy) = &settings.test_proxy_url {
        tracing::warn!(%proxy, "CMK_TEST_PROXY_URL is set: every Azure request goes to this local emulator");
    }
    let port = settings.port;
    let app = match workflow::App::new(settings) {
        Ok(app) => Arc::new(app),
        Err(error) => {
            eprintln!("handler: cannot start: {error}");
            return ExitCode::from(2);
        }
    };
    // The host connects to the IPv4 loopback only (reference functions-custom-handler.md §4.2).
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("handler: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::from(2);
        }
    };
    // Only now the work the readiness probe does not need: the HTTP client loads the system trust store. An
    // invocation that arrives before it is done waits for this same build.
    let warming = Arc::clone(&app);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match warming.clients.warm_up().await {
            Ok(()) => tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "HTTP client ready"),
            Err(error) => {
                tracing::error!(%error, "the HTTP client could not be built; invocations will fail until it can");
            }
        }
    });
    tracing::info!(port, "handler ready");
    let served = axum::serve(listener, function::server::router(app)).with_graceful_shutdown(shutdown_signal()).await;
    telemetry.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handler: server error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM (what the platform sends before recycling the worker).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
