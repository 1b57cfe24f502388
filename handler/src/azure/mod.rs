//! Stub: azure.
