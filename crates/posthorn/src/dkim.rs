//! DKIM key generation and the DNS records a domain owner publishes: the
//! code lives in `posthorn_api::admin::dkim`, shared with the HTTP admin
//! routes.

pub use posthorn_api::admin::dkim::{dns_records, generate_ed25519, generate_rsa, SELECTOR};
