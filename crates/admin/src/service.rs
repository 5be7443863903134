//! The admin operations. Every front end (CLI, HTTP admin API, console)
//! calls these, so a rule (a name's shape, a password's strength, whether a
//! domain with senders may go) is decided once.

use crate::keys::{key_id, new_key, NewKey};
use crate::names::{
    address_domain, check_address, check_api_user_name, check_label, check_name, checked_domain,
    one_line,
};
use crate::secrets::secret_or_generated;
use crate::{dkim, AdminError, AdminResult};
use posthorn_store::{Account, ApiKey, Domain, NewDomain, Store, StoreError, Suppression};
use posthorn_submit::{validate_setting, SettingKey, SETTING_KEYS};
use std::str::FromStr;
use std::sync::Arc;

/// The reason of a suppression an operator adds without one.
pub const OPERATOR_REASON: &str = "added by operator";

/// The DKIM key type of a new domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// RSA-2048, rsa-sha256: every receiver verifies it.
    #[default]
    Rsa,
    /// Ed25519, ed25519-sha256 (RFC 8463): a tenth of RSA's signing cost,
    /// not verified by every receiver yet.
    Ed25519,
}

impl FromStr for DkimAlgorithm {
    type Err = AdminError;

    fn from_str(s: &str) -> AdminResult<Self> {
        match s {
            "rsa" => Ok(DkimAlgorithm::Rsa),
            "ed25519" => Ok(DkimAlgorithm::Ed25519),
            other => Err(AdminError::Invalid(format!(
                "DKIM key type {other:?}: use rsa (rsa-sha256, the default) or ed25519"
            ))),
        }
    }
}

/// An SMTP login just made or changed: its user name, and its secret when
/// Posthorn generated it (shown once: only the hash is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub login: String,
    pub generated_secret: Option<String>,
}

/// The admin service over one store.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
}

impl Admin {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // --- accounts ------------------------------------------------------

    /// The account of this name.
    pub async fn account(&self, name: &str) -> AdminResult<Account> {
        Ok(self.store.account(name).await?)
    }

    pub async fn create_account(&self, name: &str) -> AdminResult<Account> {
        check_name("account name", name)?;
        Ok(self.store.create_account(name).await?)
    }

    /// Remove an account and everything of it; refused while one of its
    /// messages is still in the queue.
    pub async fn remove_account(&self, name: &str) -> AdminResult<()> {
        let acct = self.account(name).await?;
        self.store
            .remove_account(acct.id)
            .await
            .map_err(|e| in_use(e, &format!("account {name} cannot be removed")))
    }

    // --- domains -------------------------------------------------------

    /// Add a sending domain with a new DKIM key (generated off the async
    /// threads: an RSA key takes a good fraction of a second).
    pub async fn add_domain(
        &self,
        account: &str,
        domain: &str,
        algorithm: DkimAlgorithm,
    ) -> AdminResult<Domain> {
        let acct = self.account(account).await?;
        let name = checked_domain(domain)?;
        let (private, public) = tokio::task::spawn_blocking(move || match algorithm {
            DkimAlgorithm::Rsa => dkim::generate_rsa(),
            DkimAlgorithm::Ed25519 => dkim::generate_ed25519(),
        })
        .await
        .map_err(|e| AdminError::Internal(format!("key generation stopped: {e}")))?
        .map_err(|e| AdminError::Internal(e.to_string()))?;
        Ok(self
            .store
            .add_domain(NewDomain {
                account_id: acct.id,
                name,
                dkim_selector: dkim::SELECTOR.into(),
                dkim_private_key: private,
                dkim_public_key: public,
            })
            .await?)
    }

    /// A domain, which must be `account`'s when one is named.
    pub async fn domain(&self, account: Option<&str>, domain: &str) -> AdminResult<Domain> {
        let name = crate::names::normalize_domain(domain);
        let d = match self.store.domain(&name).await {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => {
                return Err(AdminError::NotFound(match account {
                    Some(a) => format!("account {a} has no domain {name:?}"),
                    None => format!("no domain {name:?}"),
                }))
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(a) = account {
            if self.account(a).await?.id != d.account_id {
                return Err(AdminError::NotFound(format!(
                    "account {a} has no domain {name:?}"
                )));
            }
        }
        Ok(d)
    }

    /// Remove a domain and its DKIM key; refused while sender addresses at
    /// it exist (remove those first: they could not send anyway).
    pub async fn remove_domain(&self, account: Option<&str>, domain: &str) -> AdminResult<()> {
        let d = self.domain(account, domain).await?;
        match self.store.remove_domain(d.account_id, &d.name).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::NotFound(format!("no domain {:?}", d.name))),
            Err(e) => Err(in_use(e, &format!("domain {} cannot be removed", d.name))),
        }
    }

    // --- senders -------------------------------------------------------

    /// Add a sender address (an SMTP login that sends as itself) at one of
    /// the account's domains; its password is checked, or generated.
    pub async fn add_sender(
        &self,
        account: &str,
        address: &str,
        password: Option<String>,
    ) -> AdminResult<Credentials> {
        let acct = self.account(account).await?;
        let domain = address_domain(address)?;
        match self.store.domain(domain).await {
            Ok(d) if d.account_id == acct.id => {}
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(AdminError::Invalid(format!(
                    "{domain} is not a domain of account {account}; add it first with: posthorn domain add {domain} --account {account} (or POST /v1/admin/accounts/{account}/domains)"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let (password, generated) = secret_or_generated("password", password, &[address, account])?;
        let hashed = hash(password.clone()).await?;
        self.store.add_sender(acct.id, address, &hashed).await?;
        Ok(Credentials {
            login: address.to_string(),
            generated_secret: generated.then_some(password),
        })
    }

    /// A sender address, which must be `account`'s when one is named.
    async fn sender(&self, account: Option<&str>, address: &str) -> AdminResult<(i64, String)> {
        let not_found = || {
            AdminError::NotFound(match account {
                Some(a) => format!("account {a} has no sender address {address:?}"),
                None => format!("no sender address {address:?}"),
            })
        };
        let s = match self.store.sender(address).await {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        if let Some(a) = account {
            if self.account(a).await?.id != s.account_id {
                return Err(not_found());
            }
        }
        Ok((s.account_id, s.address))
    }

    /// Set (or generate) a sender address's password.
    pub async fn set_sender_password(
        &self,
        account: Option<&str>,
        address: &str,
        password: Option<String>,
    ) -> AdminResult<Credentials> {
        let (account_id, address) = self.sender(account, address).await?;
        let account_name = self.store.account_by_id(account_id).await?.name;
        let (password, generated) =
            secret_or_generated("password", password, &[&address, &account_name])?;
        let hashed = hash(password.clone()).await?;
        self.store.set_sender_password(&address, &hashed).await?;
        Ok(Credentials {
            login: address,
            generated_secret: generated.then_some(password),
        })
    }

    /// Remove a sender address: its login stops working at once.
    pub async fn remove_sender(&self, account: Option<&str>, address: &str) -> AdminResult<String> {
        let (account_id, address) = self.sender(account, address).await?;
        self.store.remove_sender(account_id, &address).await?;
        Ok(address)
    }

    // --- API users -----------------------------------------------------

    /// Add an API user (an SMTP login that may send as any sender address
    /// of the account); its key is checked, or generated.
    pub async fn add_api_user(
        &self,
        account: &str,
        name: &str,
        key: Option<String>,
    ) -> AdminResult<Credentials> {
        check_api_user_name(name)?;
        let acct = self.account(account).await?;
        let (key, generated) = secret_or_generated("key", key, &[name, account])?;
        let hashed = hash(key.clone()).await?;
        self.store.add_api_user(acct.id, name, &hashed).await?;
        Ok(Credentials {
            login: name.to_string(),
            generated_secret: generated.then_some(key),
        })
    }

    /// Remove an API user, which must be `account`'s when one is named.
    pub async fn remove_api_user(&self, account: Option<&str>, name: &str) -> AdminResult<()> {
        let not_found = || {
            AdminError::NotFound(match account {
                Some(a) => format!("account {a} has no API user {name:?}"),
                None => format!("no API user {name:?}"),
            })
        };
        let user = match self.store.api_user(name).await {
            Ok(u) => u,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        if let Some(a) = account {
            if self.account(a).await?.id != user.account_id {
                return Err(not_found());
            }
        }
        self.store.remove_api_user(user.account_id, name).await?;
        Ok(())
    }

    // --- labels --------------------------------------------------------

    pub async fn add_label(&self, account: &str, label: &str) -> AdminResult<()> {
        check_label(label)?;
        let acct = self.account(account).await?;
        Ok(self.store.add_label(acct.id, label).await?)
    }

    pub async fn remove_label(&self, account: &str, label: &str) -> AdminResult<()> {
        let acct = self.account(account).await?;
        if !self.store.remove_label(acct.id, label).await? {
            return Err(AdminError::NotFound(format!(
                "account {account} has no label {label:?}"
            )));
        }
        Ok(())
    }
}

impl Admin {
    // --- per-account settings -------------------------------------------

    /// Set one account setting (`Some`) or take it back to the configured
    /// default (`None`); the key must be one of `SETTING_KEYS`.
    pub async fn set_setting(
        &self,
        account: &str,
        key: &str,
        value: Option<&str>,
    ) -> AdminResult<&'static SettingKey> {
        let acct = self.account(account).await?;
        let k = SETTING_KEYS.iter().find(|k| k.key == key).ok_or_else(|| {
            let known: Vec<&str> = SETTING_KEYS.iter().map(|k| k.key).collect();
            AdminError::NotFound(format!(
                "unknown setting {key:?}; known: {}",
                known.join(", ")
            ))
        })?;
        let value = value
            .map(|v| validate_setting(k.key, v).map_err(AdminError::Invalid))
            .transpose()?;
        self.store
            .set_account_setting(acct.id, k.key, value.as_deref())
            .await?;
        Ok(k)
    }

    // --- the suppression list -------------------------------------------

    /// Suppress an address for the account (or change the reason of one
    /// already suppressed: then `true`, it existed). The reason defaults
    /// to [`OPERATOR_REASON`].
    pub async fn add_suppression(
        &self,
        account: &str,
        address: &str,
        reason: Option<&str>,
    ) -> AdminResult<(Suppression, bool)> {
        let acct = self.account(account).await?;
        check_address(address)?;
        let reason = one_line("reason", reason.unwrap_or(OPERATOR_REASON), 512)?;
        if reason.is_empty() {
            return Err(AdminError::Invalid(
                "the reason must be 1 to 512 characters on one line".into(),
            ));
        }
        let existed = self.store.is_suppressed(acct.id, address).await?;
        self.store
            .add_suppression(acct.id, address, &reason)
            .await?;
        let entry = self
            .store
            .suppressions(acct.id)
            .await?
            .into_iter()
            .find(|s| s.address.eq_ignore_ascii_case(address))
            .ok_or_else(|| AdminError::NotFound("the suppression was removed meanwhile".into()))?;
        Ok((entry, existed))
    }

    /// Take an address off the account's list.
    pub async fn remove_suppression(&self, account: &str, address: &str) -> AdminResult<()> {
        let acct = self.account(account).await?;
        if !self.store.remove_suppression(acct.id, address).await? {
            return Err(AdminError::NotFound(format!(
                "{address} is not on the suppression list of account {account}"
            )));
        }
        Ok(())
    }

    // --- HTTP API keys ----------------------------------------------------

    /// Make a key for the account (`None`: an admin key) and store it;
    /// the whole key is in the answer, and only there.
    pub async fn create_api_key(
        &self,
        account: Option<&str>,
        description: &str,
    ) -> AdminResult<NewKey> {
        let account_id = match account {
            Some(name) => Some(self.account(name).await?.id),
            None => None,
        };
        let description = one_line("description", description, 200)?;
        let new = tokio::task::spawn_blocking(move || new_key(account_id, &description))
            .await
            .map_err(|e| AdminError::Internal(format!("key generation stopped: {e}")))?;
        self.store.add_api_key(new.record.clone()).await?;
        Ok(new)
    }

    /// The account's keys (`None`: the admin keys).
    pub async fn api_keys(&self, account: Option<&str>) -> AdminResult<Vec<ApiKey>> {
        let account_id = match account {
            Some(name) => Some(self.account(name).await?.id),
            None => None,
        };
        Ok(self.store.api_keys(account_id).await?)
    }

    /// Revoke a key, given whole or by its id; when `account` is named the
    /// key must be that account's. Answers the id revoked.
    pub async fn revoke_api_key(&self, account: Option<&str>, given: &str) -> AdminResult<String> {
        let id = key_id(given).to_string();
        let not_found = || {
            AdminError::NotFound(match account {
                Some(a) => format!("account {a} has no API key {id:?}"),
                None => format!("no API key {id:?}"),
            })
        };
        let key = match self.store.api_key(&id).await {
            Ok(k) => k,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        if let Some(a) = account {
            if key.account_id != Some(self.account(a).await?.id) {
                return Err(not_found());
            }
        }
        if !self.store.remove_api_key(&id).await? {
            return Err(not_found());
        }
        Ok(id)
    }
}

/// The argon2id hash of a secret, computed off the async threads.
async fn hash(secret: String) -> AdminResult<String> {
    tokio::task::spawn_blocking(move || posthorn_submit::hash_secret(&secret))
        .await
        .map_err(|e| AdminError::Internal(format!("hashing stopped: {e}")))
}

/// A store refusal, with what was being done in front of it.
fn in_use(e: StoreError, doing: &str) -> AdminError {
    match e {
        StoreError::InUse(m) => AdminError::InUse(format!("{doing}: {m}")),
        e => e.into(),
    }
}
