//! What a Linux x86-64 executable needs from the machine it runs on, read from its ELF headers: a static executable
//! needs nothing; a dynamic one needs its interpreter, its libraries, and every glibc symbol version it references.
//!
//! The Functions Linux workers have shipped glibc 2.31 or older (Azure/Azure-Functions issue 2570: native code built
//! against glibc 2.34 failed there), so a package may reference nothing newer than [`MAX_GLIBC`].

use std::fmt;

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, Object};

/// The newest glibc symbol version a packaged handler may need: Debian 10's glibc, the oldest base of the worker images.
pub const MAX_GLIBC: GlibcVersion = GlibcVersion([2, 28, 0]);

/// A `GLIBC_x.y[.z]` symbol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub [u32; 3]);

impl GlibcVersion {
    /// Parses `GLIBC_2.34` or `GLIBC_2.2.5`; `None` for anything else (`GLIBC_PRIVATE`, `GCC_3.0`).
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = [0u32; 3];
        let mut count = 0;
        for part in name.strip_prefix("GLIBC_")?.split('.') {
            *parts.get_mut(count)? = part.parse().ok()?;
            count += 1;
        }
        (count >= 2).then_some(Self(parts))
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        if patch == 0 { write!(f, "GLIBC_{major}.{minor}") } else { write!(f, "GLIBC_{major}.{minor}.{patch}") }
    }
}

/// How an executable is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// No interpreter and no shared libraries: runs on any x86-64 Linux kernel.
    Static,
    Dynamic {
        interpreter: Option<String>,
        /// `DT_NEEDED` entries, in order.
        needed: Vec<String>,
        /// The newest `GLIBC_x.y` among the versions it needs, if any.
        newest_glibc: Option<GlibcVersion>,
    },
}

impl fmt::Display for Linkage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Linkage::Static => f.write_str("static executable"),
            Linkage::Dynamic { interpreter, needed, newest_glibc } => {
                write!(f, "dynamic executable (interpreter {}", interpreter.as_deref().unwrap_or("none"))?;
                write!(f, ", needs {}", needed.join(" "))?;
                match newest_glibc {
                    Some(version) => write!(f, ", newest symbol version {version})"),
                    None => write!(f, ", no glibc symbol versions)"),
                }
            }
        }
    }
}

/// Reads the linkage of a 64-bit little-endian x86-64 ELF executable.
pub fn inspect(data: &[u8]) -> Result<Linkage, String> {
    let bad = |e: object::read::Error| format!("not a readable ELF file: {e}");
    let file = object::read::elf::ElfFile64::<Endianness>::parse(data).map_err(bad)?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err(format!("built for {:?}, the workers are x86-64", file.architecture()));
    }
    let header: &FileHeader64<Endianness> = file.elf_header();
    let endian = file.endian();
    let mut interpreter = None;
    for segment in header.program_headers(endian, data).map_err(bad)? {
        if let Some(path) = segment.interpreter(endian, data).map_err(bad)? {
            interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    let sections = file.elf_section_table();
    let dynamic = sections.dynamic_table(endian, data).map_err(bad)?;
    let mut needed = Vec::new();
    for entry in dynamic.iter().filter(|entry| entry.tag == elf::DT_NEEDED) {
        needed.push(String::from_utf8_lossy(dynamic.string(entry).map_err(bad)?).into_owned());
    }
    if interpreter.is_none() && needed.is_empty() {
        return Ok(Linkage::Static);
    }
    let mut newest_glibc = None;
    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data).map_err(bad)? {
        let strings = sections.strings(endian, data, link).map_err(bad)?;
        while let Some((_, mut versions)) = needs.next().map_err(bad)? {
            while let Some(version) = versions.next().map_err(bad)? {
                let name = String::from_utf8_lossy(version.name(endian, strings).map_err(bad)?).into_owned();
                newest_glibc = newest_glibc.max(GlibcVersion::parse(&name));
            }
        }
    }
    Ok(Linkage::Dynamic { interpreter, needed, newest_glibc })
}

/// `Ok` when the executable can run on the Functions Linux workers: static, or needing no glibc newer than
/// [`MAX_GLIBC`].
pub fn check_runs_on_workers(linkage: &Linkage) -> Result<(), String> {
    match linkage {
        Linkage::Static => Ok(()),
        Linkage::Dynamic { newest_glibc: Some(version), .. } if *version > MAX_GLIBC => Err(format!(
            "{linkage}: needs {version}, newer than {MAX_GLIBC}, the newest a Functions Linux worker can be relied on to \
             have (Azure/Azure-Functions#2570); build for x86_64-unknown-linux-musl (the default) or \
             x86_64-unknown-linux-gnu.2.28"
        )),
        Linkage::Dynamic { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(GlibcVersion::parse("GLIBC_2.34"), Some(GlibcVersion([2, 34, 0])));
        assert_eq!(GlibcVersion::parse("GLIBC_2.2.5"), Some(GlibcVersion([2, 2, 5])));
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GCC_3.0"), None);
        assert_eq!(GlibcVersion::parse("GLIBC_2"), None);
        assert_eq!(GlibcVersion::parse("GLIBC_2.1.2.3"), None);
        assert!(GlibcVersion([2, 28, 0]) < GlibcVersion([2, 34, 0]));
        assert!(GlibcVersion([2, 2, 5]) < GlibcVersion([2, 28, 0]));
        assert_eq!(GlibcVersion([2, 2, 5]).to_string(), "GLIBC_2.2.5");
        assert_eq!(MAX_GLIBC.to_string(), "GLIBC_2.28");
    }

    #[test]
    fn newer_glibc_than_the_workers_have_is_refused() {
        let linkage = |newest| Linkage::Dynamic {
            interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
            needed: vec!["libc.so.6".into()],
            newest_glibc: newest,
        };
        assert!(check_runs_on_workers(&Linkage::Static).is_ok());
        assert!(check_runs_on_workers(&linkage(Some(GlibcVersion([2, 28, 0])))).is_ok());
        assert!(check_runs_on_workers(&linkage(Some(GlibcVersion([2, 17, 0])))).is_ok());
        let refused = check_runs_on_workers(&linkage(Some(GlibcVersion([2, 34, 0])))).unwrap_err();
        assert!(refused.contains("GLIBC_2.34"), "{refused}");
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn reads_a_dynamic_executable() {
        // This test binary itself: built for the host's glibc, so dynamic with an interpreter and libc.
        let data = std::fs::read(std::env::current_exe().expect("current exe")).expect("read current exe");
        match inspect(&data).expect("ELF") {
            Linkage::Dynamic { interpreter, needed, newest_glibc } => {
                assert!(interpreter.is_some_and(|i| i.contains("ld-linux")));
                assert!(needed.iter().any(|n| n.starts_with("libc.so")), "{needed:?}");
                assert!(newest_glibc.is_some_and(|v| v >= GlibcVersion([2, 2, 5])), "{newest_glibc:?}");
            }
            Linkage::Static => panic!("a test binary for the gnu target is dynamic"),
        }
    }

    #[test]
    fn refuses_what_is_not_elf() {
        assert!(inspect(b"#!/bin/sh\necho not elf\n").is_err());
    }
}
