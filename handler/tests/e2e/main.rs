//! End-to-end tests: the real `handler` binary under the emulated Functions host, against the emulated Azure.

mod happy_path;
mod testbed;
