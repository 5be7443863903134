use crate::{new_uuid, Reply};

/// A refusal with a stable machine-readable code, in the shape the seed
/// services use (`FailedOperation.MissingSubject`, ...). Over SMTP it becomes
/// one line in the Tencent guide's shape (`554 5.0.0 Error: transaction
/// failed, blame it on the weather: ##SES-response-json: {...}`); over HTTP
/// the API renders the same code and message as JSON of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessError {
    /// Basic SMTP code the error is answered with (554 for policy failures,
    /// 451 for rate limits, ...).
    pub smtp_code: u16,
    pub smtp_status: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// The text before the JSON, exactly as the Tencent guide writes it.
pub const BUSINESS_ERROR_PREFIX: &str =
    "Error: transaction failed, blame it on the weather: ##SES-response-json: ";

/// The SMTP reply-line limit (RFC 5321 4.5.3.1.5), CRLF included.
const MAX_LINE: usize = 512;

impl BusinessError {
    /// A permanent policy failure (`554 5.0.0`, as in the Tencent guide).
    pub fn policy(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            smtp_code: 554,
            smtp_status: "5.0.0",
            code,
            message: message.into(),
        }
    }

    /// The single SMTP reply line for this error, at most 512 bytes with
    /// its CRLF, 7-bit:
    /// `{"Response":{"RequestId":"<uuid>","QcloudError":{"Error":{"Code","Message"}},"Error":{"Code","Message"}}}`.
    /// `Response.QcloudError.Error` is the Tencent SMTP guide's path,
    /// `Response.Error` the Tencent Cloud API convention; both carry the same
    /// values, so code written against either finds them.
    pub fn to_reply(&self) -> Reply {
        self.to_reply_with_id(&new_uuid())
    }

    /// [`BusinessError::to_reply`] with a `RequestId` the caller made (and
    /// logged, so an operator can find the refusal a client reports).
    pub fn to_reply_with_id(&self, request_id: &str) -> Reply {
        let code = json_string(self.code, usize::MAX);
        let line = |message: &str| {
            format!(
                "{BUSINESS_ERROR_PREFIX}{{\"Response\":{{\"RequestId\":\"{request_id}\",\"QcloudError\":{{\"Error\":{{\"Code\":{code},\"Message\":{message}}}}},\"Error\":{{\"Code\":{code},\"Message\":{message}}}}}}}"
            )
        };
        // The message appears twice: each copy gets half of what the line
        // leaves once everything else (and the CRLF) is counted.
        let head = format!("{} {} ", self.smtp_code, self.smtp_status).len();
        let fixed = head + line("\"\"").len() + 2;
        let budget = MAX_LINE.saturating_sub(fixed) / 2;
        let message = json_string(&self.message, budget);
        Reply::new(self.smtp_code, self.smtp_status, line(&message))
    }
}

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

    fn is_uuid_v4(s: &str) -> bool {
        let b = s.as_bytes();
        s.len() == 36
            && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
            && b.iter()
                .enumerate()
                .filter(|(i, _)| ![8, 13, 18, 23].contains(i))
                .all(|(_, c)| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            && b[14] == b'4'
            && matches!(b[19], b'8' | b'9' | b'a' | b'b')
    }

    /// The line as a Tencent client reads it: split at the marker, parse.
    fn parse(line: &str) -> serde_json::Value {
        let json = line
            .split("##SES-response-json: ")
            .nth(1)
            .unwrap()
            .trim_end();
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reply_carries_parseable_json_under_512_bytes() {
        let long = "x\"é\u{1F600}".repeat(200);
        for e in [
            BusinessError::policy("FailedOperation.MissingSubject", long.clone()),
            BusinessError::policy("FailedOperation.InvalidAttachmentContent", long.clone()),
            BusinessError {
                smtp_code: 451,
                smtp_status: "4.7.1",
                code: "RequestLimitExceeded.SmtpRateLimit",
                message: long.clone(),
            },
        ] {
            let line = format!("{}\r\n", e.to_reply());
            assert!(line.len() <= 512, "{} bytes", line.len());
            // Each copy is cut before a piece that no longer fits (at
            // most 12 bytes: a surrogate pair), so little goes unused.
            assert!(
                line.len() >= 512 - 2 * 12,
                "the budget is used: {} bytes",
                line.len()
            );
            assert!(line.is_ascii());
            let v = parse(&line);
            let qcloud = &v["Response"]["QcloudError"]["Error"];
            assert_eq!(qcloud["Code"], e.code);
            assert_eq!(v["Response"]["Error"]["Code"], e.code);
            let message = qcloud["Message"].as_str().unwrap();
            assert!(!message.is_empty() && e.message.starts_with(message));
            assert_eq!(v["Response"]["Error"]["Message"], message);
            assert!(is_uuid_v4(v["Response"]["RequestId"].as_str().unwrap()));
        }
    }

    #[test]
    fn the_line_has_the_seed_shape() {
        let e = BusinessError::policy(
            "FailedOperation.MissingSubject",
            "msg.Subject is null: the message has no Subject header",
        );
        let line = e.to_reply().to_string();
        assert!(
            line.starts_with("554 5.0.0 Error: transaction failed, blame it on the weather: ##SES-response-json: {\"Response\":{\"RequestId\":\""),
            "{line}"
        );
        let id = parse(&line)["Response"]["RequestId"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(is_uuid_v4(&id), "{id}");
        assert_eq!(
            line.replace(&id, "<uuid>"),
            "554 5.0.0 Error: transaction failed, blame it on the weather: ##SES-response-json: {\"Response\":{\"RequestId\":\"<uuid>\",\"QcloudError\":{\"Error\":{\"Code\":\"FailedOperation.MissingSubject\",\"Message\":\"msg.Subject is null: the message has no Subject header\"}},\"Error\":{\"Code\":\"FailedOperation.MissingSubject\",\"Message\":\"msg.Subject is null: the message has no Subject header\"}}}"
        );
        // A new RequestId every time.
        assert_ne!(
            parse(&e.to_reply().to_string())["Response"]["RequestId"],
            id
        );
    }
}
