//! The records the store reads and writes.

use posthorn_types::{MessageId, RecipientStatus};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// A sending domain and its DKIM key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub dkim_selector: String,
    /// PKCS#8 PEM of the private key.
    pub dkim_private_key: String,
    /// Base64 of the public key as published in the `p=` tag.
    pub dkim_public_key: String,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct NewDomain {
    pub account_id: i64,
    pub name: String,
    pub dkim_selector: String,
    pub dkim_private_key: String,
    pub dkim_public_key: String,
}

/// A sender address with its SMTP password hash (argon2id PHC string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub account_id: i64,
    pub address: String,
    pub password_hash: String,
}

/// An API user with its key hash (argon2id PHC string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiUser {
    pub account_id: i64,
    pub name: String,
    pub key_hash: String,
}

/// A message to enqueue.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub account_id: i64,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// Who logged in (address or API user name).
    pub auth_user: String,
    pub label: Option<String>,
    pub received_at: i64,
    /// Decoded Subject, as the policy read it.
    pub subject: String,
    /// The From address of the header.
    pub header_from: String,
    pub attachments: Vec<AttachmentRecord>,
    /// The canonical message as it will be delivered.
    pub content: Vec<u8>,
}

/// One attachment of a stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRecord {
    pub filename: Option<String>,
    pub content_type: String,
    /// Decoded bytes.
    pub size: u64,
}

/// One recipient of a stored message and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRecord {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub last_reply: Option<String>,
    /// Unix seconds of the next delivery attempt, when one is planned.
    pub next_try: Option<i64>,
}

/// A stored message without its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub account_id: i64,
    pub account: String,
    pub mail_from: String,
    pub auth_user: String,
    pub label: Option<String>,
    pub size: u64,
    /// Unix seconds.
    pub received_at: i64,
    pub subject: String,
    pub header_from: String,
    pub attachments: Vec<AttachmentRecord>,
    pub recipients: Vec<RecipientRecord>,
}

/// Which messages [`crate::Store::messages`] lists.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    /// Only messages with at least one recipient in this status.
    pub status: Option<RecipientStatus>,
    /// Only messages of this account.
    pub account_id: Option<i64>,
    /// At most this many (all when `None`).
    pub limit: Option<u32>,
}
