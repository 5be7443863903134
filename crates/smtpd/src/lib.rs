//! The SMTP listeners: accept TCP connections, run TLS (implicit or
//! STARTTLS), enforce timeouts, and drive a [`posthorn_smtp::Session`] for
//! each connection, answering its events through the shared
//! [`posthorn_submit::Submitter`].

mod config;
mod connection;
mod net;
mod replies;
mod server;
mod tls;

pub use config::{ListenerKind, ListenerSpec, SmtpConfig, TrustedNetwork};
pub use net::IpNet;
pub use posthorn_store::LockoutPolicy;
pub use server::{BindError, SmtpServer};
pub use tls::{TlsError, TlsStore};
