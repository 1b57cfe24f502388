//! The `azure-emulator` executable: starts the emulator on a loopback address, prints one JSON ready line on
//! stdout, logs to stderr, and stops (with the handler process it started) on Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use azure_emulator::host::HostOptions;
use azure_emulator::{Emulator, EmulatorOptions, Scenario};
use clap::Parser;

/// Local testbed emulating the Azure endpoints and the Functions host the CMK handler calls.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Scenario file (JSON) describing the emulated world.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Function app root (host.json, function folders, handler executable): starts the emulated Functions host.
    #[arg(long)]
    app_root: Option<PathBuf>,
    /// A `local.settings.json`-shaped file whose `Values` are the app settings given to the handler.
    #[arg(long)]
    settings: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("azure-emulator: {message}");
    ExitCode::FAILURE
}

async fn run(args: Args) -> Result<(), String> {
    // The emulator accepts any bearer token it minted and hands out tokens freely: never expose it.
    if !args.listen.ip().is_loopback() {
        return Err(format!("refusing to listen on non-loopback address {}", args.listen));
    }
    let scenario = args.scenario.as_deref().map(read_scenario).transpose()?;
    let host = match (&args.app_root, &args.settings) {
        (Some(app_root), settings) => {
            let app_settings = settings.as_deref().map(read_settings).transpose()?.unwrap_or_default();
            Some(HostOptions::new(app_root.clone(), app_settings))
        }
        (None, Some(_)) => return Err("--settings needs --app-root (the settings are for the handler)".to_owned()),
        (None, None) => None,
    };
    let emulator =
        Emulator::start(EmulatorOptions { listen: args.listen, scenario, host }).await.map_err(|e| e.to_string())?;
    let signals = ShutdownSignals::install()?;
    let ready = serde_json::json!({
        "url": emulator.url(),
        "msiEndpoint": format!("{}/msi/token", emulator.url()),
        "identityHeader": emulator.shared().identity_header,
        "pid": std::process::id(),
    });
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{ready}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write the ready line: {e}"))?;
    }
    tracing::info!(url = emulator.url(), "azure-emulator ready");
    signals.wait().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}

fn read_scenario(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid scenario {}: {e}", path.display()))
}

/// The `Values` of a `local.settings.json`; non-string values are turned into their JSON text, as the Functions
/// host's configuration would see them.
fn read_settings(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read settings {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("invalid settings {}: {e}", path.display()))?;
    let values = json
        .get("Values")
        .and_then(|v| v.as_object())
        .ok_or_else(|| format!("{}: no \"Values\" object", path.display()))?;
    Ok(values
        .iter()
        .map(|(key, value)| {
            let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            (key.clone(), text)
        })
        .collect())
}

/// Ctrl-C and SIGTERM, registered before the ready line so that a signal sent right after it is not missed.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let install = |kind| signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"));
            Ok(Self { interrupt: install(SignalKind::interrupt())?, terminate: install(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
