//! The SMTP server session as a pure state machine.
//!
//! A [`Session`] is fed the bytes a client sent ([`Session::feed`]) and is
//! stepped ([`Session::step`]) until it needs more input. Each step either
//! asks the caller for something only the outside world can answer (check
//! these credentials, may this sender send, store this message, start TLS)
//! or tells it to close. Replies accumulate in an output buffer that the
//! caller writes to the socket when the session asks for more input, so a
//! pipelined batch of commands is answered in one write.
//!
//! This crate does no I/O and knows nothing of sockets, TLS libraries,
//! stores or clocks; it is tested by scripting bytes in and reading replies
//! out.

mod command;
mod config;
mod data;
mod sasl;
mod session;

pub use config::{LineEndings, SessionConfig};
pub use data::{canonical_crlf, crlf_line_breaks, DataError};
pub use sasl::Credentials;
pub use session::{Event, Session};
