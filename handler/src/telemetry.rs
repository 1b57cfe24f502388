//! Stub: telemetry.
