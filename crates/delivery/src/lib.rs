//! Outbound delivery (being built): where a recipient's mail goes
//! ([`route`]), DKIM signing ([`dkim`]), and, to come, the outbound SMTP
//! client and the scheduler that drains the queue.

pub mod client;
pub mod dkim;
pub mod route;
