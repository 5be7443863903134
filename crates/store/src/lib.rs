//! Where Posthorn keeps what it must not lose: accounts and their
//! credentials, and the queue of accepted messages with a status per
//! recipient.
//!
//! [`Store`] is the one interface the rest of the server uses; the embedded
//! [`SqliteStore`] implements it in the data directory, and a PostgreSQL
//! implementation for clusters will implement the same trait. Enqueueing is
//! durable when the future resolves: the caller may then say `250`.

mod copy;
mod engagements;
mod fresh;
mod model;
mod postgres;
mod postgres_api;
mod postgres_auth;
mod postgres_clock;
mod postgres_console;
mod postgres_enqueue;
mod postgres_events;
mod postgres_nodes;
mod postgres_stash;
mod postgres_suppressed;
mod postgres_templates;
mod shared;
mod space;
mod spool;
mod sqlite;
mod sqlite_api;
mod sqlite_auth;
mod sqlite_console;
mod sqlite_nodes;
mod sqlite_reader;
mod sqlite_templates;
mod sqlite_vfs;
mod sqlite_writer;
mod templates;
mod unsubscribe;

pub use copy::{copy_sqlite_to_postgres, CopyReport};
pub use engagements::{CLICKED, MAX_PER_RECIPIENT, OPENED};
pub use model::*;
pub use postgres::{PostgresStore, ACCEPT_CONNECTIONS};
pub use sqlite::SqliteStore;
pub use sqlite_api::EVENT_KINDS;
pub use templates::{Template, TemplateStore};
pub use unsubscribe::UNSUBSCRIBED;

use async_trait::async_trait;
use posthorn_types::{MessageId, RecipientStatus};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing named does not exist (unknown account, address, id).
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists (a unique name or address).
    #[error("{0}")]
    Duplicate(String),
    /// The thing is still used by others (a domain with senders, an
    /// account with messages in the queue): remove or finish those first.
    #[error("{0}")]
    InUse(String),
    /// The store itself failed: disk, database, connection.
    #[error("store failure: {0}")]
    Backend(String),
    /// The store could not write for lack of space (SQLite `SQLITE_FULL`,
    /// `ENOSPC`; PostgreSQL SQLSTATE 53100 `disk_full`): nothing was
    /// written; the same write may succeed once space is freed.
    #[error("store out of space: {0}")]
    NoSpace(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage interface. Every method is safe to call from many tasks.
#[async_trait]
pub trait Store: TemplateStore + Send + Sync + 'static {
    // --- time -------------------------------------------------------------
    /// The store's clock, Unix seconds. Every time a caller hands the
    /// store (a claim's `now` and `lease_until`, a next try, a retention
    /// cutoff, a lockout's `now`) is read from here, and the store stamps
    /// with it too, so nodes whose own clocks are skewed still agree on
    /// leases and due times. The embedded store: this machine's clock; a
    /// shared database: the database's.
    fn now(&self) -> i64;

    // --- accounts and credentials -------------------------------------
    async fn create_account(&self, name: &str) -> Result<Account>;
    async fn account(&self, name: &str) -> Result<Account>;
    async fn account_by_id(&self, id: i64) -> Result<Account>;
    async fn accounts(&self) -> Result<Vec<Account>>;

    async fn add_domain(&self, domain: NewDomain) -> Result<Domain>;
    async fn domain(&self, name: &str) -> Result<Domain>;
    async fn domains(&self, account_id: i64) -> Result<Vec<Domain>>;

    async fn add_sender(&self, account_id: i64, address: &str, password_hash: &str) -> Result<()>;
    async fn set_sender_password(&self, address: &str, password_hash: &str) -> Result<()>;
    async fn sender(&self, address: &str) -> Result<Sender>;

    async fn add_api_user(&self, account_id: i64, name: &str, key_hash: &str) -> Result<()>;
    async fn api_user(&self, name: &str) -> Result<ApiUser>;

    /// Set (or with `None` remove) one per-account setting.
    async fn set_account_setting(
        &self,
        account_id: i64,
        key: &str,
        value: Option<&str>,
    ) -> Result<()>;
    /// All per-account settings of an account, as `(key, value)`.
    async fn account_settings(&self, account_id: i64) -> Result<Vec<(String, String)>>;

    async fn add_label(&self, account_id: i64, label: &str) -> Result<()>;
    async fn has_label(&self, account_id: i64, label: &str) -> Result<bool>;
    /// Remove a sender address (its login ends at once); `false` when the
    /// account has no such sender.
    async fn remove_sender(&self, account_id: i64, address: &str) -> Result<bool>;
    /// Remove an API user; `false` when the account has none of that name.
    async fn remove_api_user(&self, account_id: i64, name: &str) -> Result<bool>;
    /// Remove a label; `false` when the account has no such label.
    async fn remove_label(&self, account_id: i64, label: &str) -> Result<bool>;
    /// Remove a domain and its DKIM key; `false` when the account has no
    /// such domain. [`StoreError::InUse`] while sender addresses at the
    /// domain exist.
    async fn remove_domain(&self, account_id: i64, name: &str) -> Result<bool>;
    /// Remove an account and everything of it, in one commit: domains,
    /// senders, API users, labels, settings, keys, webhooks, suppressions
    /// and its finished messages. [`StoreError::InUse`] while one of its
    /// messages has a recipient not yet final (nothing accepted is lost).
    async fn remove_account(&self, account_id: i64) -> Result<()>;

    // --- the queue ----------------------------------------------------
    /// Store a message and its recipients. Returns only once the data is on
    /// stable storage. Concurrent calls share one commit.
    async fn enqueue(&self, message: NewMessage) -> Result<()>;
    /// Store several messages all or none, in one commit (an X-SMTPAPI
    /// batch, issue 22): `Ok` only once every one is on stable storage; an
    /// error when any of them could not be stored, and then none is.
    /// Shares its commit with concurrent enqueues, like [`Store::enqueue`].
    async fn enqueue_all(&self, messages: Vec<NewMessage>) -> Result<()>;
    async fn message(&self, id: MessageId) -> Result<MessageRecord>;
    /// The raw stored bytes of a message.
    async fn message_content(&self, id: MessageId) -> Result<Vec<u8>>;
    /// Messages, oldest first, optionally only those with a recipient in
    /// `status`.
    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRecord>>;

    /// How many messages an account has had accepted since `since` (Unix
    /// seconds).
    async fn count_messages_since(&self, account_id: i64, since: i64) -> Result<u64>;

    // --- delivery ------------------------------------------------------
    /// Claim up to `limit` recipients due at `now` (queued or deferred with
    /// `next_try <= now`, or `sending` under a lease that ran out): mark
    /// them `sending`, leased to `owner` until `lease_until`. Oldest
    /// messages first; a message's due recipients come together.
    async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueRecipient>> {
        self.claim_due_except(owner, now, lease_until, limit, &[])
            .await
    }
    /// [`Store::claim_due`], leaving out recipients at the domains in
    /// `skip` (lower case; the part after the address's last `@`): the
    /// scheduler's destinations that hold enough work already, so a
    /// backlog at one domain does not keep claims from the others.
    async fn claim_due_except(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
        skip: &[String],
    ) -> Result<Vec<DueRecipient>>;
    /// Give back every lease `owner` holds (a node restarting after a
    /// crash): those recipients are due again at `now`. Returns how many.
    async fn release_leases(&self, owner: &str, now: i64) -> Result<u64>;
    /// Unix seconds of the earliest planned attempt or lease expiry, if any.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Record outcomes, their suppressions and bounce notices in one
    /// commit. With `owner`, an update applies only to a recipient still
    /// leased by it; without (an operator), to any recipient not yet final.
    async fn record_outcomes(&self, owner: Option<&str>, batch: OutcomeBatch) -> Result<Recorded>;
    /// Make a message's queued and deferred recipients due at `now`.
    /// Returns how many.
    async fn retry_now(&self, id: MessageId, now: i64) -> Result<u64>;
    /// Delete the content of messages completed before `bodies_before`, and
    /// the whole record of those completed before `records_before`.
    /// Returns (bodies purged, records deleted).
    async fn purge(&self, bodies_before: i64, records_before: i64) -> Result<(u64, u64)>;

    // --- suppression ---------------------------------------------------
    /// Add (or update the reason of) a suppressed recipient.
    async fn add_suppression(&self, account_id: i64, address: &str, reason: &str) -> Result<()>;
    /// Remove one; false when it was not there.
    async fn remove_suppression(&self, account_id: i64, address: &str) -> Result<bool>;
    async fn suppressions(&self, account_id: i64) -> Result<Vec<Suppression>>;
    async fn is_suppressed(&self, account_id: i64, address: &str) -> Result<bool>;
    /// A recipient's one-click unsubscribe from a message of the account:
    /// suppressed with reason [`UNSUBSCRIBED`], and in the same commit an
    /// event of that kind for each webhook of the account that wants it
    /// (on PostgreSQL waking every node's webhook sender; the caller wakes
    /// its own). Whether anything changed: false when the address was
    /// already unsubscribed or the account is gone.
    async fn record_unsubscribe(
        &self,
        account_id: i64,
        message_id: &str,
        recipient: &str,
    ) -> Result<bool>;

    // --- HTTP API keys --------------------------------------------------
    async fn add_api_key(&self, key: ApiKey) -> Result<()>;
    async fn api_key(&self, id: &str) -> Result<ApiKey>;
    /// The keys of an account, or with `None` the admin keys.
    async fn api_keys(&self, account_id: Option<i64>) -> Result<Vec<ApiKey>>;
    /// False when it was not there.
    async fn remove_api_key(&self, id: &str) -> Result<bool>;

    // --- console sessions (issue 21) --------------------------------------
    /// Store a new session; sessions expired before its `created_at` go.
    async fn add_console_session(&self, session: &ConsoleSession) -> Result<()>;
    /// The session of this token hash (`NotFound` when none; expiry is
    /// the caller's to check against `now()`).
    async fn console_session(&self, token_hash: &str) -> Result<ConsoleSession>;
    /// Move a session's expiry (an idle timeout).
    async fn touch_console_session(&self, token_hash: &str, expires_at: i64) -> Result<()>;
    /// Sign out; false when it was not there.
    async fn remove_console_session(&self, token_hash: &str) -> Result<bool>;

    // --- statistics -----------------------------------------------------
    /// Per UTC day of acceptance, for messages with ids in
    /// `[from, before)`, optionally of one label; bounce notices excluded.
    async fn daily_stats(
        &self,
        account_id: i64,
        from: MessageId,
        before: MessageId,
        label: Option<&str>,
    ) -> Result<Vec<DayStats>>;
    /// How many recipients are in each status, over every account.
    async fn status_counts(&self) -> Result<Vec<(RecipientStatus, u64)>>;
    /// Per UTC day of acceptance, as [`Store::daily_stats`]: recipients
    /// that opened and that clicked a tracked message (docs/tracking.md).
    async fn daily_engagements(
        &self,
        account_id: i64,
        from: MessageId,
        before: MessageId,
        label: Option<&str>,
    ) -> Result<Vec<DayEngagements>>;
    /// Record an open or a click and, in the same commit, its event for
    /// each webhook of the account that wants its kind (on PostgreSQL
    /// waking every node's webhook sender). False when the recipient
    /// already has [`MAX_PER_RECIPIENT`] of them (nothing recorded).
    async fn record_engagement(&self, engagement: &NewEngagement) -> Result<bool>;
    /// The opens and clicks of a message, per recipient and kind.
    async fn engagements(&self, message_id: MessageId) -> Result<Vec<EngagementSummary>>;

    // --- webhooks -------------------------------------------------------
    async fn add_webhook(&self, webhook: Webhook) -> Result<()>;
    async fn webhooks(&self, account_id: i64) -> Result<Vec<Webhook>>;
    /// False when the account has no such webhook. Its pending deliveries
    /// go with it.
    async fn remove_webhook(&self, account_id: i64, id: &str) -> Result<bool>;
    /// Claim up to `limit` webhook deliveries due at `now`: each is not
    /// due again before `lease_until` unless its result says so.
    async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueWebhookDelivery>>;
    /// Record how POSTs went; a delivery given up on has `retry_at: None`
    /// and an error.
    async fn record_webhook_results(&self, results: Vec<WebhookResult>) -> Result<()>;
    /// Unix seconds of the earliest pending webhook delivery, if any.
    async fn next_webhook_due(&self) -> Result<Option<i64>>;
    /// The deliveries of one webhook of the account, newest event first,
    /// at most `limit` (empty for another account's webhook).
    async fn webhook_deliveries(
        &self,
        account_id: i64,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDeliveryRecord>>;
    /// Store an event of kind [`TEST_EVENT_KIND`] and a delivery of it to
    /// this webhook only, due now, in one commit (on PostgreSQL it wakes
    /// every node's webhook sender; the caller wakes its own). Returns the
    /// event's id; `NotFound` when the account has no such webhook.
    async fn add_test_webhook_event(
        &self,
        account_id: i64,
        webhook_id: &str,
        event: &TestEvent,
    ) -> Result<i64>;

    // --- admin listings -------------------------------------------------
    /// The sender addresses of an account, by address.
    async fn senders(&self, account_id: i64) -> Result<Vec<ListedName>>;
    /// The API users of an account, by name.
    async fn api_users(&self, account_id: i64) -> Result<Vec<ListedName>>;
    /// The labels of an account, by label.
    async fn labels(&self, account_id: i64) -> Result<Vec<ListedName>>;

    // --- cluster nodes --------------------------------------------------
    /// Record a heartbeat of `node`, stamped with the store's clock: its
    /// row is made on the first and updated by each later one.
    async fn heartbeat(&self, node: &NodeInfo) -> Result<()>;
    /// Every node that has sent a heartbeat, by id, with the leases each
    /// holds.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
    /// Store what node `id` reports of its own work (opaque text to the
    /// store; JSON of its delivery destinations), read back with
    /// [`Store::nodes`]. A node without a row yet is left alone.
    async fn report_node(&self, id: &str, report: &str) -> Result<()>;
    /// Give back the leases of every node whose last heartbeat is older
    /// than `timeout` seconds at `now` (it is dead: its recipients become
    /// due at `now` for the others). Returns the nodes that had any. A
    /// node whose heartbeat comes back keeps only what it claims anew;
    /// its outcomes for recipients it no longer holds are not recorded.
    async fn take_over_dead_nodes(&self, now: i64, timeout: i64) -> Result<Vec<TakenOver>>;
    /// Forget nodes whose last heartbeat is older than `before` and that
    /// hold no lease. Returns how many.
    async fn forget_nodes(&self, before: i64) -> Result<u64>;

    // --- wakeups ----------------------------------------------------------
    /// The signals this store raises when other nodes add work (see
    /// [`Wakeups`]); the same pair on every call.
    fn wakeups(&self) -> Wakeups;

    // --- space --------------------------------------------------------------
    /// `Some(since)` while the store cannot write for lack of space: the
    /// time (`now()`) of the first write that failed with
    /// [`StoreError::NoSpace`] since the last one that succeeded. Cheap
    /// (readiness asks it on every probe). The embedded store also tries a
    /// small write of its own in the data directory, at most once a second
    /// while it is out of space, and answers `None` once that succeeds;
    /// PostgreSQL answers `None` once a write succeeds or 30 s after the
    /// last failure, so that traffic may try again.
    async fn out_of_space(&self) -> Option<i64>;

    // --- AUTH lockouts ---------------------------------------------------
    // Failed SMTP logins per (client address, login name), kept here so the
    // admin command line can list and clear lockouts and a cluster can share
    // them. Login names compare without case; an IPv4-mapped IPv6 address
    // is its IPv4 address. See [`LockoutPolicy`] for the rules.
    /// Count a wrong secret `tag` (an opaque fingerprint, never the secret)
    /// tried from `ip` for `user` at `now` (Unix seconds); the same tag
    /// again for the same (ip, user) is not counted again. Returns the
    /// lockout this failure started, if any (the address's when both did).
    async fn record_auth_failure(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        tag: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> Result<Option<Lockout>>;
    /// The lockout refusing AUTH from `ip` for `user` at `now`, if any: the
    /// address's own before the user's. A cheap point read, asked before
    /// every login.
    async fn auth_lockout(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        now: i64,
    ) -> Result<Option<Lockout>>;
    /// Every lockout still running at `now`, by address and user.
    async fn auth_lockouts(&self, now: i64) -> Result<Vec<Lockout>>;
    /// End the lockouts of `ip` (only `user`'s with `Some`) and forget
    /// their counted failures. Returns how many running lockouts ended.
    async fn clear_auth_lockouts(&self, ip: std::net::IpAddr, user: Option<&str>) -> Result<u64>;
}

/// How many commits carried how many messages since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub commits: u64,
    pub messages: u64,
}
