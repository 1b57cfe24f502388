//! `cargo xtask`: repository automation. `cargo xtask package` builds the Functions deployment zip.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::{package, release};

const USAGE: &str = "usage: cargo xtask package [--target <triple>] [--out <dir>]
       cargo xtask demo

  demo      build the handler, then run the whole pipeline on the local testbed with the sample messages

  package   release build of the handler for the Functions Linux workers (a static executable by default), then
            assemble <out>/app/ (host.json, one folder per function, the handler executable), zip it to
            <out>/functionapp.zip and check the executable runs there (static, or glibc 2.28 at most).
            Installs what it needs on first use: the Rust target (rustup) and the zig toolchain pinned in
            xtask/zig-requirements.txt (PyPI, into a venv under target/tools/zig; needs python3 with venv and pip)
  --target  x86_64-unknown-linux-musl (default: static) or x86_64-unknown-linux-gnu.2.28 (glibc 2.28 and newer)
  --out     output folder (default dist/ at the repository root)";

#[derive(Debug)]
struct PackageArgs {
    target: String,
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    let result = match args.first().map(String::as_str) {
        Some("package") => parse_package_args(&args[1..], &root).and_then(|parsed| run_package(&root, &parsed)),
        Some("demo") => run_demo(&root),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the repository root").into()
}

fn parse_package_args(args: &[String], root: &Path) -> Result<PackageArgs, String> {
    let mut parsed = PackageArgs { target: release::DEFAULT_TARGET.to_string(), out: root.join("dist") };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().cloned().ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"));
        match flag.as_str() {
            "--target" => parsed.target = value()?,
            "--out" => parsed.out = root.join(value()?),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    Ok(parsed)
}

fn run_package(root: &Path, args: &PackageArgs) -> Result<(), String> {
    let built = release::build_package(root, &args.target, &args.out)?;
    println!("functions: {}", built.functions.join(", "));
    println!("handler: {}, {:.1} MiB", built.linkage, built.executable_bytes as f64 / f64::from(1 << 20));
    println!("{} ({} entries: {})", built.zip.display(), built.entries.len(), built.entries.join(", "));
    Ok(())
}

fn run_demo(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--package", "handler", "--bin", "handler"])
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let target_dir = release::target_dir(root);
    let binary = target_dir.join("debug").join(package::HANDLER_EXECUTABLE);
    let work_dir = target_dir.join("demo");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(xtask::demo::run(root, &binary, &work_dir))
}
