//! Stub: workflow.
