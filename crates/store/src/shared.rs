//! Rules both backends apply the same way, kept in one place: how a store
//! error names the duplicate, and how AUTH lockouts are keyed and read back.

use crate::{Lockout, Result, StoreError};
use std::net::IpAddr;

/// Turn a backend's unique-constraint error into one that names the thing
/// (`API user "api1" already exists`); other errors pass unchanged.
pub(crate) fn duplicate(what: &str, name: &str) -> impl FnOnce(StoreError) -> StoreError {
    let msg = format!("{what} {name:?} already exists");
    move |e| match e {
        StoreError::Duplicate(_) => StoreError::Duplicate(msg),
        e => e,
    }
}

/// How a client address is keyed in the lockout tables (an IPv4-mapped
/// IPv6 address as IPv4).
pub(crate) fn ip_key(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// Login names compare without case (sender addresses are looked up so).
pub(crate) fn user_key(user: &str) -> String {
    user.to_lowercase()
}

/// A lockout row as stored (user `""`: the whole address).
pub(crate) fn lockout(
    ip: &str,
    user: String,
    locked_at: i64,
    locked_until: i64,
    failures: i64,
) -> Result<Lockout> {
    Ok(Lockout {
        ip: ip
            .parse()
            .map_err(|e| StoreError::Backend(format!("stored address {ip:?}: {e}")))?,
        user: (!user.is_empty()).then_some(user),
        locked_at,
        locked_until,
        failures: failures as u32,
    })
}

/// The last reply recorded for a recipient refused at RCPT because the
/// account suppresses it.
pub(crate) const SUPPRESSED_REPLY: &str =
    "550 5.1.1 recipient is on the account's suppression list";
