//! Start-up: the handler answers the host's readiness probe (`GET /`) before it does any work the probe does not need.
//!
//! The expensive part of start-up is loading the system trust store for the HTTP clients (the Azure transport's and,
//! when configured, the OTLP exporter's). Here the trust store is a named pipe that nobody writes to: reading it
//! blocks until the test opens the other end. The handler must answer `GET /` while that read is still blocked, and
//! must then read the pipe in the background on its own (the warm-up that spares the first invocation the cost).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous bound for a process start on a loaded 2-core machine; reaching it is a failure, not flakiness.
const BOUND: Duration = Duration::from_secs(20);

struct Handler(Child);

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("startup-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A FIFO as the trust store: opening it for reading blocks until someone opens it for writing.
fn blocking_trust_store(dir: &Path) -> PathBuf {
    let fifo = dir.join("trust-store.pem");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap_or_else(|e| {
        panic!("this test needs `mkfifo` (GNU coreutils, Debian package `coreutils`) on PATH: {e}")
    });
    assert!(status.success(), "mkfifo {} failed: {status}", fifo.display());
    fifo
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Starts the handler with a blocking trust store, asserts it becomes ready, then asserts it reads the trust store.
fn answers_probe_before_loading_the_trust_store(label: &str, extra: &[(&str, &str)]) {
    let dir = scratch(label);
    let fifo = blocking_trust_store(&dir);
    let empty_dir = dir.join("no-certs");
    std::fs::create_dir_all(&empty_dir).expect("empty cert dir");
    let port = free_port();
    let mut env: BTreeMap<String, String> = cmk_testbed::app_settings("http://127.0.0.1:9");
    env.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string());
    env.insert("IDENTITY_ENDPOINT".into(), "http://127.0.0.1:9/msi/token".into());
    env.insert("IDENTITY_HEADER".into(), "startup-test".into());
    env.insert("RUST_LOG".into(), "warn".into());
    // rustls-native-certs (under rustls-platform-verifier) reads exactly these instead of the system locations.
    env.insert("SSL_CERT_FILE".into(), fifo.display().to_string());
    env.insert("SSL_CERT_DIR".into(), empty_dir.display().to_string());
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    let mut handler = Handler(
        Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the handler"),
    );

    let started = Instant::now();
    while !ready(port) {
        if let Ok(Some(status)) = handler.0.try_wait() {
            panic!("the handler exited ({status}) before answering GET /");
        }
        assert!(
            started.elapsed() < BOUND,
            "no answer on GET / within {BOUND:?} while the trust store could not be read: something before listening \
             loads it"
        );
        std::thread::sleep(Duration::from_millis(25));
    }

    // The background warm-up must now open the trust store by itself (no request has been made to Azure).
    let (opened, open_signal) = mpsc::channel();
    let writer_fifo = fifo.clone();
    std::thread::spawn(move || {
        // Blocks until the handler opens the pipe for reading; closing it at once gives the reader end-of-file.
        let _ = opened.send(std::fs::OpenOptions::new().write(true).open(writer_fifo).map(drop));
    });
    match open_signal.recv_timeout(BOUND) {
        Ok(result) => result.expect("open the trust-store pipe for writing"),
        Err(_) => {
            // Unblock our own writer thread before failing.
            let _ = std::fs::File::open(&fifo);
            panic!("the handler never read the trust store after it started listening: no background warm-up");
        }
    }
}

#[test]
fn answers_the_readiness_probe_before_loading_the_trust_store() {
    answers_probe_before_loading_the_trust_store("plain", &[]);
}

#[test]
fn answers_the_readiness_probe_before_loading_the_trust_store_with_otlp_export() {
    // An OTLP exporter builds its own HTTP client; it too must wait until after listening.
    answers_probe_before_loading_the_trust_store("otlp", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")]);
}
