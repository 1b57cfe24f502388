//! `cargo xtask package` end to end: provision the pinned toolchain, build the handler for the Functions Linux
//! workers, assemble and zip the app, and check that the executable can run there.

use std::path::{Path, PathBuf};

use crate::elf::{self, Linkage};
use crate::package;
use crate::toolchain::{self, Toolchain};

/// A static executable: it runs on any worker image, whatever its glibc.
pub const DEFAULT_TARGET: &str = "x86_64-unknown-linux-musl";

/// What `cargo xtask package` produced.
#[derive(Debug, Clone)]
pub struct Package {
    pub zip: PathBuf,
    pub app_dir: PathBuf,
    pub functions: Vec<String>,
    pub entries: Vec<String>,
    pub linkage: Linkage,
    /// Size of the (stripped) handler executable, in bytes.
    pub executable_bytes: u64,
}

/// The target directory cargo uses for this repository (honours `CARGO_TARGET_DIR`, as cargo does).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

/// Builds `<out>/app/` and `<out>/functionapp.zip` for `target` (a Rust triple, or cargo-zigbuild's
/// `x86_64-unknown-linux-gnu.2.28`). The release build is incremental: a fresh one is reused.
pub fn build_package(root: &Path, target: &str, out: &Path) -> Result<Package, String> {
    let target_dir = target_dir(root);
    let toolchain = Toolchain::provision(root, &target_dir, target)?;
    let status = toolchain
        .cargo_zigbuild()
        .current_dir(root)
        .args(["--release", "--package", "handler", "--bin", "handler", "--target", target])
        .status()
        .map_err(|e| format!("running cargo-zigbuild: {e}"))?;
    if !status.success() {
        return Err(format!("cargo zigbuild --release --target {target} failed ({status})"));
    }
    let binary = target_dir.join(toolchain::rust_std_target(target)).join("release").join(package::HANDLER_EXECUTABLE);
    let bytes = std::fs::read(&binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
    let linkage = elf::inspect(&bytes).map_err(|e| format!("{}: {e}", binary.display()))?;
    elf::check_runs_on_workers(&linkage).map_err(|e| format!("{}: {e}", binary.display()))?;

    let app_dir = out.join("app");
    let zip = out.join("functionapp.zip");
    let functions = package::assemble_app(root, &binary, &app_dir).map_err(|e| e.to_string())?;
    let entries = package::zip_app(&app_dir, &zip).map_err(|e| e.to_string())?;
    Ok(Package { zip, app_dir, functions, entries, linkage, executable_bytes: bytes.len() as u64 })
}
