//! The repository's `specs/` folder (the external documents the tests validate against) is exactly what
//! `specs/provenance.json` says: every file listed with its source repository, commit, path and licence, and its bytes
//! unchanged (SHA-256). Nothing in the repository reads a path outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn files_under(dir: &Path, skip_dirs: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !skip_dirs.contains(&name) {
                files_under(&path, skip_dirs, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_spec_file_is_listed_with_its_source_and_unchanged() {
    let specs = repo_root().join("specs");
    let provenance: Value =
        serde_json::from_str(&std::fs::read_to_string(specs.join("provenance.json")).expect("specs/provenance.json"))
            .expect("provenance.json is JSON");
    let entries = provenance["files"].as_array().expect("files[]");
    let mut listed = BTreeSet::new();
    for entry in entries {
        let file = entry["file"].as_str().expect("file");
        for field in ["repository", "commit", "path", "licence", "sha256"] {
            let value = entry[field].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{file}: {field} is missing");
        }
        let commit = entry["commit"].as_str().unwrap();
        assert!(commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "{file}: commit {commit}");
        assert!(entry["repository"].as_str().unwrap().contains('/'), "{file}: repository is owner/name");
        let bytes = std::fs::read(specs.join(file)).unwrap_or_else(|e| panic!("specs/{file}: {e}"));
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, entry["sha256"].as_str().unwrap(), "specs/{file} differs from its source");
        assert!(listed.insert(file.to_owned()), "{file} is listed twice");
    }
    let mut present = Vec::new();
    files_under(&specs, &[], &mut present);
    let present: BTreeSet<String> = present
        .iter()
        .map(|p| p.strip_prefix(&specs).unwrap().to_string_lossy().replace('\\', "/"))
        .filter(|p| p != "provenance.json" && p != "README.md")
        .collect();
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(unlisted.is_empty(), "files in specs/ without provenance: {unlisted:?}");
    let missing: Vec<_> = listed.difference(&present).collect();
    assert!(missing.is_empty(), "provenance lists files that are not in specs/: {missing:?}");
}

/// The tests once read a sibling folder of the repository (`shared/`), which no user has. Code, scripts and build files must not name a path outside
/// the repository; documentation may mention where a copy came from.
#[test]
fn nothing_reads_a_path_outside_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    files_under(&root, &["target", ".git", "node_modules", "dist"], &mut files);
    let needle = ["..", "/shared"].concat();
    let offenders: Vec<String> = files
        .iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let in_venv = p.components().any(|c| c.as_os_str().to_string_lossy().starts_with(".venv"));
            !in_venv && !name.ends_with(".md") && name != "Cargo.lock"
        })
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|text| text.contains(&needle)))
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(offenders.is_empty(), "files that name a path outside the repository: {offenders:?}");
}
