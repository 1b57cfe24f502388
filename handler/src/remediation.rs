//! Stub: remediation.
