//! Stub: cloud.
