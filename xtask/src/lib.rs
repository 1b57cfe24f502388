//! Repository automation behind `cargo xtask`: the Azure Functions deployment package and the local demo.

pub mod demo;
pub mod elf;
pub mod package;
pub mod release;
pub mod toolchain;
