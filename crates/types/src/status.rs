use std::fmt;
use std::str::FromStr;

/// Where one recipient of one message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    Queued,
    Sending,
    Delivered,
    Deferred,
    Bounced,
    Expired,
    Suppressed,
}

impl RecipientStatus {
    pub const ALL: [RecipientStatus; 7] = [
        Self::Queued,
        Self::Sending,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Expired,
        Self::Suppressed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Suppressed => "suppressed",
        }
    }
}

impl fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of: {}",
                    Self::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}
