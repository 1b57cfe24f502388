//! The `azure-emulator` executable.
fn main() {}
