//! The Functions host protocol: decode invocations, answer the host, serve the routes.

pub mod invocation;
pub mod server;
