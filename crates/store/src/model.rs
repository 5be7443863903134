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
    /// The submitting client's address (SMTP or HTTP peer), for the
    /// operator: kept even when the Received field leaves it out.
    pub client_ip: Option<String>,
    pub label: Option<String>,
    pub received_at: i64,
    /// Decoded Subject, as the policy read it.
    pub subject: String,
    /// The From address of the header.
    pub header_from: String,
    pub attachments: Vec<AttachmentRecord>,
    /// The canonical message as it will be delivered.
    pub content: Vec<u8>,
    /// Recipients refused at RCPT because the account suppresses them;
    /// stored with the final status `suppressed` so status queries show
    /// them.
    pub suppressed: Vec<String>,
    /// A bounce notice Posthorn generated (its own bounces make no notice).
    pub is_dsn: bool,
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
    /// The server that gave `last_reply`, as `name[address]`.
    pub remote_host: Option<String>,
    /// Unix seconds of the last status change.
    pub updated_at: i64,
}

/// A stored message without its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub account_id: i64,
    pub account: String,
    pub mail_from: String,
    pub auth_user: String,
    /// The submitting client's address (SMTP or HTTP peer), for the
    /// operator: kept even when the Received field leaves it out.
    pub client_ip: Option<String>,
    pub label: Option<String>,
    pub size: u64,
    /// Unix seconds.
    pub received_at: i64,
    pub subject: String,
    pub header_from: String,
    pub attachments: Vec<AttachmentRecord>,
    pub recipients: Vec<RecipientRecord>,
    /// Unix seconds when every recipient had become final.
    pub completed_at: Option<i64>,
    /// A bounce notice Posthorn generated.
    pub is_dsn: bool,
    /// The content was deleted after the retention time.
    pub content_purged: bool,
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
    /// Only messages with an id greater than this (a paging cursor).
    pub after: Option<MessageId>,
    /// Only messages with an id less than this (ids are time-ordered, so
    /// `after` and `before` together make a time window).
    pub before: Option<MessageId>,
    /// Only messages with this recipient (case-insensitive).
    pub recipient: Option<String>,
    /// Only messages with this label.
    pub label: Option<String>,
    /// Newest first (descending ids; page on with `before`), as the
    /// console lists them; oldest first when false.
    pub newest_first: bool,
}

/// A console sign-in (issue 21): kept by the SHA-256 of its token, never
/// the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the token in the browser's cookie.
    pub token_hash: String,
    /// The API key signed in with (`None`: the configured admin key).
    pub api_key_id: Option<String>,
    /// The account it acts for (`None`: an admin session).
    pub account_id: Option<i64>,
    pub created_at: i64,
    /// Unix seconds (the store's clock) after which it is no longer valid.
    pub expires_at: i64,
}

/// A recipient the scheduler claimed: due for an attempt, now `sending`
/// and leased to the claiming node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueRecipient {
    pub message_id: MessageId,
    /// The recipient's position in its message.
    pub idx: u32,
    pub address: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub account_id: i64,
    pub mail_from: String,
    /// The From address of the header (its domain's key signs the message).
    pub header_from: String,
    pub label: Option<String>,
    /// Unix seconds the message was accepted.
    pub received_at: i64,
    pub is_dsn: bool,
}

/// The new state of one recipient after an attempt (or an operator's
/// decision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientUpdate {
    pub message_id: MessageId,
    pub idx: u32,
    pub status: RecipientStatus,
    /// Attempts made, this one included.
    pub attempts: u32,
    pub last_reply: Option<String>,
    pub remote_host: Option<String>,
    /// Unix seconds; for `deferred` (and `queued`) only.
    pub next_try: Option<i64>,
    /// Put the address on the account's suppression list with this reason
    /// (a hard bounce).
    pub suppress: Option<String>,
}

/// Updates recorded in one commit, with the bounce notices they cause.
#[derive(Clone, Debug, Default)]
pub struct OutcomeBatch {
    pub updates: Vec<RecipientUpdate>,
    /// Bounce notices to enqueue in the same transaction, so a bounce is
    /// never recorded without its notice.
    pub notices: Vec<NewMessage>,
}

/// What [`crate::Store::record_outcomes`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Updates applied (a recipient no longer leased by the caller, or
    /// already final, is skipped).
    pub applied: u64,
    /// Messages whose last recipient became final.
    pub completed: Vec<MessageId>,
}

/// One entry of an account's suppression list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    /// The message whose bounce put it there, if any.
    pub message_id: Option<String>,
    pub created_at: i64,
}

/// An HTTP API key as stored: the secret only as an argon2id hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part of the key (`ph_<id>_<secret>`).
    pub id: String,
    /// `None` for an admin key.
    pub account_id: Option<i64>,
    pub secret_hash: String,
    pub description: String,
    pub created_at: i64,
}

/// Counts of one day (UTC) of an account's recipients, by where they stand
/// now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Messages accepted that day.
    pub messages: u64,
    /// Recipients of those messages (each is one requested email).
    pub requests: u64,
    pub delivered: u64,
    /// Still to be tried again (deferred, queued or being sent).
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub suppressed: u64,
}

/// A webhook subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub account_id: i64,
    pub url: String,
    /// Event kinds: `delivered`, `deferred`, `bounced`, `expired`,
    /// `suppressed`.
    pub events: Vec<String>,
    /// The HMAC-SHA256 signing secret (it must be kept to sign).
    pub secret: String,
    pub created_at: i64,
}

/// Something that happened to one recipient, as a webhook reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub account_id: i64,
    /// `delivered`, `deferred`, `bounced`, `expired`, `suppressed` or
    /// `unsubscribed`.
    pub kind: String,
    pub message_id: String,
    pub recipient: String,
    pub attempts: u32,
    pub reply: Option<String>,
    pub remote_host: Option<String>,
    pub label: Option<String>,
    pub created_at: i64,
    /// The URL of a `clicked` event.
    pub url: Option<String>,
}

/// An event due to be POSTed to one webhook, claimed by a sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueWebhookDelivery {
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub event: Event,
}

/// How one webhook POST went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResult {
    pub webhook_id: String,
    pub event_id: i64,
    /// `None`: accepted (done). `Some(t)`: try again at Unix second `t`.
    pub retry_at: Option<i64>,
    /// Why it failed (status line or transport error).
    pub error: Option<String>,
    /// The HTTP status the receiver answered, if it answered.
    pub status: Option<u16>,
}

/// The kind of the events [`crate::Store::add_test_webhook_event`] makes:
/// sent to the one webhook asked, whatever it subscribed to.
pub const TEST_EVENT_KIND: &str = "test";

/// What a test event says (its kind is [`TEST_EVENT_KIND`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestEvent {
    pub message_id: String,
    pub recipient: String,
    pub reply: Option<String>,
}

/// One event's delivery to one webhook, as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDeliveryRecord {
    pub event_id: i64,
    pub kind: String,
    pub message_id: String,
    pub recipient: String,
    /// When the event happened (Unix seconds).
    pub created_at: i64,
    /// POSTs made so far.
    pub attempts: u32,
    /// The HTTP status of the last POST, when the receiver answered.
    pub last_status: Option<u16>,
    /// Why the last POST failed (status line or transport error).
    pub last_error: Option<String>,
    /// When it was accepted or given up (given up: with `last_error`).
    pub done_at: Option<i64>,
    /// When the next POST is due, while not done.
    pub next_try: Option<i64>,
}

/// A sender address, API user or label of an account, as listed (no
/// secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedName {
    pub name: String,
    pub created_at: i64,
}

/// When failed logins lock AUTH, per client address and user name and per
/// client address alone. Counts are of *distinct* wrong secrets (the caller
/// tags each one; the same tag again is not counted), so a client that
/// tries one wrong password with PLAIN and then LOGIN, or retries it, costs
/// one failure, not two.
///
/// The defaults follow what Postfix's anvil and fail2ban do (count per
/// client within a window, then refuse for a while; fail2ban's stock
/// `maxretry = 5`, `findtime = 10m`), but per user as well as per address,
/// so one mistyped password does not lock every other user behind the same
/// NAT or on the same host:
///
/// - 5 distinct wrong secrets for one (address, user) within 10 minutes
///   lock AUTH for that user from that address for 5 minutes: short enough
///   that a person who mistyped waits a coffee, long enough against
///   guessing (a lockout restarts the count, so at most one guess a minute,
///   about 1,440 a day per address per user: nothing against a generated
///   password, 24 characters of 57; a password chosen by a person is only
///   held to 8 characters, and guesses from many addresses are not limited
///   here, so a weak chosen password is still at risk);
/// - 30 distinct wrong secrets from one address over all users within 10
///   minutes lock AUTH from that address for every user for 15 minutes
///   (password spraying: few guesses for each of many users).
///
/// A count of 0 turns that lockout off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Distinct wrong secrets for one (address, user) within `user_window`
    /// that lock that user out from that address (0: never).
    pub user_failures: u32,
    /// Seconds.
    pub user_window: u64,
    /// Seconds the (address, user) lockout lasts.
    pub user_lockout: u64,
    /// Distinct wrong secrets from one address, any users, within
    /// `address_window` that lock AUTH from the address out (0: never).
    pub address_failures: u32,
    /// Seconds.
    pub address_window: u64,
    /// Seconds the address lockout lasts.
    pub address_lockout: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            user_failures: 5,
            user_window: 600,
            user_lockout: 300,
            address_failures: 30,
            address_window: 600,
            address_lockout: 900,
        }
    }
}

/// AUTH refused from a client address, for one user or (`user: None`) for
/// every user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    pub ip: std::net::IpAddr,
    /// The login name (lower case), or `None` for the whole address.
    pub user: Option<String>,
    /// Unix seconds.
    pub locked_at: i64,
    /// Unix seconds; AUTH is refused while `now < locked_until`.
    pub locked_until: i64,
    /// Distinct failures counted when it started.
    pub failures: u32,
}

/// What a node says about itself in its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id (`[delivery] node_id`), the name its leases carry.
    pub id: String,
    /// Where it can be reached: its host name and listeners.
    pub address: String,
    /// Its Posthorn version.
    pub version: String,
    /// Unix seconds (the store's clock) when it started.
    pub started_at: i64,
}

/// A node as the store knows it: its last heartbeat and the delivery
/// leases it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub info: NodeInfo,
    /// Unix seconds of its last heartbeat (the store's clock).
    pub last_seen: i64,
    /// Recipients `sending` under its lease.
    pub leases: u64,
    /// What it last reported of its own work ([`crate::Store::report_node`];
    /// `{}` before the first report).
    pub report: String,
}

/// Leases of a node found dead, given back so others deliver its work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenOver {
    pub node: String,
    /// Unix seconds of its last heartbeat.
    pub last_seen: i64,
    /// How many recipients became due again.
    pub leases: u64,
}

/// Signals that work may have appeared, for the tasks that wait for it:
/// `queue` when recipients became due (another node's enqueue or retry),
/// `webhooks` when webhook deliveries were added. A shared database
/// raises them from other nodes' commits (LISTEN/NOTIFY); the embedded
/// store has no other node and raises none (the process wakes its own
/// tasks). Waiters still poll now and then: a wakeup may be lost while
/// the database connection is being re-made.
#[derive(Clone, Debug, Default)]
pub struct Wakeups {
    pub queue: std::sync::Arc<tokio::sync::Notify>,
    pub webhooks: std::sync::Arc<tokio::sync::Notify>,
}

/// One fetch of a tracked message's open pixel (`opened`) or of one of its
/// click links (`clicked`), by one recipient (docs/tracking.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEngagement {
    pub account_id: i64,
    pub message_id: String,
    pub recipient: String,
    /// [`crate::OPENED`] or [`crate::CLICKED`].
    pub kind: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The link's URL, for a click.
    pub url: Option<String>,
}

/// A recipient's opens or clicks of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngagementSummary {
    pub recipient: String,
    pub kind: String,
    pub count: u64,
    pub first_at: i64,
    pub last_at: i64,
}

/// Per UTC day of acceptance: recipients that opened, and that clicked, at
/// least once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayEngagements {
    pub day: String,
    pub opened: u64,
    pub clicked: u64,
}
