//! Stub: events.
