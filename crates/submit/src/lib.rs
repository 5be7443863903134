//! The one submission path. SMTP (and later HTTP) hand every message to a
//! [`Submitter`]: it authenticates logins, decides which senders a login may
//! use, and commits accepted messages to the store. A message is accepted
//! only when [`Submitter::submit`] returns its id, and by then it is on
//! stable storage.

mod password;

pub use password::{generate_secret, hash_secret, verify_secret};

use posthorn_store::{NewMessage, Store, StoreError};
use posthorn_types::{BusinessError, Envelope, Identity, LoginKind, MessageId};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user, password, or label: the client is never told which.
    #[error("invalid credentials")]
    Invalid,
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
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Temporary(e.to_string())
    }
}

/// See the crate documentation.
pub struct Submitter {
    store: Arc<dyn Store>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Submitter {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Check a login. The user is a sender address (it may then send only
    /// from itself) or an API user (any sender address of its account);
    /// either may end in `#label_id`, naming a label of the account. An
    /// unknown user, wrong password and unknown label all give
    /// [`AuthError::Invalid`] after the same amount of work.
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
                            return Err(AuthError::Invalid);
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
        let refused = || SubmitError::SenderNotAllowed(from.to_string());
        if from.is_empty() {
            return Err(refused());
        }
        match &who.login {
            LoginKind::Sender { address } if address.eq_ignore_ascii_case(from) => Ok(()),
            LoginKind::Sender { .. } => Err(refused()),
            LoginKind::ApiUser { .. } | LoginKind::TrustedNetwork => {
                match self.store.sender(from).await {
                    Ok(s) if s.account_id == who.account_id => Ok(()),
                    Ok(_) | Err(StoreError::NotFound(_)) => Err(refused()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// May mail go to `to`? (Suppression and per-pair limits hook in here.)
    pub async fn check_recipient(&self, _who: &Identity, _to: &str) -> Result<(), SubmitError> {
        Ok(())
    }

    /// Commit a message. Returns its id once it is on stable storage.
    pub async fn submit(
        &self,
        who: &Identity,
        envelope: Envelope,
        content: Vec<u8>,
    ) -> Result<MessageId, SubmitError> {
        if envelope.rcpt_to.is_empty() {
            return Err(SubmitError::Business(BusinessError::policy(
                "FailedOperation.MissingRecipient",
                "the message has no recipient",
            )));
        }
        let id = MessageId::generate();
        self.store
            .enqueue(NewMessage {
                id,
                account_id: who.account_id,
                mail_from: envelope.mail_from,
                recipients: envelope.rcpt_to,
                auth_user: who.login_name().to_string(),
                label: who.label.clone(),
                received_at: unix_now(),
                content,
            })
            .await?;
        Ok(id)
    }
}

fn temp(e: StoreError) -> AuthError {
    AuthError::Temporary(e.to_string())
}
