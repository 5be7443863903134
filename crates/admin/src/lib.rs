//! The admin service: one place for the rules of accounts, domains, sender
//! addresses, API users and labels. The command line (`posthorn account
//! ...`), the HTTP admin API (`/v1/admin/...`) and the console call it; each
//! only translates its own input and [`AdminError`] into its own words.
//!
//! - [`names`]: what a name, domain and address may be.
//! - [`secrets`]: given passwords are checked for strength (zxcvbn), or a
//!   strong one is generated.
//! - [`dkim`]: key generation and the DNS records to publish; [`check`]
//!   looks them up.
//! - [`keys`]: HTTP API keys (`ph_<id>_<secret>`).
//! - [`cluster`]: the nodes sharing the store and the queue by status;
//!   [`destinations`]: the delivery destinations the live nodes report.
//! - [`templates`]: the rules of stored message templates.
//! - [`bounce`]: an operator's bounce of a message, with its notice.
//! - [`service::Admin`]: the operations, on any [`posthorn_store::Store`].

pub mod bounce;
pub mod check;
pub mod cluster;
pub mod destinations;
pub mod dkim;
mod error;
pub mod keys;
pub mod names;
pub mod secrets;
pub mod service;
pub mod templates;

pub use error::{AdminError, AdminResult};
pub use service::{Admin, Credentials, DkimAlgorithm};
