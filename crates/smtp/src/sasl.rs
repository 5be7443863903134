//! SASL PLAIN (RFC 4616) and LOGIN decoding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use posthorn_types::Reply;

/// A login name and password taken from AUTH, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authorization identity PLAIN may carry; empty when absent.
    pub authzid: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub(crate) fn bad_base64() -> Reply {
    Reply::new(
        501,
        "5.5.2",
        "Error: invalid base64 in authentication exchange",
    )
}

/// Decode one base64 line of an AUTH exchange; `=` is the empty response.
pub(crate) fn decode_response(line: &str) -> Result<Vec<u8>, Reply> {
    let line = line.trim();
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| bad_base64())
}

/// Decode a PLAIN response: `authzid NUL authcid NUL passwd`.
pub(crate) fn decode_plain(line: &str) -> Result<Credentials, Reply> {
    let raw = decode_response(line)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::new(
            501,
            "5.5.2",
            "Error: malformed PLAIN response (expected authzid NUL user NUL password)",
        ));
    };
    Ok(Credentials {
        authzid: utf8(authzid)?,
        username: utf8(username)?,
        password: utf8(password)?,
    })
}

pub(crate) fn utf8(bytes: &[u8]) -> Result<String, Reply> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Reply::new(501, "5.5.2", "Error: credentials must be UTF-8"))
}

pub(crate) fn encode(text: &str) -> String {
    STANDARD.encode(text)
}
