//! The shared pipeline testbed (`cmk_testbed`) with this crate's own `handler` binary.

use std::path::Path;

use azure_emulator::scenario::Scenario;
pub use cmk_testbed::*;

/// The binary cargo built for these tests.
pub fn handler() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_handler"))
}

pub async fn start() -> TestBed {
    TestBed::start(handler()).await
}

pub async fn start_with(scenario: Scenario, overrides: &[(&str, &str)]) -> TestBed {
    TestBed::start_with(handler(), scenario, overrides).await
}
