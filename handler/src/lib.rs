//! Cross-tenant customer-managed-key onboarding, as an Azure Functions custom handler.
//!
//! Reading order: [`contract`] (what a message is) → [`workflow`] (what we do with it) → [`azure`] (how we talk to
//! Azure) → [`function`] (how the Functions host talks to us). Pure logic lives in [`contract`], [`delivery`], [`events`],
//! [`error`] (with its classifier), [`decide`], [`order`] and [`remediation`]; only [`azure`] does network I/O.

pub mod azure;
pub mod cloud;
pub mod config;
pub mod contract;
pub mod decide;
pub mod delivery;
pub mod error;
pub mod events;
pub mod function;
pub mod order;
pub mod permissions;
pub mod remediation;
pub mod telemetry;
pub mod text;
pub mod workflow;
