//! Per-account settings: the keys an operator may set with
//! `posthorn account set ACCOUNT KEY VALUE`, how each is checked, and how
//! the stored overrides combine with the configured defaults.

use posthorn_policy::PolicyLimits;

/// Rate limits of one account (`0` means no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Accepted messages per second.
    pub messages_per_second: u64,
    /// Accepted messages per hour from one sender address to one recipient.
    pub pair_per_hour: u64,
    /// Authenticated SMTP connections per login on one node.
    pub connections_per_user: u64,
    /// SMTP transactions and HTTP calls per minute per API user.
    pub api_calls_per_minute: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages_per_second: 20,
            pair_per_hour: 10,
            connections_per_user: 10,
            api_calls_per_minute: 20_000,
        }
    }
}

/// Everything an account is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountLimits {
    pub policy: PolicyLimits,
    pub rate: RateLimits,
    /// Send bounce notices to the envelope sender (1) or not (0); the
    /// delivery engine reads the stored override under the same key.
    pub bounce_notices: u64,
    /// Recipients per message, To, Cc and Bcc together (the SMTP session
    /// answers the RCPT past it with `452 4.5.3`).
    pub max_recipients: u64,
    /// Add a one-click unsubscribe link (RFC 8058) to every recipient's
    /// copy (1) or not (0); needs `[tracking] base_url` (docs/unsubscribe.md).
    pub unsubscribe: u64,
    /// Open and click tracking of HTML parts (1) or not (0); needs
    /// `[tracking] base_url` (docs/tracking.md).
    pub tracking: u64,
}

/// The most recipients an account may be allowed per message.
pub const MAX_RECIPIENTS_CAP: u64 = 1000;

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            policy: PolicyLimits::default(),
            rate: RateLimits::default(),
            bounce_notices: 1,
            max_recipients: 50,
            unsubscribe: 0,
            tracking: 0,
        }
    }
}

/// One settable key.
pub struct SettingKey {
    pub key: &'static str,
    pub meaning: &'static str,
    get: fn(&AccountLimits) -> u64,
    set: fn(&mut AccountLimits, u64),
}

impl SettingKey {
    /// The key's value in `limits`.
    pub fn value(&self, limits: &AccountLimits) -> u64 {
        (self.get)(limits)
    }
}

/// Every key, in the order `account show` prints them.
pub const SETTING_KEYS: &[SettingKey] = &[
    SettingKey {
        key: "messages_per_second",
        meaning: "accepted messages per second (0: no limit)",
        get: |l| l.rate.messages_per_second,
        set: |l, v| l.rate.messages_per_second = v,
    },
    SettingKey {
        key: "pair_per_hour",
        meaning: "messages per hour from one sender to one recipient (0: no limit)",
        get: |l| l.rate.pair_per_hour,
        set: |l, v| l.rate.pair_per_hour = v,
    },
    SettingKey {
        key: "connections_per_user",
        meaning: "authenticated SMTP connections per login per node (0: no limit)",
        get: |l| l.rate.connections_per_user,
        set: |l, v| l.rate.connections_per_user = v,
    },
    SettingKey {
        key: "api_calls_per_minute",
        meaning: "SMTP transactions + HTTP calls per minute per API user (0: no limit)",
        get: |l| l.rate.api_calls_per_minute,
        set: |l, v| l.rate.api_calls_per_minute = v,
    },
    SettingKey {
        key: "max_attachments",
        meaning: "attachments per message",
        get: |l| l.policy.max_attachments as u64,
        set: |l, v| l.policy.max_attachments = v as usize,
    },
    SettingKey {
        key: "max_attachment_size",
        meaning: "decoded bytes of one attachment",
        get: |l| l.policy.max_attachment_size as u64,
        set: |l, v| l.policy.max_attachment_size = v as usize,
    },
    SettingKey {
        key: "max_attachments_total",
        meaning: "decoded bytes of all attachments of a message",
        get: |l| l.policy.max_attachments_total as u64,
        set: |l, v| l.policy.max_attachments_total = v as usize,
    },
    SettingKey {
        key: "max_body_size",
        meaning: "bytes of a message without its attachments",
        get: |l| l.policy.max_body_size as u64,
        set: |l, v| l.policy.max_body_size = v as usize,
    },
    SettingKey {
        key: "max_message_size",
        meaning: "bytes of a whole message (never above the server's SIZE)",
        get: |l| l.policy.max_message_size as u64,
        set: |l, v| l.policy.max_message_size = v as usize,
    },
    SettingKey {
        key: "max_recipients",
        meaning: "recipients per message, To, Cc and Bcc together (1 to 1000)",
        get: |l| l.max_recipients,
        set: |l, v| l.max_recipients = v.clamp(1, MAX_RECIPIENTS_CAP),
    },
    SettingKey {
        key: "bounce_notices",
        meaning: "send bounce notices (RFC 3464) to the sender: 1 yes, 0 no",
        get: |l| l.bounce_notices,
        set: |l, v| l.bounce_notices = v.min(1),
    },
    SettingKey {
        key: "unsubscribe",
        meaning: "one-click unsubscribe link (RFC 8058) in every message: 1 yes, 0 no",
        get: |l| l.unsubscribe,
        set: |l, v| l.unsubscribe = v.min(1),
    },
    SettingKey {
        key: "tracking",
        meaning: "open and click tracking of HTML parts: 1 yes, 0 no",
        get: |l| l.tracking,
        set: |l, v| l.tracking = v.min(1),
    },
];

/// Check a key and value as typed by an operator; returns the value to store.
pub fn validate_setting(key: &str, value: &str) -> Result<String, String> {
    if !SETTING_KEYS.iter().any(|k| k.key == key) {
        let known: Vec<&str> = SETTING_KEYS.iter().map(|k| k.key).collect();
        return Err(format!(
            "unknown setting {key:?}; known: {}",
            known.join(", ")
        ));
    }
    let n: u64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{key} takes a whole number of at least 0, not {value:?}"))?;
    if key == "max_recipients" && !(1..=MAX_RECIPIENTS_CAP).contains(&n) {
        return Err(format!(
            "max_recipients takes 1 to {MAX_RECIPIENTS_CAP}, not {value:?}"
        ));
    }
    if key == "bounce_notices" && n > 1 {
        return Err(format!(
            "bounce_notices takes 1 (send notices) or 0 (don't), not {value:?}"
        ));
    }
    if key == "unsubscribe" && n > 1 {
        return Err(format!(
            "unsubscribe takes 1 (add the link) or 0 (don't), not {value:?}"
        ));
    }
    if key == "tracking" && n > 1 {
        return Err(format!(
            "tracking takes 1 (track opens and clicks) or 0 (don't), not {value:?}"
        ));
    }
    Ok(n.to_string())
}

/// `defaults` with the stored overrides applied; unknown or malformed
/// stored values are ignored (and were refused when set).
pub fn apply_settings(defaults: AccountLimits, overrides: &[(String, String)]) -> AccountLimits {
    let mut limits = defaults;
    for (key, value) in overrides {
        if let (Some(k), Ok(v)) = (SETTING_KEYS.iter().find(|k| k.key == key), value.parse()) {
            (k.set)(&mut limits, v);
        }
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_over_defaults() {
        let limits = apply_settings(
            AccountLimits::default(),
            &[
                ("max_attachments".into(), "3".into()),
                ("messages_per_second".into(), "0".into()),
                ("bogus".into(), "1".into()),
            ],
        );
        assert_eq!(limits.policy.max_attachments, 3);
        assert_eq!(limits.rate.messages_per_second, 0);
        assert_eq!(limits.rate.pair_per_hour, 10);
        assert!(validate_setting("max_attachments", "x").is_err());
        assert!(validate_setting("nope", "1")
            .unwrap_err()
            .contains("pair_per_hour"));
        assert_eq!(validate_setting("max_body_size", " 10 ").unwrap(), "10");
    }
}
