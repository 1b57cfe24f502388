//! Chromium and ChromeDriver from Debian's packages for the console's browser test: the system's
//! (`apt-get install chromium chromium-driver`, which `.ci/run` does), or, without root, the same packages fetched
//! with `apt-get download` and unpacked with `dpkg-deb -x` under `target/browser/` together with the dependencies
//! `apt-get install --simulate` says the machine lacks. If neither works the test fails with the command to run; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const INSTALL: &str = "apt-get install -y chromium chromium-driver";
const PACKAGES: &[&str] = &["chromium", "chromium-common", "chromium-driver"];

/// The browser binary, its driver, and the environment the driver needs.
#[derive(Debug, Clone)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub env: Vec<(String, String)>,
}

pub fn provision() -> Browser {
    if let (Ok(chromium), Ok(driver)) = (std::env::var("CMKCTL_CHROMIUM"), std::env::var("CMKCTL_CHROMEDRIVER")) {
        return Browser { chromium: chromium.into(), chromedriver: driver.into(), env: Vec::new() };
    }
    let system = (Path::new("/usr/bin/chromium"), Path::new("/usr/bin/chromedriver"));
    if system.0.exists() && system.1.exists() && std::env::var_os("CMKCTL_PROVISION_BROWSER").is_none() {
        return Browser { chromium: system.0.into(), chromedriver: system.1.into(), env: Vec::new() };
    }
    let root = target_dir().join("browser");
    if let Some(browser) = unpacked(&root) {
        return browser;
    }
    if let Err(why) = download(&root) {
        panic!("{}", failure(&why));
    }
    unpacked(&root).unwrap_or_else(|| panic!("{}", failure("the unpacked packages have no chromium or chromedriver")))
}

fn failure(why: &str) -> String {
    format!(
        "the console's browser test needs Chromium and ChromeDriver from Debian's packages, and could not provision \
         them without root ({why}). Install them: `{INSTALL}` (as root; .ci/run does), or point CMKCTL_CHROMIUM and \
         CMKCTL_CHROMEDRIVER at a Chromium and its driver."
    )
}

/// `target/` of this workspace (the test binary lives in `target/debug/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"))
}

/// The browser unpacked under `root`, if it is there.
fn unpacked(root: &Path) -> Option<Browser> {
    let files = root.join("files");
    let chromium = files.join("usr/lib/chromium/chromium");
    // Debian's chromium-driver has moved between the two (bookworm's current one ships `usr/bin/chromedriver`).
    let chromedriver =
        ["usr/bin/chromedriver", "usr/lib/chromium/chromedriver"].iter().map(|p| files.join(p)).find(|p| p.exists())?;
    if !chromium.exists() {
        return None;
    }
    // Every unpacked folder that holds a shared library (packages keep some in subfolders, e.g. libpulse0's
    // `usr/lib/x86_64-linux-gnu/pulseaudio`).
    let mut folders = Vec::new();
    for top in ["usr/lib", "lib"] {
        library_folders(&files.join(top), 4, &mut folders);
    }
    let libraries = folders
        .iter()
        .map(|dir| dir.display().to_string())
        .chain(std::env::var("LD_LIBRARY_PATH").ok())
        .collect::<Vec<_>>()
        .join(":");
    Some(Browser { chromium, chromedriver, env: vec![("LD_LIBRARY_PATH".into(), libraries)] })
}

/// Adds `dir` and its subfolders (down to `depth` levels) that contain a `*.so*` file to `out`.
fn library_folders(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut has_library = false;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            library_folders(&path, depth - 1, out);
        } else if entry.file_name().to_string_lossy().contains(".so") {
            has_library = true;
        }
    }
    if has_library {
        out.push(dir.to_owned());
    }
}

/// Downloads the packages and the dependencies this machine lacks, and unpacks them under `root/files`.
fn download(root: &Path) -> Result<(), String> {
    let debs = root.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    // What apt would install (alternatives resolved, installed packages left out); a simulation needs no root.
    let simulated = run(Command::new("apt-get")
        .args(["install", "--simulate", "--no-install-recommends", "-o", "Debug::NoLocking=1"])
        .args(PACKAGES))?;
    let mut wanted: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    for name in simulated.lines().filter_map(|l| l.strip_prefix("Inst ")).filter_map(|l| l.split_whitespace().next()) {
        if !wanted.iter().any(|w| w == name) {
            wanted.push(name.to_owned());
        }
    }
    // Each package on its own: a virtual or unavailable name must not stop the rest.
    for name in &wanted {
        let fetched = run(Command::new("apt-get").arg("download").arg(name).current_dir(&debs));
        if let Err(error) = fetched
            && PACKAGES.contains(&name.as_str())
        {
            return Err(format!("apt-get download {name}: {error}"));
        }
    }
    let files = root.join("files");
    for deb in std::fs::read_dir(&debs).map_err(|e| e.to_string())?.flatten() {
        run(Command::new("dpkg-deb").arg("-x").arg(deb.path()).arg(&files))?;
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
