//! Service Bus: the broker (queues, topics, subscriptions, locks, dead letters) and its REST data plane.
//!
//! The engine ([`Bus`]) is used in-process by the emulated Functions host and over HTTP by the REST front end
//! ([`handle`]). Entity paths name a queue or topic for sending and, for receiving, `queue`, `queue/$DeadLetterQueue`,
//! `topic/subscriptions/sub` or `topic/subscriptions/sub/$DeadLetterQueue`.

mod bus;
mod filter;
mod iso_duration;
mod management;
mod model;
mod rest;
mod sas;
mod store;
mod wire;

pub use bus::{Bus, EntityPath, NamespaceAuth};
pub use filter::Filter;
pub use model::{BusError, Delivered, Message, MessageState, NewMessage};
pub use rest::{AUDIENCE, handle};
pub use sas::sas_token;
pub use store::{MAX_DELIVERY_REASON, SubQueueKind, TTL_DESCRIPTION, TTL_REASON};
pub use wire::{format_date, parse_date};
