//! `cargo xtask`: repository automation. `cargo xtask package` builds the Functions deployment zip.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::package;

const USAGE: &str = "usage: cargo xtask package [--target <triple>] [--out <dir>]
       cargo xtask demo

  demo      build the handler, then run the whole pipeline on the local testbed with the sample messages

  package   cargo build --release -p handler, then assemble <out>/app/ (host.json, one folder per function,
            the handler executable) and zip it to <out>/functionapp.zip
  --target  Rust target triple of the Functions Linux workers (default x86_64-unknown-linux-gnu)
  --out     output folder (default dist/ at the repository root)";

const DEFAULT_TARGET: &str = "x86_64-unknown-linux-gnu";

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
    let mut parsed = PackageArgs { target: DEFAULT_TARGET.to_string(), out: root.join("dist") };
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "--package", "handler", "--bin", "handler", "--target", &args.target])
        .status()
        .map_err(|e| format!("running {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    // Honour a relocated target directory, as cargo itself does.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target_dir.join(&args.target).join("release").join(package::HANDLER_EXECUTABLE);
    let app_dir = args.out.join("app");
    let zip_path = args.out.join("functionapp.zip");
    let functions = package::assemble_app(root, &binary, &app_dir).map_err(|e| e.to_string())?;
    let entries = package::zip_app(&app_dir, &zip_path).map_err(|e| e.to_string())?;
    println!("functions: {}", functions.join(", "));
    println!("{} ({} entries: {})", zip_path.display(), entries.len(), entries.join(", "));
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
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target_dir.join("debug").join(package::HANDLER_EXECUTABLE);
    let work_dir = target_dir.join("demo");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(xtask::demo::run(root, &binary, &work_dir))
}
