//! The real deployment package, as `cargo xtask package` builds it: the executable in the zip can run on the Functions
//! Linux workers (static, or glibc 2.28 at most), keeps its run bit, stays within the size budget, and — unpacked
//! from the zip and started by the emulated Functions host from the package's own `host.json` — answers `GET /` and
//! completes an onboarding.
//!
//! This test builds the package (a release build; cargo reuses a fresh one) and provisions the toolchain it needs
//! (the Rust target through rustup, zig through PyPI into `target/tools/zig`). When it cannot, it fails with what to
//! install; it never skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use azure_emulator::host::HostOptions;
use azure_emulator::servicebus::NewMessage;
use azure_emulator::{Emulator, EmulatorOptions};
use xtask::elf::{self, Linkage};
use xtask::package::{EXECUTABLE_MODE, HANDLER_EXECUTABLE};
use xtask::release;

/// The budget for the stripped executable (it was 9.6 MiB when the budget was set).
const MAX_EXECUTABLE_BYTES: u64 = 10 * 1024 * 1024;
const WAIT: Duration = Duration::from_secs(90);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Unpacks the zip as the platform does, with each entry's unix mode; returns (name, mode, size) per entry.
fn unpack(zip_path: &Path, into: &Path) -> Vec<(String, u32, u64)> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(into);
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).expect("open zip")).expect("read zip");
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("zip entry");
        let name = entry.name().expect("utf-8 name").into_owned();
        let mode = entry.unix_mode().expect("unix mode recorded") & 0o777;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("inflate entry");
        let path = into.join(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
        std::fs::write(&path, &bytes).expect("write entry");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        entries.push((name, mode, bytes.len() as u64));
    }
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_handler_runs_on_the_workers_and_starts_from_the_zip() {
    let root = repo_root();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
    let built = tokio::task::spawn_blocking({
        let (root, out) = (root.clone(), out.clone());
        move || release::build_package(&root, release::DEFAULT_TARGET, &out)
    })
    .await
    .expect("build task")
    .unwrap_or_else(|e| panic!("cargo xtask package failed: {e}"));

    // The zip, unpacked as the platform unpacks it.
    let app_dir = out.join("unpacked");
    let entries = unpack(&built.zip, &app_dir);
    let (_, mode, size) = entries.iter().find(|(name, _, _)| name == HANDLER_EXECUTABLE).expect("handler in the zip");
    assert_eq!(*mode, EXECUTABLE_MODE, "the handler keeps its run bit in the zip");
    assert!(*size <= MAX_EXECUTABLE_BYTES, "handler is {size} bytes, over the budget of {MAX_EXECUTABLE_BYTES}");

    // Runs on the workers: the default target gives a static executable.
    let executable = std::fs::read(app_dir.join(HANDLER_EXECUTABLE)).expect("read the unpacked handler");
    let linkage = elf::inspect(&executable).expect("the handler is an x86-64 ELF executable");
    elf::check_runs_on_workers(&linkage).expect("runs on the Functions Linux workers");
    assert_eq!(linkage, Linkage::Static, "the default target ({}) builds a static executable", release::DEFAULT_TARGET);

    // Started by the emulated host from the unpacked package: host.json's defaultExecutablePath, working directory and
    // arguments, FUNCTIONS_CUSTOMHANDLER_PORT and the managed-identity variables; the host polls GET / until ready.
    let emulator = Emulator::start(EmulatorOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        scenario: Some(cmk_testbed::sample_scenario()),
        host: None,
    })
    .await
    .expect("emulator starts");
    let settings = cmk_testbed::app_settings(emulator.url());
    let host = azure_emulator::host::start(emulator.shared().clone(), HostOptions::new(&app_dir, settings))
        .await
        .unwrap_or_else(|e| panic!("the emulated host could not start the packaged handler: {e}"));
    let status = host.status();
    let status_text = status.to_string();
    let port = status["port"].as_u64().expect("handler port") as u16;
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/")).await.expect("GET /");
    assert_eq!(ready.status(), 200, "{status_text}");
    let body: serde_json::Value = ready.json().await.expect("GET / answers JSON");
    assert!(body.is_object(), "GET / answers a JSON object: {body}");

    // And it does its job: one onboarding through the whole pipeline.
    let mut message = NewMessage::new(cmk_testbed::contoso("obd-package-1"));
    message.message_id = Some("msg-package-1".into());
    message.content_type = Some("application/json".into());
    message.session_id = cmk_testbed::session_of(&message.body);
    emulator.shared().bus.send(cmk_testbed::NAMESPACE, cmk_testbed::QUEUE, message).expect("enqueue");
    let started = Instant::now();
    loop {
        let events = emulator.shared().bus.peek(cmk_testbed::NAMESPACE, cmk_testbed::ALL_EVENTS, 0, 100).expect("peek");
        let types: Vec<String> = events
            .iter()
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).ok())
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        if types.iter().any(|t| t.ends_with(".completed.v1")) {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no completed event from the packaged handler; events {types:?}\nhandler output:\n{}",
            host.handler_output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    host.stop().await;
}
