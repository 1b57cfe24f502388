//! The deployment package has the layout the Functions host expects, built from a fake handler binary.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use xtask::package::{self, EXECUTABLE_MODE, HANDLER_EXECUTABLE, PackageError};

const FAKE_BINARY: &[u8] = b"#!/bin/sh\necho fake handler\n";

/// A fresh scratch folder per test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
        let dir = std::env::temp_dir().join(format!("xtask-{label}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// A non-executable fake handler, so the test proves packaging sets the run bit itself.
    fn fake_binary(&self) -> PathBuf {
        let path = self.0.join("fake-handler");
        fs::write(&path, FAKE_BINARY).expect("write fake binary");
        set_mode(&path, 0o644);
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn fixture_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/repo")
}

fn real_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Entry name → unix mode, read back with the zip reader.
fn zip_entries(zip_path: &Path) -> Vec<(String, u32)> {
    let mut archive = zip::ZipArchive::new(fs::File::open(zip_path).expect("open zip")).expect("read zip");
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index(i).expect("zip entry");
            (entry.name().expect("utf-8 name").to_string(), entry.unix_mode().expect("unix mode recorded") & 0o777)
        })
        .collect()
}

fn zip_text(zip_path: &Path, name: &str) -> String {
    let mut archive = zip::ZipArchive::new(fs::File::open(zip_path).expect("open zip")).expect("read zip");
    std::io::read_to_string(archive.by_name(name).expect("entry present")).expect("utf-8 entry")
}

/// What the host needs from a package, checked on the zip itself: host.json at the root naming the handler, one
/// folder per function each with its function.json, and the handler with its run bit.
fn assert_host_layout(zip_path: &Path, expected_functions: &BTreeSet<String>) {
    let entries = zip_entries(zip_path);
    let names: BTreeSet<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    let mut expected: BTreeSet<String> = ["host.json".to_string(), HANDLER_EXECUTABLE.to_string()].into();
    expected.extend(expected_functions.iter().map(|f| format!("{f}/function.json")));
    assert_eq!(names, expected, "zip entries");

    let host: serde_json::Value = serde_json::from_str(&zip_text(zip_path, "host.json")).expect("host.json is JSON");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], HANDLER_EXECUTABLE);

    let handler_mode = entries.iter().find(|(name, _)| name == HANDLER_EXECUTABLE).map(|(_, mode)| *mode);
    assert_eq!(handler_mode, Some(EXECUTABLE_MODE), "handler keeps its run bit in the zip");
    for function in expected_functions {
        let json: serde_json::Value =
            serde_json::from_str(&zip_text(zip_path, &format!("{function}/function.json"))).expect("function.json");
        assert!(json["bindings"].as_array().is_some_and(|b| !b.is_empty()), "{function} has bindings");
    }
}

#[test]
fn fixture_repo_packages_into_the_host_layout() {
    let scratch = Scratch::new("fixture");
    let app_dir = scratch.0.join("dist/app");
    let functions = package::assemble_app(&fixture_repo(), &scratch.fake_binary(), &app_dir).expect("assemble");
    assert_eq!(functions, ["ProcessOnboarding"]);

    assert!(app_dir.join("host.json").is_file());
    assert!(app_dir.join("ProcessOnboarding/function.json").is_file());
    assert_eq!(fs::read(app_dir.join(HANDLER_EXECUTABLE)).expect("handler copied"), FAKE_BINARY);
    assert_eq!(mode_of(&app_dir.join(HANDLER_EXECUTABLE)), EXECUTABLE_MODE);

    let zip_path = scratch.0.join("dist/functionapp.zip");
    package::zip_app(&app_dir, &zip_path).expect("zip");
    assert_host_layout(&zip_path, &["ProcessOnboarding".to_string()].into());
}

#[test]
fn real_repo_packages_every_function_definition() {
    let root = real_repo();
    let expected: BTreeSet<String> = fs::read_dir(root.join(package::FUNCTION_DEFINITIONS_DIR))
        .expect("function-definitions exists")
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(expected.contains("ProcessOnboarding"));

    let scratch = Scratch::new("real");
    let app_dir = scratch.0.join("app");
    package::assemble_app(&root, &scratch.fake_binary(), &app_dir).expect("assemble the real repository");
    let zip_path = scratch.0.join("functionapp.zip");
    package::zip_app(&app_dir, &zip_path).expect("zip");
    assert_host_layout(&zip_path, &expected);
}

#[test]
fn repackaging_drops_stale_function_folders() {
    let scratch = Scratch::new("stale");
    let app_dir = scratch.0.join("app");
    fs::create_dir_all(app_dir.join("OldFunction")).expect("stale folder");
    fs::write(app_dir.join("OldFunction/function.json"), "{}").expect("stale file");
    package::assemble_app(&fixture_repo(), &scratch.fake_binary(), &app_dir).expect("assemble");
    assert!(!app_dir.join("OldFunction").exists());
}

#[test]
fn host_json_naming_another_executable_is_refused() {
    let scratch = Scratch::new("wrong-exe");
    let repo = scratch.0.join("repo");
    fs::create_dir_all(repo.join("function-definitions/ProcessOnboarding")).expect("repo tree");
    fs::write(repo.join("host.json"), r#"{"customHandler":{"description":{"defaultExecutablePath":"server"}}}"#)
        .expect("host.json");
    fs::write(repo.join("function-definitions/ProcessOnboarding/function.json"), r#"{"bindings":[]}"#).expect("fn");
    let err = package::assemble_app(&repo, &scratch.fake_binary(), &scratch.0.join("app")).expect_err("must refuse");
    assert!(matches!(err, PackageError::WrongExecutablePath(ref found) if found == "\"server\""), "{err}");
}

#[test]
fn function_folder_without_function_json_is_refused() {
    let scratch = Scratch::new("no-fn-json");
    let repo = scratch.0.join("repo");
    fs::create_dir_all(repo.join("function-definitions/ProcessOnboarding")).expect("repo tree");
    fs::copy(fixture_repo().join("host.json"), repo.join("host.json")).expect("host.json");
    let err = package::assemble_app(&repo, &scratch.fake_binary(), &scratch.0.join("app")).expect_err("must refuse");
    assert!(matches!(err, PackageError::MissingFunctionJson(_)), "{err}");
}
