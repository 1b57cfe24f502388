//! Stub: config.
