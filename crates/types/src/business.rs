use crate::{new_request_id, Reply};

/// A refusal with a stable machine-readable code, in the shape the seed
/// services use (`FailedOperation.MissingSubject`, ...). Over SMTP it becomes
/// one `554 5.6.0` line carrying `##SES-response-json:`; over HTTP the API
/// renders the same code and message as JSON of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessError {
    /// Basic SMTP code the error is answered with (554 for policy failures,
    /// 451 for rate limits, ...).
    pub smtp_code: u16,
    pub smtp_status: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl BusinessError {
    /// A permanent policy failure (`554 5.6.0`).
    pub fn policy(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            smtp_code: 554,
            smtp_status: "5.6.0",
            code,
            message: message.into(),
        }
    }

    /// The single SMTP reply line for this error, under 512 bytes.
    pub fn to_reply(&self) -> Reply {
        let json = format!(
            "{{\"Response\":{{\"RequestId\":\"{}\",\"Error\":{{\"Code\":\"{}\",\"Message\":{}}}}}}}",
            new_request_id(),
            self.code,
            json_string(&self.message, MAX_ESCAPED_MESSAGE)
        );
        Reply::new(
            self.smtp_code,
            self.smtp_status,
            format!("Error: transaction failed: ##SES-response-json: {json}"),
        )
    }
}

/// 512 bytes is the SMTP reply-line limit; the JSON around the message
/// takes about 170 of them.
const MAX_ESCAPED_MESSAGE: usize = 300;

/// `s` as a JSON string of at most `max` bytes between the quotes, cut at a
/// character boundary. Non-ASCII is escaped, so the reply line stays 7-bit.
fn json_string(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 2);
    out.push('"');
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        match c {
            '"' => piece.push_str("\\\""),
            '\\' => piece.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 >= 0x7f => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    piece.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => piece.push(c),
        }
        if out.len() - 1 + piece.len() > max {
            break;
        }
        out.push_str(&piece);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_carries_parseable_json_under_512_bytes() {
        let e = BusinessError::policy("FailedOperation.MissingSubject", "x\"é".repeat(200));
        let reply = e.to_reply();
        let line = format!("{reply}\r\n");
        assert!(line.len() <= 512, "{} bytes", line.len());
        assert!(line.is_ascii());
        let json = line
            .split("##SES-response-json: ")
            .nth(1)
            .unwrap()
            .trim_end();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            v["Response"]["Error"]["Code"],
            "FailedOperation.MissingSubject"
        );
        assert!(line.starts_with("554 5.6.0 Error: transaction failed: ##SES-response-json: {"));
    }
}
