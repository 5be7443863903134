//! Outbound delivery: where a recipient's mail goes ([`route`]), DKIM
//! signing ([`dkim`]), the outbound SMTP client ([`client`]) and its
//! connection pool ([`pool`]), what a result means for a recipient
//! ([`outcome`]), bounce notices ([`dsn`]), and the scheduler that drains
//! the queue ([`engine`]).

pub mod ahead;
pub mod client;
pub mod config;
pub mod destination;
pub mod dkim;
pub mod dsn;
pub mod engine;
pub mod outcome;
pub mod pool;
pub mod route;
pub mod shaping;
pub mod signer;

pub use config::{parse_duration, DeliveryConfig, Relay};
pub use engine::Engine;
