//! The one submission path. SMTP (and later HTTP) hand every message to a
//! [`Submitter`]: it authenticates logins, decides which senders a login may
//! use, and commits accepted messages to the store. A message is accepted
//! only when [`Submitter::submit`] returns its id, and by then it is on
//! stable storage.

pub mod links;
mod lockout;
mod password;
mod rate;
mod received;
mod settings;
pub mod smtpapi;
pub mod tracking;

pub use password::{burn_time, generate_secret, hash_secret, verify_secret};
pub use posthorn_policy::PolicyLimits;
pub use received::ReceivedMode;
pub use settings::{
    apply_settings, validate_setting, AccountLimits, RateLimits, SettingKey, SETTING_KEYS,
};

use posthorn_ratelimit::{Limiter, LocalLimiter};

use posthorn_policy::codes::{INTERNAL_DESTINATION, RECIPIENT_SUPPRESSED};
use posthorn_policy::{rewrite_headers, HeaderEdits};
use posthorn_store::{AttachmentRecord, NewMessage, Store, StoreError};
use posthorn_types::time::rfc5322;
use posthorn_types::{BusinessError, Envelope, Identity, LoginKind, MessageId, Origin};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user or password: the client is never told which.
    #[error("invalid credentials")]
    Invalid,
    /// The user and password are right, but the label after `#` is not
    /// one of the account's: said plainly, since the client has proved it
    /// knows the password, so a typo in a label id does not look like a
    /// wrong key.
    #[error("unknown label {0:?}")]
    UnknownLabel(String),
    /// Too many wrong secrets from this address (for this user, or for
    /// any): refused without looking at the secret.
    #[error("locked out after too many failed logins")]
    LockedOut,
    /// The store could not be asked; the client may try again.
    #[error("temporary failure: {0}")]
    Temporary(String),
}

/// Why a submission step was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The login may not send from this address.
    #[error("sender address {0:?} is not allowed for this login")]
    SenderNotAllowed(String),
    /// The message breaks a rule; the code says which.
    #[error("{}: {}", .0.code, .0.message)]
    Business(BusinessError),
    /// The store failed; nothing was accepted; the client may retry.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The store is out of space; nothing was accepted; the client may
    /// retry later (SMTP `452 4.3.1`).
    #[error("out of space: {0}")]
    NoSpace(String),
    /// The store did not commit the message within
    /// [`SubmitConfig::store_timeout`]: it is behind. The message may still
    /// be committed, so a client that sends it again may send it twice.
    #[error("the store did not commit the message within {0:?}")]
    StoreBusy(Duration),
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSpace(m) => SubmitError::NoSpace(m),
            e => SubmitError::Temporary(e.to_string()),
        }
    }
}

/// What the submission path is configured with.
#[derive(Clone, Debug)]
pub struct SubmitConfig {
    /// This server's name, in Received headers and generated Message-IDs.
    pub hostname: String,
    /// Limits for accounts that set none of their own.
    pub limits: AccountLimits,
    /// How long an account's settings are cached before being read again.
    pub settings_ttl: Duration,
    /// What the Received field says about the client (`[smtp]
    /// received_header`).
    pub received: ReceivedMode,
    /// `[delivery] allow_private_destinations`: accept recipients at
    /// address literals of internal networks (`x@[127.0.0.1]`) and at
    /// `localhost`. Off: refused at RCPT, in relay mode too.
    pub allow_private_destinations: bool,
    /// How long a submission may take, the store's commit included (`[smtp]
    /// store_timeout_secs`, for both doors); zero: no limit. The store's
    /// queues are bounded, so a store that falls behind makes submitters
    /// wait for room: this turns that wait into [`SubmitError::StoreBusy`]
    /// (SMTP `451 4.3.2`, HTTP 503) instead of a client that hangs.
    pub store_timeout: Duration,
    /// How unsubscribe links are made (`[tracking] base_url` and its key);
    /// `None`: accounts with `unsubscribe = 1` get no link (a warning is
    /// logged once).
    pub links: Option<links::Links>,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            limits: AccountLimits::default(),
            settings_ttl: Duration::from_secs(5),
            received: ReceivedMode::Full,
            allow_private_destinations: false,
            store_timeout: Duration::from_secs(15),
            links: None,
        }
    }
}

/// See the crate documentation.
pub struct Submitter {
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    config: SubmitConfig,
    /// Effective limits per account, with the time they were read.
    limits_cache: Mutex<HashMap<i64, (Instant, AccountLimits)>>,
    /// Room known to be left in sender→recipient pairs.
    pair_headroom: rate::PairHeadroom,
    /// Told after every commit (the delivery engine waits on it).
    enqueued: Option<Arc<tokio::sync::Notify>>,
    /// Submissions waiting for their commit now (delivery yields to them).
    committing: Arc<posthorn_types::Committing>,
    /// Told of each message as its commit starts (delivery signs ahead).
    accepting: Option<Arc<dyn posthorn_types::Accepting>>,
    /// Whether the missing `[tracking] base_url` was logged.
    warned_no_links: std::sync::atomic::AtomicBool,
}

impl Submitter {
    /// A submitter with limits kept in this process.
    pub fn new(store: Arc<dyn Store>, config: SubmitConfig) -> Self {
        Self::with_limiter(store, Arc::new(LocalLimiter::new()), config)
    }

    pub fn with_limiter(
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
        config: SubmitConfig,
    ) -> Self {
        Self {
            store,
            limiter,
            config,
            limits_cache: Mutex::new(HashMap::new()),
            pair_headroom: rate::PairHeadroom::default(),
            enqueued: None,
            committing: Default::default(),
            accepting: None,
            warned_no_links: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How long a submission may take (`SubmitConfig::store_timeout`).
    pub fn store_timeout(&self) -> Duration {
        self.config.store_timeout
    }

    /// Notify `n` after every message committed, so delivery starts at once.
    pub fn notify_on_enqueue(mut self, n: Arc<tokio::sync::Notify>) -> Self {
        self.enqueued = Some(n);
        self
    }

    /// Tell `a` of each message as its commit starts, with its content.
    pub fn tell_accepting(mut self, a: Arc<dyn posthorn_types::Accepting>) -> Self {
        self.accepting = Some(a);
        self
    }

    /// How many submissions wait for the store to commit them right now,
    /// for delivery to hold its claims back while they crowd it.
    pub fn committing(&self) -> Arc<posthorn_types::Committing> {
        self.committing.clone()
    }

    /// The rate limiter every front end asks.
    pub fn limiter(&self) -> &Arc<dyn Limiter> {
        &self.limiter
    }

    /// The limits in force for an account: the configured defaults with the
    /// account's own settings on top.
    pub async fn limits(&self, account_id: i64) -> Result<AccountLimits, SubmitError> {
        if let Some((at, limits)) = self.limits_cache.lock().expect("cache").get(&account_id) {
            if at.elapsed() < self.config.settings_ttl {
                return Ok(*limits);
            }
        }
        let overrides = self.store.account_settings(account_id).await?;
        let limits = apply_settings(self.config.limits, &overrides);
        self.limits_cache
            .lock()
            .expect("cache")
            .insert(account_id, (Instant::now(), limits));
        Ok(limits)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// What this submitter was configured with (the host name, the
    /// default limits).
    pub fn config(&self) -> &SubmitConfig {
        &self.config
    }

    /// Drop the cached limits of an account, so a setting just changed
    /// applies from the next message on (on this node; others see it
    /// within `settings_ttl`).
    pub fn forget_limits(&self, account_id: i64) {
        self.limits_cache.lock().expect("cache").remove(&account_id);
    }

    /// Check a login. The user is a sender address (it may then send only
    /// from itself) or an API user (any sender address of its account);
    /// either may end in `#label_id`, naming a label of the account. An
    /// unknown user and a wrong password give [`AuthError::Invalid`] after
    /// the same amount of work; an unknown label after the right password
    /// gives [`AuthError::UnknownLabel`].
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<Identity, AuthError> {
        // The whole name first (an address may contain '#'), then with a
        // label split off at the last '#'.
        let mut candidates = vec![(user, None)];
        if let Some(i) = user.rfind('#') {
            candidates.push((&user[..i], Some(&user[i + 1..])));
        }
        for (name, label) in candidates {
            match self.lookup_login(name).await? {
                Some((login, account_id, hash)) => {
                    let ok = verify_secret(password.to_string(), hash).await;
                    if !ok {
                        return Err(AuthError::Invalid);
                    }
                    if let Some(label) = label {
                        if label.is_empty()
                            || !self
                                .store
                                .has_label(account_id, label)
                                .await
                                .map_err(temp)?
                        {
                            return Err(AuthError::UnknownLabel(label.to_string()));
                        }
                    }
                    let account = self.account_name(account_id).await?;
                    return Ok(Identity {
                        account_id,
                        account,
                        login,
                        label: label.map(str::to_string),
                    });
                }
                None => continue,
            }
        }
        // Unknown user: spend the same time as a real check.
        password::burn_time(password.to_string()).await;
        Err(AuthError::Invalid)
    }

    async fn lookup_login(
        &self,
        name: &str,
    ) -> Result<Option<(LoginKind, i64, String)>, AuthError> {
        if name.contains('@') {
            match self.store.sender(name).await {
                Ok(s) => {
                    return Ok(Some((
                        LoginKind::Sender { address: s.address },
                        s.account_id,
                        s.password_hash,
                    )))
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(temp(e)),
            }
        }
        match self.store.api_user(name).await {
            Ok(u) => Ok(Some((
                LoginKind::ApiUser { name: u.name },
                u.account_id,
                u.key_hash,
            ))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(temp(e)),
        }
    }

    async fn account_name(&self, account_id: i64) -> Result<String, AuthError> {
        self.store
            .account_by_id(account_id)
            .await
            .map(|a| a.name)
            .map_err(temp)
    }

    /// The identity for a client in a trusted network mapped to `account`.
    pub async fn trusted_identity(&self, account: &str) -> Result<Identity, SubmitError> {
        let a = self.store.account(account).await?;
        Ok(Identity {
            account_id: a.id,
            account: a.name,
            login: LoginKind::TrustedNetwork,
            label: None,
        })
    }

    /// May `who` send with envelope sender `from`? A sender-address login
    /// only from itself; an API user or trusted network from any sender
    /// address of its account. The null sender is never allowed for
    /// submission.
    pub async fn check_sender(&self, who: &Identity, from: &str) -> Result<(), SubmitError> {
        self.sender_allowed(who, from)
            .await
            .inspect_err(count_refusal)
    }

    /// Count one call of an HTTP API key or of an API user against the
    /// account's `api_calls_per_minute`: each HTTP request, and each SMTP
    /// transaction of an API user (the SMTP front end asks at MAIL), so an
    /// API user's two doors share one budget. Other logins count nothing.
    pub async fn api_call(&self, who: &Identity) -> Result<(), SubmitError> {
        let name = match &who.login {
            LoginKind::ApiKey { id } => format!("key:{id}"),
            LoginKind::ApiUser { name } => name.clone(),
            _ => return Ok(()),
        };
        let limits = self.limits(who.account_id).await?;
        rate::api_call(&*self.limiter, &name, limits.rate.api_calls_per_minute).await
    }

    async fn sender_allowed(&self, who: &Identity, from: &str) -> Result<(), SubmitError> {
        let refused = || SubmitError::SenderNotAllowed(from.to_string());
        if from.is_empty() {
            return Err(refused());
        }
        match &who.login {
            LoginKind::Sender { address } if address.eq_ignore_ascii_case(from) => Ok(()),
            LoginKind::Sender { .. } => Err(refused()),
            LoginKind::ApiUser { .. } | LoginKind::ApiKey { .. } | LoginKind::TrustedNetwork => {
                match self.store.sender(from).await {
                    Ok(s) if s.account_id == who.account_id => Ok(()),
                    Ok(_) | Err(StoreError::NotFound(_)) => Err(refused()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// May mail from `from` go to `to` now? Refused when its domain is an
    /// internal network (`550 5.7.1`, see [`internal_destination`]), when
    /// the account suppresses the recipient (`550 5.1.1`, see
    /// [`is_suppression`]) and while the pair has had its hourly share.
    pub async fn check_recipient(
        &self,
        who: &Identity,
        from: &str,
        to: &str,
    ) -> Result<(), SubmitError> {
        self.recipient_checks(who, from, to)
            .await
            .inspect_err(count_refusal)
    }

    async fn recipient_checks(
        &self,
        who: &Identity,
        from: &str,
        to: &str,
    ) -> Result<(), SubmitError> {
        if !self.config.allow_private_destinations {
            if let Some(refusal) = internal_destination(to) {
                return Err(SubmitError::Business(refusal));
            }
        }
        if self.store.is_suppressed(who.account_id, to).await? {
            return Err(SubmitError::Business(BusinessError {
                smtp_code: 550,
                smtp_status: "5.1.1",
                code: RECIPIENT_SUPPRESSED,
                message: format!(
                    "<{to}> is on the account's suppression list (an earlier message bounced)"
                ),
            }));
        }
        let limits = self.limits(who.account_id).await?;
        rate::pair_allowed(
            &*self.limiter,
            &self.pair_headroom,
            who.account_id,
            from,
            to,
            limits.rate.pair_per_hour,
        )
        .await
    }

    /// Check a message against its account's policy, write Posthorn's
    /// headers, and commit it. Returns its id once it is on stable storage;
    /// nothing is stored when it is refused. A message with an X-SMTPAPI
    /// field becomes one message per recipient (see [`Submitter::submit_all`]
    /// and [`smtpapi`]), and so does one with several recipients when its
    /// account has `unsubscribe` on (each copy its own link, [`links`]):
    /// the id is the first one's.
    pub async fn submit(
        &self,
        who: &Identity,
        origin: &Origin,
        envelope: Envelope,
        content: Vec<u8>,
    ) -> Result<MessageId, SubmitError> {
        let ids = self.submit_all(who, origin, envelope, content).await?;
        Ok(ids[0])
    }

    /// [`Submitter::submit`], answering with every message id it stored:
    /// one, or with an X-SMTPAPI field one per recipient of its `to`, in
    /// that order, or with unsubscribe links one per envelope recipient.
    pub async fn submit_all(
        &self,
        who: &Identity,
        origin: &Origin,
        envelope: Envelope,
        content: Vec<u8>,
    ) -> Result<Vec<MessageId>, SubmitError> {
        let via = if origin.protocol == "HTTP" {
            "http"
        } else {
            "smtp"
        };
        let work = self.check_and_commit(who, origin, envelope, content);
        let limit = self.config.store_timeout;
        let result = if limit.is_zero() {
            work.await
        } else {
            // A message already in the store's queue when the time runs out
            // may still be committed: at least once, never lost, as after a
            // connection lost before the answer.
            tokio::time::timeout(limit, work)
                .await
                .unwrap_or(Err(SubmitError::StoreBusy(limit)))
        };
        match &result {
            Ok(ids) => metrics::counter!("posthorn_submissions_total", "via" => via)
                .increment(ids.len() as u64),
            Err(e) => count_refusal(e),
        }
        result
    }

    async fn check_and_commit(
        &self,
        who: &Identity,
        origin: &Origin,
        envelope: Envelope,
        content: Vec<u8>,
    ) -> Result<Vec<MessageId>, SubmitError> {
        if envelope.rcpt_to.is_empty() {
            return Err(SubmitError::Business(BusinessError::policy(
                "FailedOperation.MissingRecipient",
                "the message has no recipient",
            )));
        }
        let limits = self.limits(who.account_id).await?;
        let recipients = envelope.rcpt_to.len() + envelope.suppressed.len();
        if recipients as u64 > limits.max_recipients {
            return Err(SubmitError::Business(posthorn_policy::codes::refusal(
                posthorn_policy::codes::TOO_MANY_RECIPIENTS,
                format!(
                    "{recipients} recipients; this account sends to at most {} per message",
                    limits.max_recipients
                ),
            )));
        }
        let facts = posthorn_policy::check(&content, &envelope.mail_from, &limits.policy)
            .map_err(SubmitError::Business)?;
        let mut facts = facts;
        if let Some(header) = facts.smtpapi.take() {
            return self
                .commit_batch(who, origin, envelope, content, facts, &header, &limits)
                .await;
        }
        // Only a message that passed the policy takes a share of the rates.
        let booking = rate::take_message(
            &*self.limiter,
            who.account_id,
            &envelope.mail_from,
            &envelope.rcpt_to,
            &limits.rate,
            1,
        )
        .await?;
        // Stamped with the store's clock, like everything it keeps.
        let now = self.store.now();
        let date = rfc5322(now);
        let links = self.unsubscribe_links(&limits, &content);
        let tracked = self.tracking_links(&limits, &facts);
        // With unsubscribe links or tracking, one copy per recipient (each
        // its own links), the header as the sender wrote it: only the
        // envelope recipient differs. Recipients suppressed at RCPT go
        // with the first copy.
        let per_recipient = links.is_some() || tracked.is_some();
        let Envelope {
            mail_from,
            rcpt_to,
            suppressed,
            ..
        } = envelope;
        let copies: Vec<Vec<String>> = if per_recipient && rcpt_to.len() > 1 {
            rcpt_to.into_iter().map(|r| vec![r]).collect()
        } else {
            vec![rcpt_to]
        };
        let mut suppressed = Some(suppressed);
        let mut ids = Vec::with_capacity(copies.len());
        let mut messages = Vec::with_capacity(copies.len());
        for recipients in copies {
            let id = MessageId::generate();
            ids.push(id);
            let (received, message_id) = self.stamps(origin, who, id, &date);
            let unsubscribe = unsubscribe_value(links, who, id, &recipients[0]);
            let mut add: Vec<(&str, &str)> = vec![("Message-ID", &message_id), ("Date", &date)];
            push_unsubscribe(&mut add, &unsubscribe);
            let body = tracked.map(|l| {
                let token = l.track_token(who.account_id, id, &recipients[0]);
                tracking::track(&content, &facts, l, &token)
            });
            let content = rewrite_headers(
                body.as_deref().unwrap_or(&content),
                &HeaderEdits {
                    received: Some(&received),
                    add_if_missing: &add,
                    // A Date receivers cannot read is replaced by ours;
                    // the per-message tracking switch is ours alone.
                    remove: if facts.has_date {
                        &["Bcc", posthorn_policy::TRACK_FIELD]
                    } else {
                        &["Bcc", "Date", posthorn_policy::TRACK_FIELD]
                    },
                },
            );
            messages.push(NewMessage {
                id,
                account_id: who.account_id,
                mail_from: mail_from.clone(),
                recipients,
                suppressed: suppressed.take().unwrap_or_default(),
                is_dsn: false,
                auth_user: who.login_name().to_string(),
                client_ip: origin.peer.map(|ip| ip.to_canonical().to_string()),
                label: who.label.clone(),
                received_at: now,
                subject: facts.subject.clone(),
                header_from: facts.from.clone(),
                attachments: attachment_records(&facts),
                content,
            });
        }
        self.commit(messages, booking).await?;
        Ok(ids)
    }

    /// Store `messages` (one, or the copies of one submission all or none
    /// in one commit), giving the rate booking back if the store refuses,
    /// and wake delivery.
    async fn commit(
        &self,
        mut messages: Vec<NewMessage>,
        booking: rate::Booking,
    ) -> Result<(), SubmitError> {
        let _waiting = self.committing.enter();
        if let Some(a) = &self.accepting {
            for m in &messages {
                a.accepting(m.id, &m.header_from, &m.content);
            }
        }
        let committed = if messages.len() == 1 {
            let message = messages.pop().expect("one message");
            self.store.enqueue(message).await
        } else {
            self.store.enqueue_all(messages).await
        };
        if let Err(e) = committed {
            rate::give_back(&*self.limiter, booking).await;
            return Err(e.into());
        }
        if let Some(n) = &self.enqueued {
            n.notify_one();
        }
        Ok(())
    }

    /// The Received field and the Message-ID of the message `id`.
    fn stamps(
        &self,
        origin: &Origin,
        who: &Identity,
        id: MessageId,
        date: &str,
    ) -> (String, String) {
        let received = received::field(
            origin,
            who,
            &self.config.hostname,
            id,
            date,
            self.config.received,
        );
        (received, format!("<{id}@{}>", self.config.hostname))
    }

    /// How to make unsubscribe links for this account's message: `None`
    /// when the account has `unsubscribe` off, when the sender wrote a
    /// List-Unsubscribe of its own (kept, and nothing added), or when
    /// `[tracking] base_url` is not configured (warned once).
    fn unsubscribe_links(&self, limits: &AccountLimits, content: &[u8]) -> Option<&links::Links> {
        if limits.unsubscribe == 0 || posthorn_policy::has_field(content, "List-Unsubscribe") {
            return None;
        }
        self.links_or_warn()
    }

    /// How to track this message: `None` when it is not to be tracked
    /// (its `X-Posthorn-Track: on|off` decides, else its account's
    /// `tracking`), when it has no HTML part, or without `[tracking]
    /// base_url` (warned once).
    fn tracking_links(
        &self,
        limits: &AccountLimits,
        facts: &posthorn_policy::Facts,
    ) -> Option<&links::Links> {
        let wanted = facts.track.unwrap_or(limits.tracking != 0);
        if !wanted || !facts.text_parts.iter().any(|p| p.html) {
            return None;
        }
        self.links_or_warn()
    }

    fn links_or_warn(&self) -> Option<&links::Links> {
        let links = self.config.links.as_ref();
        if links.is_none()
            && !self
                .warned_no_links
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("a message asks for unsubscribe links or tracking (the account's unsubscribe or tracking setting, or X-Posthorn-Track: on) but [tracking] base_url is not set: such messages are sent without unsubscribe links and untracked (docs/unsubscribe.md, docs/tracking.md)");
        }
        links
    }

    /// An X-SMTPAPI submission (see [`smtpapi`]): after the policy passed
    /// the message, the header is checked, every recipient of its `to`
    /// that RCPT did not check is checked as RCPT would, every copy is
    /// written, and only then are the rates booked (one message per copy)
    /// and the copies stored all or none in one commit
    /// (`Store::enqueue_all`). A refusal stores nothing.
    #[allow(clippy::too_many_arguments)]
    async fn commit_batch(
        &self,
        who: &Identity,
        origin: &Origin,
        envelope: Envelope,
        content: Vec<u8>,
        facts: posthorn_policy::Facts,
        header: &str,
        limits: &AccountLimits,
    ) -> Result<Vec<MessageId>, SubmitError> {
        let mut max = limits.max_recipients;
        if limits.rate.messages_per_second > 0 {
            max = max.min(limits.rate.messages_per_second);
        }
        let api = smtpapi::parse(header, &envelope.rcpt_to, max as usize)
            .map_err(SubmitError::Business)?;
        for to in &api.to {
            if !envelope.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(to)) {
                self.recipient_checks(who, &envelope.mail_from, to).await?;
            }
        }
        let mut copies = Vec::with_capacity(api.to.len());
        for i in 0..api.to.len() {
            copies.push(
                smtpapi::personalise(&content, &facts, &api, i).map_err(SubmitError::Business)?,
            );
        }
        let booking = rate::take_message(
            &*self.limiter,
            who.account_id,
            &envelope.mail_from,
            &api.to,
            &limits.rate,
            api.to.len() as u64,
        )
        .await?;
        let now = self.store.now();
        let date = rfc5322(now);
        let links = self.unsubscribe_links(limits, &content);
        let mut ids = Vec::with_capacity(copies.len());
        let mut messages = Vec::with_capacity(copies.len());
        for ((body, subject), to) in copies.into_iter().zip(&api.to) {
            let id = MessageId::generate();
            ids.push(id);
            let (received, message_id) = self.stamps(origin, who, id, &date);
            let subject_field = smtpapi::subject_field(&subject);
            let mut remove = vec!["Bcc", "X-SMTPAPI", "To", "Cc", posthorn_policy::TRACK_FIELD];
            // A Subject without tags stays as the client wrote it.
            if subject != facts.subject {
                remove.push("Subject");
            }
            if !facts.has_date {
                remove.push("Date");
            }
            let unsubscribe = unsubscribe_value(links, who, id, to);
            let mut add: Vec<(&str, &str)> = vec![
                ("To", to),
                ("Subject", &subject_field),
                ("Message-ID", &message_id),
                ("Date", &date),
            ];
            push_unsubscribe(&mut add, &unsubscribe);
            let content = rewrite_headers(
                &body,
                &HeaderEdits {
                    received: Some(&received),
                    add_if_missing: &add,
                    remove: &remove,
                },
            );
            let message = NewMessage {
                id,
                account_id: who.account_id,
                mail_from: envelope.mail_from.clone(),
                recipients: vec![to.clone()],
                suppressed: Vec::new(),
                is_dsn: false,
                auth_user: who.login_name().to_string(),
                client_ip: origin.peer.map(|ip| ip.to_canonical().to_string()),
                label: who.label.clone(),
                received_at: now,
                subject,
                header_from: facts.from.clone(),
                attachments: attachment_records(&facts),
                content,
            };
            messages.push(message);
        }
        // All or none, in one commit.
        self.commit(messages, booking).await?;
        Ok(ids)
    }
}

/// What the store keeps of a message's attachments.
fn attachment_records(facts: &posthorn_policy::Facts) -> Vec<AttachmentRecord> {
    facts
        .attachments
        .iter()
        .map(|a| AttachmentRecord {
            filename: a.filename.clone(),
            content_type: a.content_type.clone(),
            size: a.size as u64,
        })
        .collect()
}

/// The List-Unsubscribe value of the copy `id` for `rcpt`, when the
/// message gets unsubscribe links.
fn unsubscribe_value(
    links: Option<&links::Links>,
    who: &Identity,
    id: MessageId,
    rcpt: &str,
) -> Option<String> {
    links.map(|l| format!("<{}>", l.unsubscribe_url(who.account_id, id, rcpt)))
}

/// Add the two RFC 8058 fields for `value`, if there is one.
fn push_unsubscribe<'a>(add: &mut Vec<(&'a str, &'a str)>, value: &'a Option<String>) {
    if let Some(url) = value {
        add.push(("List-Unsubscribe", url));
        add.push(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"));
    }
}

/// Count a refusal by its code (`posthorn_refusals_total{code}`).
pub fn count_refusal(e: &SubmitError) {
    let code = match e {
        SubmitError::SenderNotAllowed(_) => "SenderNotAllowed",
        SubmitError::Business(b) => b.code,
        SubmitError::Temporary(_) => "Temporary",
        SubmitError::NoSpace(_) => "NoSpace",
        SubmitError::StoreBusy(_) => "StoreBusy",
    };
    metrics::counter!("posthorn_refusals_total", "code" => code).increment(1);
}

/// The refusal of a recipient whose domain is an address literal of an
/// internal network (`x@[127.0.0.1]`, `x@[IPv6:::ffff:10.0.0.1]`: every
/// range of `posthorn_types::net::is_internal`) or `localhost` (RFC 6761:
/// loopback whatever DNS says), `None` for any other. A name that merely
/// resolves to such an address is delivery's to find (it bounces there):
/// DNS is not asked at RCPT.
pub fn internal_destination(to: &str) -> Option<BusinessError> {
    let domain = posthorn_types::address::domain_of(to);
    let why = match posthorn_types::net::literal_ip(domain) {
        Some(ip) => {
            let internal = posthorn_types::net::is_internal(ip)?;
            format!("{ip} is {internal}")
        }
        None if posthorn_types::net::is_localhost_name(domain) => format!("{domain} is loopback"),
        None => return None,
    };
    Some(BusinessError {
        smtp_code: 550,
        smtp_status: "5.7.1",
        code: INTERNAL_DESTINATION,
        // Short enough to stay whole in the 512-byte SMTP reply line.
        message: format!("{why}, an internal network ([delivery] allow_private_destinations)"),
    })
}

/// Whether a refusal of [`Submitter::check_recipient`] is for a
/// suppressed recipient (whose status is then recorded with the message).
pub fn is_suppression(e: &SubmitError) -> bool {
    matches!(e, SubmitError::Business(b) if b.code == RECIPIENT_SUPPRESSED)
}

fn temp(e: StoreError) -> AuthError {
    AuthError::Temporary(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_destinations_are_refused() {
        for to in [
            "x@[127.0.0.1]",
            "x@[10.1.2.3]",
            "x@[169.254.169.254]",
            "x@[198.18.0.1]",
            "x@[IPv6:::1]",
            "x@[ipv6:::ffff:127.0.0.1]",
            "x@[IPv6:64:ff9b::a00:1]",
            "x@[IPv6:::127.0.0.1]",
            "x@localhost",
            "x@mx.LOCALHOST",
        ] {
            let refusal = internal_destination(to).unwrap_or_else(|| panic!("{to}"));
            assert_eq!(
                (refusal.smtp_code, refusal.smtp_status, refusal.code),
                (550, "5.7.1", INTERNAL_DESTINATION),
                "{to}"
            );
            assert!(
                refusal
                    .message
                    .ends_with(", an internal network ([delivery] allow_private_destinations)"),
                "{}",
                refusal.message
            );
            assert!(posthorn_policy::ERROR_CODES
                .iter()
                .any(|c| c.code == refusal.code));
        }
        assert_eq!(
            internal_destination("x@[127.0.0.1]").unwrap().message,
            "127.0.0.1 is loopback, an internal network ([delivery] allow_private_destinations)"
        );
        // Said whole over SMTP, not cut to fit the reply line.
        for to in [
            "x@[127.0.0.1]",
            "x@[169.254.169.254]",
            "x@[IPv6:64:ff9b::a00:1]",
            "x@localhost",
        ] {
            let refusal = internal_destination(to).unwrap();
            let reply = refusal.to_reply().to_string();
            assert!(
                reply.contains(&format!("\"Message\":\"{}\"", refusal.message)),
                "{reply}"
            );
        }
        for to in [
            "x@example.com",
            "x@[8.8.8.8]",
            "x@[IPv6:2606:4700::1111]",
            "x@[not-an-address]",
            "x@localhost.example",
        ] {
            assert_eq!(internal_destination(to), None, "{to}");
        }
    }
}
