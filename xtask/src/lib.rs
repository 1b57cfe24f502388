//! Repository automation behind `cargo xtask`: today, assembling the Azure Functions deployment package.

pub mod package;
