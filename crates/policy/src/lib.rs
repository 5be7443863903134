//! Message policy: every message, whichever door it came in by, is parsed
//! once here and checked against its account's rules before it is stored.
//! [`check`] says whether a message may be accepted and returns the facts
//! later features need; [`rewrite_headers`] writes the headers Posthorn
//! adds or removes. Before the parse, [`prescan`] walks the header blocks
//! the way mail-parser will and refuses what would make its cost grow
//! faster than the message (`FailedOperation.HeaderTooComplex`). No I/O.

mod charsets;
mod check;
pub mod codes;
mod headers;
mod parse;
mod prescan;

pub use check::{
    check, AttachmentFact, Facts, PolicyLimits, TextPartFact, TransferEncoding, TRACK_FIELD,
};
pub use codes::{ErrorCode, ERROR_CODES};
pub use headers::{has_field, rewrite_headers, HeaderEdits};
pub use prescan::{
    prescan, work_bound, ScanWork, Shape, MAX_BOUNDARY_LEN, MAX_HEADER_BYTES,
    MAX_HEADER_BYTES_TOTAL, MAX_HEADER_FIELDS, MAX_MISSING_BOUNDARIES, MAX_PARAMETERS,
    MAX_PARAMETERS_TOTAL, MAX_PARAMETER_FIELD_BYTES, MAX_PARTS,
};
