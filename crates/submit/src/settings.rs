//! Per-account settings: the keys an operator may set with
//! `posthorn account set ACCOUNT KEY VALUE`, how each is checked, and how
//! the stored overrides combine with the configured defaults.

use posthorn_policy::PolicyLimits;

/// One settable key.
pub struct SettingKey {
    pub key: &'static str,
    pub meaning: &'static str,
    get: fn(&PolicyLimits) -> usize,
    set: fn(&mut PolicyLimits, usize),
}

impl SettingKey {
    /// The key's value in `limits`.
    pub fn value(&self, limits: &PolicyLimits) -> usize {
        (self.get)(limits)
    }
}

/// Every key, in the order `account show` prints them.
pub const SETTING_KEYS: &[SettingKey] = &[
    SettingKey {
        key: "max_attachments",
        meaning: "attachments per message",
        get: |l| l.max_attachments,
        set: |l, v| l.max_attachments = v,
    },
    SettingKey {
        key: "max_attachment_size",
        meaning: "decoded bytes of one attachment",
        get: |l| l.max_attachment_size,
        set: |l, v| l.max_attachment_size = v,
    },
    SettingKey {
        key: "max_attachments_total",
        meaning: "decoded bytes of all attachments of a message",
        get: |l| l.max_attachments_total,
        set: |l, v| l.max_attachments_total = v,
    },
    SettingKey {
        key: "max_body_size",
        meaning: "bytes of a message without its attachments",
        get: |l| l.max_body_size,
        set: |l, v| l.max_body_size = v,
    },
    SettingKey {
        key: "max_message_size",
        meaning: "bytes of a whole message (never above the server's SIZE)",
        get: |l| l.max_message_size,
        set: |l, v| l.max_message_size = v,
    },
];

/// Check a key and value as typed by an operator; returns the value to store.
pub fn validate_setting(key: &str, value: &str) -> Result<String, String> {
    let Some(_) = SETTING_KEYS.iter().find(|k| k.key == key) else {
        let known: Vec<&str> = SETTING_KEYS.iter().map(|k| k.key).collect();
        return Err(format!(
            "unknown setting {key:?}; known: {}",
            known.join(", ")
        ));
    };
    let n: usize = value
        .trim()
        .parse()
        .map_err(|_| format!("{key} takes a whole number of at least 0, not {value:?}"))?;
    Ok(n.to_string())
}

/// `defaults` with the stored overrides applied; unknown or malformed
/// stored values are ignored (and were refused when set).
pub fn apply_settings(defaults: PolicyLimits, overrides: &[(String, String)]) -> PolicyLimits {
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
            PolicyLimits::default(),
            &[
                ("max_attachments".into(), "3".into()),
                ("bogus".into(), "1".into()),
            ],
        );
        assert_eq!(limits.max_attachments, 3);
        assert_eq!(limits.max_body_size, PolicyLimits::default().max_body_size);
        assert!(validate_setting("max_attachments", "x").is_err());
        assert!(validate_setting("nope", "1")
            .unwrap_err()
            .contains("max_attachments"));
        assert_eq!(validate_setting("max_body_size", " 10 ").unwrap(), "10");
    }
}
