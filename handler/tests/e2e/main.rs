//! End-to-end tests: the real `handler` binary under the emulated Functions host, against the emulated Azure.

mod consent;
mod customer;
mod deadline;
mod diagnose;
mod failure_classes;
mod faults;
mod happy_path;
mod idempotency;
mod identity_sets;
mod key_watch;
mod new_account;
mod offboarding;
mod poison;
mod preview_feature;
mod propagation;
mod property_names;
mod samples;
mod scale;
mod secrets;
mod sessions;
mod soak;
mod status;
mod string_datatype;
mod supersession;
mod testbed;
mod tracing;
