//! Stub: decide.
