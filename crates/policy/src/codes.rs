//! Every business error code Posthorn answers with, what triggers it and how
//! to fix it. `docs/errors.md` is kept in step with this list by a test.

use posthorn_types::BusinessError;

/// One stable error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: &'static str,
    /// The wording of the Tencent guide's error table ("General business
    /// error description") for this refusal, if it has one: the `Message`
    /// begins with it, then `: ` and Posthorn's own explanation.
    pub seed_wording: Option<&'static str>,
    /// The SMTP reply it is answered with.
    pub smtp: &'static str,
    pub trigger: &'static str,
    pub fix: &'static str,
}

pub const MISSING_FROM: &str = "FailedOperation.MissingFrom";
pub const MISSING_SUBJECT: &str = "FailedOperation.MissingSubject";
pub const MISSING_RECIPIENT: &str = "FailedOperation.MissingRecipient";
pub const MISSING_EMAIL_CONTENT: &str = "FailedOperation.MissingEmailContent";
pub const SENDER_MISMATCH: &str = "FailedOperation.SenderMismatch";
pub const INVALID_CONTENT_TYPE: &str = "FailedOperation.InvalidContentType";
pub const INVALID_CHARSET: &str = "FailedOperation.InvalidCharset";
pub const INVALID_MIME_VERSION: &str = "FailedOperation.InvalidMimeVersion";
pub const INVALID_TRANSFER_ENCODING: &str = "FailedOperation.InvalidTransferEncoding";
pub const INVALID_ATTACHMENT_CONTENT: &str = "FailedOperation.InvalidAttachmentContent";
pub const TOO_MANY_ATTACHMENTS: &str = "FailedOperation.TooManyAttachments";
pub const ATTACHMENT_TOO_LARGE: &str = "FailedOperation.AttachmentTooLarge";
pub const ATTACHMENTS_TOO_LARGE: &str = "FailedOperation.AttachmentsTooLarge";
pub const BODY_TOO_LARGE: &str = "FailedOperation.BodyTooLarge";
pub const MESSAGE_TOO_LARGE: &str = "FailedOperation.MessageTooLarge";
pub const LINE_TOO_LONG: &str = "FailedOperation.LineTooLong";
pub const HEADER_TOO_COMPLEX: &str = "FailedOperation.HeaderTooComplex";
pub const SMTP_RATE_LIMIT: &str = "RequestLimitExceeded.SmtpRateLimit";
pub const RECIPIENT_RATE_LIMIT: &str = "RequestLimitExceeded.RecipientRateLimit";
pub const API_CALL_LIMIT: &str = "RequestLimitExceeded.ApiCallLimit";
pub const RECIPIENT_SUPPRESSED: &str = "FailedOperation.RecipientSuppressed";
pub const TOO_MANY_RECIPIENTS: &str = "FailedOperation.TooManyRecipients";
pub const INTERNAL_DESTINATION: &str = "FailedOperation.InternalDestination";
pub const CONTROL_CHARACTER: &str = "FailedOperation.ControlCharacter";
pub const TEMPLATE_NOT_FOUND: &str = "FailedOperation.TemplateNotFound";
pub const TEMPLATE_WITH_CONTENT: &str = "FailedOperation.TemplateWithContent";
pub const MISSING_TEMPLATE_VARIABLE: &str = "FailedOperation.MissingTemplateVariable";
pub const INVALID_SMTPAPI: &str = "FailedOperation.InvalidSmtpApi";
pub const SMTPAPI_SUBSTITUTION: &str = "FailedOperation.SmtpApiSubstitution";
pub const INVALID_TRACKING: &str = "FailedOperation.InvalidTracking";

const POLICY: &str = "554 5.0.0";

/// The seed table's wording for `code`, if the seed has one.
pub fn seed_wording(code: &str) -> Option<&'static str> {
    ERROR_CODES
        .iter()
        .find(|c| c.code == code)
        .and_then(|c| c.seed_wording)
}

/// The `Message` of a business error: the seed table's wording for `code`
/// where it has one, then `: ` and `explanation` (Posthorn's own words);
/// just `explanation` otherwise.
pub fn message(code: &str, explanation: impl Into<String>) -> String {
    let explanation = explanation.into();
    match seed_wording(code) {
        Some(wording) => format!("{wording}: {explanation}"),
        None => explanation,
    }
}

/// A policy refusal (`554 5.0.0`) of `code`, its `Message` made by
/// [`message`].
pub fn refusal(code: &'static str, explanation: impl Into<String>) -> BusinessError {
    BusinessError::policy(code, message(code, explanation))
}

/// All codes, in the order `docs/errors.md` lists them.
pub const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode {
        code: MISSING_FROM,
        seed_wording: Some("msg.From is null"),
        smtp: POLICY,
        trigger: "the message has no From header, or it names no address",
        fix: "add `From: Name <sender@your-domain>`",
    },
    ErrorCode {
        code: MISSING_SUBJECT,
        seed_wording: Some("msg.Subject is null"),
        smtp: POLICY,
        trigger: "the message has no Subject header, or it is empty",
        fix: "add a non-empty `Subject:`",
    },
    ErrorCode {
        code: MISSING_RECIPIENT,
        seed_wording: None,
        smtp: POLICY,
        trigger: "neither To nor Cc names an address",
        fix: "add `To:` (or `Cc:`) with at least one address; Bcc alone is not enough",
    },
    ErrorCode {
        code: MISSING_EMAIL_CONTENT,
        seed_wording: Some("msg.Body is null"),
        smtp: POLICY,
        trigger: "the message has no body text, no HTML and no attachment; over HTTP, a send with neither content (`text`, `html`, `attachments`, `inline`) nor a `template` (the Tencent guide's \"TemplateData and Simple cannot be both empty\")",
        fix: "send some content, or name a template (docs/templates.md)",
    },
    ErrorCode {
        code: SENDER_MISMATCH,
        seed_wording: None,
        smtp: POLICY,
        trigger: "the From address is not the envelope sender (MAIL FROM), or From names several addresses",
        fix: "make `From:` the same address as MAIL FROM; the display name is free",
    },
    ErrorCode {
        code: INVALID_CONTENT_TYPE,
        seed_wording: Some("Content-Type must in..."),
        smtp: POLICY,
        trigger: "the top-level Content-Type is not text/plain, text/html, multipart/mixed, multipart/related or multipart/alternative",
        fix: "wrap other content in multipart/mixed as an attachment",
    },
    ErrorCode {
        code: INVALID_CHARSET,
        seed_wording: None,
        smtp: POLICY,
        trigger: "a text part names a charset that is not registered with IANA",
        fix: "use UTF-8 (or another registered charset)",
    },
    ErrorCode {
        code: INVALID_MIME_VERSION,
        seed_wording: Some("Mime-Version must in..."),
        smtp: POLICY,
        trigger: "MIME-Version is present and is not 1.0",
        fix: "send `MIME-Version: 1.0` or leave it out",
    },
    ErrorCode {
        code: INVALID_TRANSFER_ENCODING,
        seed_wording: Some("Content-Transfer-Encoding must in..."),
        smtp: POLICY,
        trigger: "a part's Content-Transfer-Encoding is not 7bit, 8bit, binary, base64 or quoted-printable",
        fix: "encode the part as base64 or quoted-printable",
    },
    ErrorCode {
        code: INVALID_ATTACHMENT_CONTENT,
        seed_wording: Some("Incorrect attachment content. Make sure the base64 content is..."),
        smtp: POLICY,
        trigger: "an attachment's base64 content does not decode (characters outside the alphabet, broken padding, truncation)",
        fix: "encode the attachment with a standard base64 encoder",
    },
    ErrorCode {
        code: TOO_MANY_ATTACHMENTS,
        seed_wording: None,
        smtp: POLICY,
        trigger: "more attachments than the account's limit (default 10)",
        fix: "send fewer attachments, or several messages",
    },
    ErrorCode {
        code: ATTACHMENT_TOO_LARGE,
        seed_wording: Some("The attachments are too large. Make sure they do not exceed the..."),
        smtp: POLICY,
        trigger: "one attachment is larger, decoded, than the account's limit (default 5 MiB)",
        fix: "send a link instead of the file, or compress it",
    },
    ErrorCode {
        code: ATTACHMENTS_TOO_LARGE,
        seed_wording: Some("The attachments are too large. Make sure they do not exceed the..."),
        smtp: POLICY,
        trigger: "all attachments together are larger, decoded, than the account's limit (default 8 MiB)",
        fix: "split the attachments over several messages",
    },
    ErrorCode {
        code: BODY_TOO_LARGE,
        seed_wording: Some("The email is too large. Remove some content..."),
        smtp: POLICY,
        trigger: "the message without its attachments is larger than the account's limit (default 1 MiB)",
        fix: "shorten the text or HTML; move large inline content to attachments or links",
    },
    ErrorCode {
        code: MESSAGE_TOO_LARGE,
        seed_wording: Some("The email is too large. Remove some content..."),
        smtp: "554 5.0.0 (552 5.3.4 over SMTP, where SIZE catches it first)",
        trigger: "the whole message is larger than the size limit (default 16 MiB)",
        fix: "send less",
    },
    ErrorCode {
        code: LINE_TOO_LONG,
        seed_wording: None,
        smtp: POLICY,
        trigger: "a line of the message is longer than the line limit (default 2,000 bytes)",
        fix: "wrap long lines, or use quoted-printable or base64 for the part",
    },
    ErrorCode {
        code: HEADER_TOO_COMPLEX,
        seed_wording: None,
        smtp: POLICY,
        trigger: "the message's MIME headers are beyond what mail clients write (limits that keep the check's work linear and small): a Content-Type or Content-Disposition field with more than 100 parameters (each `;`, `(`, `'`, line break and closing quote counts) or longer than 16 KiB, more than 10,000 such parameters in the message, a part with more than 1,000 header fields or 256 KiB of header, more than 1 MiB of header in all, more than 1,000 parts, a multipart boundary longer than 200 bytes, or more than 8 multipart parts whose boundary never appears",
        fix: "write each parameter once (a long file name as a few RFC 2231 pieces, `filename*0*=`, `filename*1*=`) and the usual MIME headers; check the program that built the message",
    },
    ErrorCode {
        code: CONTROL_CHARACTER,
        seed_wording: None,
        smtp: POLICY,
        trigger: "a header field (of the message or of one of its MIME parts) holds a NUL, another control character than tab (0x01-0x08, 0x0B, 0x0C, 0x0E-0x1F, 0x7F) or a CR or LF that is not part of a line break; or the body holds a NUL (RFC 5321 and 5322 allow none without BINARYMIME, which Posthorn does not offer)",
        fix: "encode non-text header values as RFC 2047 encoded words and binary content as base64; check the program that built the message for a string it did not end or escape",
    },
    ErrorCode {
        code: SMTP_RATE_LIMIT,
        seed_wording: Some("smtp sending frequency limit..."),
        smtp: "451 4.7.1",
        trigger: "the account sent more messages per second than its limit (default 20); the message was not stored",
        fix: "retry after the time the message names; spread sending, or raise `messages_per_second`",
    },
    ErrorCode {
        code: RECIPIENT_RATE_LIMIT,
        seed_wording: None,
        smtp: "450 4.7.1 (on that RCPT only)",
        trigger: "this sender has sent this recipient as many messages this hour as allowed (default 10)",
        fix: "send the other recipients now and this one later; or raise `pair_per_hour`",
    },
    ErrorCode {
        code: API_CALL_LIMIT,
        seed_wording: None,
        smtp: "451 4.7.1 (at MAIL FROM)",
        trigger: "the API user made more SMTP transactions and HTTP calls this minute than its limit (default 20,000); SendCloud answers this `536 Frequency limited`",
        fix: "retry after the time the message names; code that waited for SendCloud's 536 should treat 451 4.7.1 the same way",
    },
    ErrorCode {
        code: RECIPIENT_SUPPRESSED,
        seed_wording: None,
        smtp: "550 5.1.1 (on that RCPT only)",
        trigger: "an earlier message to this recipient bounced hard (5.1.x, user unknown), or an operator added it to the account's suppression list",
        fix: "remove the address from your list; if it works again, `posthorn suppression remove --account ACCOUNT ADDRESS`",
    },
    ErrorCode {
        code: TOO_MANY_RECIPIENTS,
        seed_wording: None,
        smtp: "452 4.5.3 (on the RCPT past the limit; over HTTP 422)",
        trigger: "more recipients (To, Cc and Bcc together) than the account's `max_recipients` (default 50; KooMessage allows 100)",
        fix: "send to the others in another message (SMTP clients do this by themselves on 452), or `posthorn account set ACCOUNT max_recipients N`",
    },
    ErrorCode {
        code: INTERNAL_DESTINATION,
        seed_wording: None,
        smtp: "550 5.7.1 (on that RCPT only; over HTTP 422)",
        trigger: "the recipient's domain is an address literal of an internal network (`x@[127.0.0.1]`, `x@[10.0.0.1]`, `x@[IPv6:::1]`, link-local, CGNAT, benchmarking, documentation, multicast, their IPv4-mapped and NAT64 forms) or `localhost`, in relay mode too; a domain whose mail servers resolve only to such addresses is accepted, then bounced `550 5.7.1` (without a relay)",
        fix: "send to a public address; an operator whose mail servers are internal sets `[delivery] allow_private_destinations = true`",
    },
    ErrorCode {
        code: TEMPLATE_NOT_FOUND,
        seed_wording: None,
        smtp: "(HTTP only: 422)",
        trigger: "`POST /v1/messages` names a `template` (id or name) the account does not have",
        fix: "list the account's templates (`GET /v1/templates`, `posthorn template list`) and use one of them",
    },
    ErrorCode {
        code: TEMPLATE_WITH_CONTENT,
        seed_wording: None,
        smtp: "(HTTP only: 422)",
        trigger: "`POST /v1/messages` names a `template` and also gives `subject`, `text` or `html`, which the template supplies",
        fix: "send either a template with `template_data` or the content itself, not both (attachments may go with a template)",
    },
    ErrorCode {
        code: MISSING_TEMPLATE_VARIABLE,
        seed_wording: None,
        smtp: "(HTTP only: 422)",
        trigger: "the template uses a `{{variable}}` that `template_data` does not give (the message names every missing one)",
        fix: "add the variables to `template_data`; variables given but not used are fine",
    },
    ErrorCode {
        code: INVALID_SMTPAPI,
        seed_wording: None,
        smtp: POLICY,
        trigger: "the X-SMTPAPI header is not a JSON object of `to` (a list of addresses) and `sub` (tag to a list of values, one per recipient): bad JSON (after unfolding), an unknown field, a bad address, a `sub` list whose length is not the number of recipients, a value with a line break, more recipients than the account's `max_recipients`, or a header longer than 64 KiB",
        fix: "send `X-SMTPAPI: {\"to\": [\"a@example.com\", \"b@example.com\"], \"sub\": {\"%name%\": [\"Ann\", \"Bob\"]}}` (docs/x-smtpapi.md)",
    },
    ErrorCode {
        code: SMTPAPI_SUBSTITUTION,
        seed_wording: None,
        smtp: POLICY,
        trigger: "an X-SMTPAPI substitution cannot be written into a text part: a value with non-ASCII characters into a part whose charset is not UTF-8 or US-ASCII, or a result with a line longer than 998 bytes in a part that is not base64 or quoted-printable",
        fix: "write text parts in UTF-8, or use quoted-printable or base64 for long lines",
    },
    ErrorCode {
        code: INVALID_TRACKING,
        seed_wording: None,
        smtp: POLICY,
        trigger: "the message's `X-Posthorn-Track` header field is neither `on` nor `off`, or appears more than once",
        fix: "send `X-Posthorn-Track: on` or `X-Posthorn-Track: off` once (over HTTP: `\"tracking\": true` or `false`), or leave it out to follow the account's `tracking` setting (docs/tracking.md)",
    },
];
