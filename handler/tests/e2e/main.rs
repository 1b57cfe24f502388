//! End-to-end tests: the real `handler` binary under the emulated Functions host, against the emulated Azure.

mod customer;
mod diagnose;
mod faults;
mod happy_path;
mod idempotency;
mod identity_sets;
mod poison;
mod preview_feature;
mod propagation;
mod samples;
mod secrets;
mod string_datatype;
mod testbed;
mod tracing;
