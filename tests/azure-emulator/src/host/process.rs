//! The custom-handler process: start it the way the host does, wait until it answers `GET /`, forward its output,
//! and apply the host's restart policy (reference §3.3, §4.2, §8.1).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// `ErrorEventsThreshold`: the third error inside the window shuts the host down.
const ERROR_EVENTS_THRESHOLD: usize = 3;
/// `WorkerRestartErrorIntervalThresholdInMinutes`.
const ERROR_WINDOW: Duration = Duration::from_secs(30 * 60);
/// `IntentionalRestartExitCode`.
const INTENTIONAL_RESTART_EXIT_CODE: i32 = 200;
/// `WorkerReadyCheckPollingIntervalMilliseconds`.
const READY_POLL: Duration = Duration::from_millis(25);

/// How to start the handler.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub program: PathBuf,
    pub arguments: Vec<String>,
    pub working_directory: PathBuf,
    /// Added on top of the inherited environment.
    pub environment: Vec<(String, String)>,
    /// `customHandler.port`; otherwise a free port per start.
    pub fixed_port: Option<u16>,
    pub init_timeout: Duration,
    /// What the platform does when the host shuts down (reference §3.3: "In Azure the platform then restarts the
    /// host"): start it again, or leave it down (the emulator's default, so tests can see the shutdown).
    pub platform_restarts_host: bool,
}

/// Where the handler process is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Ready {
        port: u16,
        pid: u32,
    },
    /// Exit code 0: the host does not restart it; invocations fail until the host restarts.
    Exited,
    /// The restart policy gave up ("Shutting down Functions Host").
    ShutDown(String),
    Stopped,
}

impl WorkerState {
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready { .. } => "ready",
            WorkerState::Exited => "exited",
            WorkerState::ShutDown(_) => "shutdown",
            WorkerState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
enum WorkerCommand {
    /// SIGKILL, counted as a crash.
    Kill,
    /// Kill and start again without counting an error (function timeout).
    Restart,
    Stop,
}

#[derive(Debug, Default)]
struct Stats {
    restarts: u32,
    /// Host shutdowns the platform recovered from (`WorkerSpec::platform_restarts_host`).
    host_restarts: u32,
    last_error: Option<String>,
}

/// A supervised handler process.
#[derive(Debug)]
pub struct Worker {
    state: watch::Sender<WorkerState>,
    commands: mpsc::UnboundedSender<WorkerCommand>,
    stats: Mutex<Stats>,
    output: Mutex<Vec<String>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Worker {
    pub fn start(spec: WorkerSpec) -> Arc<Worker> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let worker = Arc::new(Worker {
            state: watch::Sender::new(WorkerState::Starting),
            commands,
            stats: Mutex::default(),
            output: Mutex::default(),
            task: Mutex::default(),
        });
        let task = tokio::spawn(supervise(worker.clone(), spec, receiver));
        *worker.task.lock().expect("worker lock") = Some(task);
        worker
    }

    pub fn state(&self) -> WorkerState {
        self.state.borrow().clone()
    }

    pub fn restarts(&self) -> u32 {
        self.stats.lock().expect("worker lock").restarts
    }

    pub fn host_restarts(&self) -> u32 {
        self.stats.lock().expect("worker lock").host_restarts
    }

    pub fn last_error(&self) -> Option<String> {
        self.stats.lock().expect("worker lock").last_error.clone()
    }

    /// Every line the handler wrote to stdout or stderr, across restarts.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("worker lock").clone()
    }

    /// New invocations are held from now on, not sent to the dying process.
    pub fn kill(&self) {
        self.hold_invocations();
        let _ = self.commands.send(WorkerCommand::Kill);
    }

    pub fn restart(&self) {
        self.hold_invocations();
        let _ = self.commands.send(WorkerCommand::Restart);
    }

    fn hold_invocations(&self) {
        self.state.send_if_modified(|state| {
            let ready = matches!(state, WorkerState::Ready { .. });
            if ready {
                *state = WorkerState::Starting;
            }
            ready
        });
    }

    /// Asks the supervisor to end the process, without waiting (for `Drop`).
    pub fn request_stop(&self) {
        let _ = self.commands.send(WorkerCommand::Stop);
    }

    /// Ends the process and waits for the supervisor to finish.
    pub async fn stop(&self) {
        let _ = self.commands.send(WorkerCommand::Stop);
        let task = self.task.lock().expect("worker lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Holds the caller while the handler (re)starts, like `DelayUntilFunctionDispatcherInitializedOrShutdown`.
    pub async fn wait_ready(&self, hold: Duration) -> Result<u16, String> {
        let mut receiver = self.state.subscribe();
        let waited = tokio::time::timeout(hold, async {
            loop {
                let state = receiver.borrow_and_update().clone();
                match state {
                    WorkerState::Ready { port, .. } => return Ok(port),
                    WorkerState::Exited => return Err("the handler exited with code 0 and is not restarted".to_owned()),
                    WorkerState::ShutDown(reason) => return Err(format!("the host shut down: {reason}")),
                    WorkerState::Stopped => return Err("the host is stopped".to_owned()),
                    WorkerState::Starting => {}
                }
                if receiver.changed().await.is_err() {
                    return Err("the host is stopped".to_owned());
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(format!("the handler was not ready within {hold:?}")))
    }

    fn set_state(&self, state: WorkerState) {
        self.state.send_replace(state);
    }

    fn push_line(&self, line: String) {
        self.output.lock().expect("worker lock").push(line);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            // Dropping the supervisor drops the `Child`, which is `kill_on_drop`.
            task.abort();
        }
    }
}

enum Event {
    InitTimeout,
    SpawnFailed(String),
    Exited(std::io::Result<ExitStatus>),
    Command(Option<WorkerCommand>),
}

async fn supervise(worker: Arc<Worker>, spec: WorkerSpec, mut commands: mpsc::UnboundedReceiver<WorkerCommand>) {
    let mut errors: Vec<Instant> = Vec::new();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("http client");
    loop {
        worker.set_state(WorkerState::Starting);
        let port = spec.fixed_port.unwrap_or_else(free_port);
        let (mut child, event) = match spawn(&worker, &spec, port) {
            Err(message) => (None, Event::SpawnFailed(message)),
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                tracing::info!(pid, port, "custom handler started; waiting for GET / to answer");
                let event = tokio::select! {
                    ready = poll_ready(&client, port, spec.init_timeout) => {
                        if ready {
                            worker.set_state(WorkerState::Ready { port, pid });
                            tokio::select! {
                                status = child.wait() => Event::Exited(status),
                                command = commands.recv() => Event::Command(command),
                            }
                        } else {
                            Event::InitTimeout
                        }
                    }
                    status = child.wait() => Event::Exited(status),
                    command = commands.recv() => Event::Command(command),
                };
                (Some(child), event)
            }
        };
        let error = match event {
            Event::SpawnFailed(message) => message,
            Event::InitTimeout => {
                end(&mut child).await;
                format!("Initializing HttpWorker timed out after {:?}", spec.init_timeout)
            }
            Event::Command(Some(WorkerCommand::Restart)) => {
                end(&mut child).await;
                tracing::warn!("restarting the custom handler (function timeout)");
                worker.stats.lock().expect("worker lock").restarts += 1;
                continue;
            }
            Event::Command(Some(WorkerCommand::Kill)) => {
                let status = match child.as_mut() {
                    Some(child) => {
                        let _ = child.start_kill();
                        child.wait().await.map(describe).unwrap_or_else(|e| e.to_string())
                    }
                    None => "not running".to_owned(),
                };
                format!("Language Worker Process exited (killed): {status}")
            }
            Event::Command(Some(WorkerCommand::Stop) | None) => {
                end(&mut child).await;
                worker.set_state(WorkerState::Stopped);
                return;
            }
            Event::Exited(Ok(status)) if status.code() == Some(0) => {
                tracing::warn!("the custom handler exited with code 0; the host does not restart it");
                worker.set_state(WorkerState::Exited);
                // Wait for stop; nothing restarts an exit-0 handler.
                while let Some(command) = commands.recv().await {
                    if matches!(command, WorkerCommand::Stop) {
                        break;
                    }
                }
                worker.set_state(WorkerState::Stopped);
                return;
            }
            Event::Exited(Ok(status)) if status.code() == Some(INTENTIONAL_RESTART_EXIT_CODE) => {
                tracing::info!("the custom handler asked for a restart (exit code 200)");
                worker.stats.lock().expect("worker lock").restarts += 1;
                continue;
            }
            Event::Exited(Ok(status)) => format!("Language Worker Process exited: {}", describe(status)),
            Event::Exited(Err(e)) => format!("waiting for the handler failed: {e}"),
        };
        tracing::error!(error, "custom handler error event");
        let now = Instant::now();
        if errors.last().is_some_and(|last| now.duration_since(*last) > ERROR_WINDOW) {
            errors.clear();
        }
        errors.push(now);
        worker.stats.lock().expect("worker lock").last_error = Some(error.clone());
        if errors.len() >= ERROR_EVENTS_THRESHOLD {
            let reason =
                format!("Exceeded http worker restart retry count. Shutting down Functions Host (last: {error})");
            tracing::error!("{reason}");
            if !spec.platform_restarts_host {
                worker.set_state(WorkerState::ShutDown(reason));
                return;
            }
            // A new host starts with no error history. Invocations stay held (state `Starting`) meanwhile, as they
            // would wait for the new host's listeners.
            tracing::warn!("the platform restarts the Functions host");
            errors.clear();
            worker.stats.lock().expect("worker lock").host_restarts += 1;
        }
        worker.stats.lock().expect("worker lock").restarts += 1;
    }
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

async fn end(child: &mut Option<Child>) {
    if let Some(child) = child.as_mut() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn spawn(worker: &Arc<Worker>, spec: &WorkerSpec, port: u16) -> Result<Child, String> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.arguments)
        .current_dir(&spec.working_directory)
        .envs(spec.environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let worker_id = uuid::Uuid::new_v4().to_string();
    command.env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id).env("FUNCTIONS_HTTPWORKER_ID", &worker_id);
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward(worker.clone(), stdout, false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward(worker.clone(), stderr, true));
    }
    Ok(child)
}

/// stdout lines are Information "console" logs; for custom handlers stderr lines are errors.
async fn forward(worker: Arc<Worker>, stream: impl AsyncRead + Unpin, stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if stderr {
            tracing::error!(target: "azure_emulator::host::handler", "{line}");
        } else {
            tracing::info!(target: "azure_emulator::host::handler", "{line}");
        }
        worker.push_line(line);
    }
}

/// Any HTTP answer to `GET /` means ready; only a failed connection means "keep waiting".
async fn poll_ready(client: &reqwest::Client, port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let url = format!("http://127.0.0.1:{port}/");
    loop {
        if client.get(&url).send().await.is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}
