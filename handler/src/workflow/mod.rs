//! The onboarding workflow: validate, then run each step as a reconciler (observe, compare, act on a difference).

pub mod key_checks;
pub mod storage;
