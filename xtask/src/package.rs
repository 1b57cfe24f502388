//! The Functions deployment package: the folder layout the host expects, and its zip.
//!
//! Layout (reference `functions-custom-handler.md` §4–§5): `host.json` at the root, one folder per function holding
//! its `function.json`, and the custom-handler executable named by `customHandler.description.defaultExecutablePath`.
//! The executable bit must survive the zip, or the Linux worker cannot start the handler.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

/// Name of the handler executable inside the package; `host.json` must name it as `defaultExecutablePath`.
pub const HANDLER_EXECUTABLE: &str = "handler";
/// Folder (under the repository root) with one sub-folder per function.
pub const FUNCTION_DEFINITIONS_DIR: &str = "function-definitions";
/// Unix mode given to the handler in the folder and in the zip.
pub const EXECUTABLE_MODE: u32 = 0o755;
const DATA_FILE_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{path} is not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error(
        "host.json must set customHandler.description.defaultExecutablePath to \"{HANDLER_EXECUTABLE}\", found {0}"
    )]
    WrongExecutablePath(String),
    #[error("function folder {0} has no function.json")]
    MissingFunctionJson(PathBuf),
    #[error("no function folders under {0}")]
    NoFunctions(PathBuf),
    #[error(
        "invalid function name {0:?}: the host accepts ^[a-z][a-z0-9_-]{{0,127}}$ (case-insensitive), not \"host\""
    )]
    InvalidFunctionName(String),
    #[error("writing zip {path}: {source}")]
    Zip { path: PathBuf, source: zip::result::ZipError },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PackageError {
    let path = path.to_path_buf();
    move |source| PackageError::Io { action, path, source }
}

/// Builds `app_dir` from the repository's `host.json`, `function-definitions/*/function.json` and the handler binary.
/// Any previous content of `app_dir` is removed so a stale function folder cannot ship. Returns the function names.
pub fn assemble_app(repo_root: &Path, handler_binary: &Path, app_dir: &Path) -> Result<Vec<String>, PackageError> {
    let host_json = repo_root.join("host.json");
    check_host_json(&host_json)?;
    let functions = function_folders(&repo_root.join(FUNCTION_DEFINITIONS_DIR))?;

    if app_dir.exists() {
        fs::remove_dir_all(app_dir).map_err(io_err("removing", app_dir))?;
    }
    fs::create_dir_all(app_dir).map_err(io_err("creating", app_dir))?;
    copy_with_mode(&host_json, &app_dir.join("host.json"), DATA_FILE_MODE)?;
    let mut names = Vec::with_capacity(functions.len());
    for (name, function_json) in functions {
        let dir = app_dir.join(&name);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        copy_with_mode(&function_json, &dir.join("function.json"), DATA_FILE_MODE)?;
        names.push(name);
    }
    copy_with_mode(handler_binary, &app_dir.join(HANDLER_EXECUTABLE), EXECUTABLE_MODE)?;
    Ok(names)
}

/// Zips every file under `app_dir` (paths relative to it, `/`-separated, sorted) keeping each file's unix mode.
/// Returns the entry names.
pub fn zip_app(app_dir: &Path, zip_path: &Path) -> Result<Vec<String>, PackageError> {
    let mut files = Vec::new();
    collect_files(app_dir, app_dir, &mut files)?;
    files.sort();
    if let Some(parent) = zip_path.parent() {
        fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    let out = fs::File::create(zip_path).map_err(io_err("creating", zip_path))?;
    let mut writer = zip::ZipWriter::new(out);
    let zip_err = |source| PackageError::Zip { path: zip_path.to_path_buf(), source };
    for relative in &files {
        let path = app_dir.join(relative);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(unix_mode(&path)?);
        writer.start_file(relative.as_str(), options).map_err(zip_err)?;
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        writer.write_all(&bytes).map_err(io_err("writing", zip_path))?;
    }
    writer.finish().map_err(zip_err)?;
    Ok(files)
}

fn check_host_json(path: &Path) -> Result<(), PackageError> {
    let text = fs::read_to_string(path).map_err(io_err("reading", path))?;
    let host: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| PackageError::Json { path: path.to_path_buf(), source })?;
    let executable = &host["customHandler"]["description"]["defaultExecutablePath"];
    if executable.as_str() != Some(HANDLER_EXECUTABLE) {
        return Err(PackageError::WrongExecutablePath(executable.to_string()));
    }
    Ok(())
}

/// `(function name, path of its function.json)` for each sub-folder, sorted by name.
fn function_folders(definitions: &Path) -> Result<Vec<(String, PathBuf)>, PackageError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(definitions).map_err(io_err("listing", definitions))? {
        let entry = entry.map_err(io_err("listing", definitions))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_valid_function_name(&name) {
            return Err(PackageError::InvalidFunctionName(name));
        }
        let function_json = path.join("function.json");
        if !function_json.is_file() {
            return Err(PackageError::MissingFunctionJson(path));
        }
        found.push((name, function_json));
    }
    if found.is_empty() {
        return Err(PackageError::NoFunctions(definitions.to_path_buf()));
    }
    found.sort();
    Ok(found)
}

/// The host's `Utility.FunctionNameValidationRegex`, without pulling in a regex engine.
fn is_valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.eq_ignore_ascii_case("host")
}

fn copy_with_mode(from: &Path, to: &Path, mode: u32) -> Result<(), PackageError> {
    fs::copy(from, to).map_err(io_err("copying", from))?;
    set_mode(to, mode)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), PackageError> {
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let path = entry.map_err(io_err("listing", dir))?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).expect("walked from root");
            let parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), PackageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("setting mode of", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), PackageError> {
    // Windows has no mode bits; `unix_mode` supplies the right ones when zipping.
    Ok(())
}

#[cfg(unix)]
fn unix_mode(path: &Path) -> Result<u32, PackageError> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::metadata(path).map_err(io_err("reading metadata of", path))?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn unix_mode(path: &Path) -> Result<u32, PackageError> {
    let is_handler = path.file_name().is_some_and(|n| n == HANDLER_EXECUTABLE);
    Ok(if is_handler { EXECUTABLE_MODE } else { DATA_FILE_MODE })
}

#[cfg(test)]
mod tests {
    use super::is_valid_function_name;

    #[test]
    fn function_names_follow_the_host_rule() {
        assert!(is_valid_function_name("ProcessOnboarding"));
        assert!(is_valid_function_name("a-b_c9"));
        assert!(!is_valid_function_name("9lives"));
        assert!(!is_valid_function_name("Host"));
        assert!(!is_valid_function_name("has space"));
        assert!(!is_valid_function_name(&"a".repeat(129)));
    }
}
