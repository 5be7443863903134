//! Vocabulary shared by every Posthorn crate: message identifiers, the SMTP
//! envelope, recipient statuses, who is submitting, and the replies the
//! submission path speaks in. Nothing here does I/O.

mod accepting;
pub mod address;
mod business;
mod committing;
mod envelope;
mod id;
pub mod net;
mod reply;
mod status;
pub mod time;

pub use accepting::Accepting;
pub use address::{Address, AddressError};
pub use business::{BusinessError, BUSINESS_ERROR_PREFIX};
pub use committing::{Committing, CommittingGuard, CROWDED_AT};
pub use envelope::{BodyType, Envelope, Identity, LoginKind, Origin};
pub use id::{new_request_id, new_uuid, MessageId};
pub use reply::Reply;
pub use status::RecipientStatus;
