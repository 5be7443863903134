//! The Received field Posthorn puts on top of every accepted message.

use posthorn_types::{Identity, LoginKind, MessageId, Origin};

/// What the Received field says about the submitting client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReceivedMode {
    /// `from HELO ([IP])` and `(authenticated as USER)`: what MTAs write.
    #[default]
    Full,
    /// Neither the client's name and address nor the login, as hosted
    /// providers do: every recipient sees the field, and an application's
    /// address and SMTP user are nobody's business. The store keeps both
    /// for the operator.
    Private,
}

/// `Received: from HELO ([IP]) by HOST (Posthorn) with PROTO (TLS) (authenticated as USER) id ID; DATE`,
/// folded over several lines; in [`ReceivedMode::Private`] without the
/// `from` clause and the login. Values that come from the client are kept
/// to printable ASCII so the header stays well formed.
pub(crate) fn field(
    origin: &Origin,
    who: &Identity,
    hostname: &str,
    id: MessageId,
    date: &str,
    mode: ReceivedMode,
) -> String {
    if mode == ReceivedMode::Private {
        let mut out = format!(
            "Received: by {hostname} (Posthorn) with {}",
            origin.protocol
        );
        if let Some(tls) = &origin.tls {
            out.push_str(&format!("\r\n\t({})", clean(tls)));
        }
        out.push_str(&format!("\r\n\tid {id}; {date}"));
        return out;
    }
    let helo = origin
        .helo
        .as_deref()
        .map(clean)
        .unwrap_or_else(|| "unknown".into());
    let peer = origin
        .peer
        .map(|ip| format!(" ([{ip}])"))
        .unwrap_or_default();
    let mut out = format!(
        "Received: from {helo}{peer}\r\n\tby {hostname} (Posthorn) with {}",
        origin.protocol
    );
    if let Some(tls) = &origin.tls {
        out.push_str(&format!("\r\n\t({})", clean(tls)));
    }
    if !matches!(who.login, LoginKind::TrustedNetwork) {
        out.push_str(&format!(
            "\r\n\t(authenticated as {})",
            clean(who.login_name())
        ));
    }
    out.push_str(&format!("\r\n\tid {id}; {date}"));
    out
}

fn clean(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
