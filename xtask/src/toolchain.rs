//! The toolchain of the package's release build, provisioned without root: the Rust standard library for the target
//! (rustup), and zig as C compiler and linker through cargo-zigbuild, both from PyPI at the versions pinned in
//! `xtask/zig-requirements.txt`, installed into a venv under the target directory on first use.
//!
//! Why zig: the handler links C code (aws-lc, under rustls), and the Functions workers need a static executable or one
//! that needs no glibc newer than 2.28. zig cross-compiles that C for musl (or for an old glibc) from any Linux
//! machine, where Debian's `musl-tools` would need root and works for musl only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned requirements, relative to the repository root.
pub const REQUIREMENTS: &str = "xtask/zig-requirements.txt";

/// A provisioned toolchain: the venv whose `bin/` holds `cargo-zigbuild` and a `python3` that can run zig.
#[derive(Debug, Clone)]
pub struct Toolchain {
    venv: PathBuf,
}

impl Toolchain {
    /// Makes sure the Rust target and the pinned zig tools are installed (installing them when missing).
    pub fn provision(root: &Path, target_dir: &Path, rust_target: &str) -> Result<Self, String> {
        ensure_rust_target(rust_std_target(rust_target))?;
        let venv = target_dir.join("tools").join("zig");
        ensure_venv(&root.join(REQUIREMENTS), &venv)?;
        Ok(Self { venv })
    }

    /// `cargo zigbuild`, with the venv first on `PATH` so that cargo-zigbuild finds zig (`python3 -m ziglang`).
    pub fn cargo_zigbuild(&self) -> Command {
        let bin = self.venv.join("bin");
        let mut path = OsString::from(bin.as_os_str());
        if let Some(existing) = std::env::var_os("PATH") {
            path.push(":");
            path.push(existing);
        }
        let mut command = Command::new(bin.join("cargo-zigbuild"));
        command.arg("zigbuild").env("PATH", path);
        command
    }
}

/// The target whose standard library rustup installs: cargo-zigbuild's `x86_64-unknown-linux-gnu.2.28` names the
/// glibc version after the triple.
pub fn rust_std_target(target: &str) -> &str {
    match target.rsplit_once("-gnu.") {
        Some((prefix, _)) => &target[..prefix.len() + "-gnu".len()],
        None => target,
    }
}

fn ensure_rust_target(target: &str) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = run_capture(Command::new(rustc).args(["--print", "sysroot"]), "rustc --print sysroot")?;
    if Path::new(sysroot.trim()).join("lib/rustlib").join(target).join("lib").is_dir() {
        return Ok(());
    }
    println!("installing the Rust standard library for {target} (rustup target add {target})");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("cannot run rustup ({e}): install the Rust standard library for {target} yourself"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed ({status}); it needs access to the Rust distribution server"))
    }
}

/// Creates (or reuses, while the requirements are unchanged) the venv with the pinned tools.
fn ensure_venv(requirements_file: &Path, venv: &Path) -> Result<(), String> {
    let requirements =
        std::fs::read(requirements_file).map_err(|e| format!("reading {}: {e}", requirements_file.display()))?;
    let marker = venv.join(".requirements.txt");
    if venv.join("bin/cargo-zigbuild").is_file() && std::fs::read(&marker).ok().as_deref() == Some(&requirements[..]) {
        return Ok(());
    }
    println!("installing zig and cargo-zigbuild ({}) into {}", requirements_file.display(), venv.display());
    let install_hint = "install python3 with venv and pip (Debian: python3-venv) and allow access to PyPI";
    let _ = std::fs::remove_dir_all(venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(venv), "python3 -m venv", install_hint)?;
    run(
        Command::new(venv.join("bin/python3"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements_file),
        "pip install -r xtask/zig-requirements.txt",
        install_hint,
    )?;
    std::fs::write(&marker, &requirements).map_err(|e| format!("writing {}: {e}", marker.display()))
}

fn run(command: &mut Command, what: &str, hint: &str) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{what}: cannot run it ({e}); {hint}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}\n{hint}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn run_capture(command: &mut Command, what: &str) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::rust_std_target;

    #[test]
    fn glibc_suffix_is_not_part_of_the_rust_target() {
        assert_eq!(rust_std_target("x86_64-unknown-linux-gnu.2.28"), "x86_64-unknown-linux-gnu");
        assert_eq!(rust_std_target("x86_64-unknown-linux-musl"), "x86_64-unknown-linux-musl");
        assert_eq!(rust_std_target("x86_64-unknown-linux-gnu"), "x86_64-unknown-linux-gnu");
    }
}
