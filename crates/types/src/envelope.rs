use serde::{Deserialize, Serialize};

/// `BODY=` of MAIL FROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// What the client said about a message outside its content.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Reverse path without angle brackets; empty for the null sender.
    pub mail_from: String,
    /// Forward paths without angle brackets, in the order given, no duplicates.
    pub rcpt_to: Vec<String>,
    pub body: BodyType,
    pub smtputf8: bool,
    /// `SIZE=` as declared by the client, if it declared one.
    pub declared_size: Option<u64>,
    /// Recipients refused because the account suppresses them (not in
    /// `rcpt_to`); kept so their status `suppressed` can be recorded.
    pub suppressed: Vec<String>,
}

/// How a client logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginKind {
    /// The login name is a sender address (Tencent / KooMessage style); the
    /// connection may send only from that address.
    Sender { address: String },
    /// The login name is an API user (SendCloud style); the connection may
    /// send from any sender address of the account.
    ApiUser { name: String },
    /// An HTTP API key (its public id); like an API user, it may send from
    /// any sender address of the account.
    ApiKey { id: String },
    /// No login: the client's address is in `trusted_networks`, mapped to an
    /// account (opt-in, for benchmarks and legacy hosts).
    TrustedNetwork,
}

/// Who is submitting: the result of AUTH (or of a trusted-network match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account_id: i64,
    pub account: String,
    pub login: LoginKind,
    /// The label from `user#label_id`, already checked to exist.
    pub label: Option<String>,
}

impl Identity {
    /// The name the client logged in with, without the label; for logs and
    /// the stored message.
    pub fn login_name(&self) -> &str {
        match &self.login {
            LoginKind::Sender { address } => address,
            LoginKind::ApiUser { name } => name,
            LoginKind::ApiKey { id } => id,
            LoginKind::TrustedNetwork => "trusted-network",
        }
    }
}

/// Where a submission came from, for the Received header and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// `ESMTPSA`, `ESMTPS`, `ESMTPA`, `ESMTP`, `SMTP` or `HTTP`.
    pub protocol: &'static str,
    /// The name the client gave in HELO/EHLO.
    pub helo: Option<String>,
    pub peer: Option<std::net::IpAddr>,
    /// TLS version and cipher suite, e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384`.
    pub tls: Option<String>,
}
