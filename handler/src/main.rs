//! The `handler` executable that the Functions host starts.
fn main() {}
