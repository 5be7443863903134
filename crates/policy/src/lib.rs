//! Message policy: every message, whichever door it came in by, is parsed
//! once here and checked against its account's rules before it is stored.
//! [`check`] says whether a message may be accepted and returns the facts
//! later features need; [`rewrite_headers`] writes the headers Posthorn
//! adds or removes. No I/O.

mod charsets;
mod check;
pub mod codes;
mod headers;

pub use check::{check, AttachmentFact, Facts, PolicyLimits};
pub use codes::{ErrorCode, ERROR_CODES};
pub use headers::{rewrite_headers, HeaderEdits};
