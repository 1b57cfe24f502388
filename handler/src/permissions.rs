//! Stub: permissions.
