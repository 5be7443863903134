//! Logins with the AUTH lockout around them, for every door (SMTP AUTH,
//! HTTP Basic with SMTP credentials): the lockout is asked before the
//! secret is checked, and a wrong secret is counted after, per client
//! address and user, in the store (see `posthorn_store::LockoutPolicy`).

use crate::{AuthError, Submitter};
use posthorn_store::LockoutPolicy;
use posthorn_types::Identity;
use std::net::IpAddr;

impl Submitter {
    /// Check a login from `ip` under `policy`: [`AuthError::LockedOut`]
    /// while the address (or this user from it) is locked, without looking
    /// at the secret; a wrong secret is counted, once per distinct secret.
    /// If the store cannot be asked about lockouts the login goes on
    /// (limits protect, they never stop the service).
    pub async fn login(
        &self,
        ip: IpAddr,
        user: &str,
        secret: &str,
        policy: &LockoutPolicy,
    ) -> Result<Identity, AuthError> {
        let on = policy.user_failures > 0 || policy.address_failures > 0;
        let store = self.store();
        if on {
            match store.auth_lockout(ip, user, store.now()).await {
                Ok(Some(lockout)) => {
                    posthorn_ratelimit::count_refusal(if lockout.user.is_some() {
                        "auth_failures_per_user"
                    } else {
                        "auth_failures_per_ip"
                    });
                    return Err(AuthError::LockedOut);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read AUTH lockouts"),
            }
        }
        let result = self.authenticate(user, secret).await;
        if let (Err(AuthError::Invalid), true) = (&result, on) {
            let tag = failure_tag(secret);
            match store
                .record_auth_failure(ip, user, &tag, store.now(), policy)
                .await
            {
                Ok(Some(lockout)) => tracing::warn!(
                    %ip,
                    user = lockout.user.as_deref().unwrap_or("*"),
                    failures = lockout.failures,
                    until = %posthorn_types::time::rfc3339(lockout.locked_until),
                    "too many failed logins; AUTH is locked"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot record a failed login"),
            }
        }
        result
    }
}

/// The fingerprint of a wrong secret kept with a failed login: HMAC-SHA-256
/// under a key drawn at process start, first 8 bytes in hex. The same wrong
/// secret tried again (smtplib tries PLAIN, then LOGIN; clients retry) has
/// the same tag and counts once; the stored tag says nothing about the
/// secret without the key, which never leaves the process.
fn failure_tag(secret: &str) -> String {
    use hmac::{Hmac, Mac};
    use std::fmt::Write;
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes()[..8]
        .iter()
        .fold(String::with_capacity(16), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_tag_is_16_hex_digits_and_the_same_for_the_same_secret() {
        let a = super::failure_tag("wrong-1");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, super::failure_tag("wrong-1"));
        assert_ne!(a, super::failure_tag("wrong-2"));
    }
}
