//! What the submitter tells delivery of each message it stores: the
//! content, as the commit starts, so delivery can make the message's DKIM
//! signature with CPU the sessions leave idle while they wait for their
//! commits (`posthorn_delivery::ahead`), instead of after its claim.

use crate::MessageId;

/// Told of each message as its commit starts (implemented by delivery).
pub trait Accepting: Send + Sync {
    /// `content` is the message as stored and delivered. Called on the
    /// session's task: it must not block, only start work elsewhere. The
    /// commit may still fail; what was started for the message then ages
    /// out unused.
    fn accepting(&self, id: MessageId, header_from: &str, content: &[u8]);
}
