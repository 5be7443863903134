//! `POST /v1/messages`: the JSON body, checked field by field and turned into
//! an envelope and an RFC 5322 message. Pure: no I/O, no clock, no async.
//!
//! [`compose`] answers for the request's own fields in two ways. A rule SMTP
//! has too is answered with the business code SMTP answers for the same
//! message (`posthorn_policy::codes`): no `from`, no or an empty `subject`,
//! no `to` or `cc` address, no content, an attachment that is not base64;
//! [`required`] is the one place for the missing fields, so serde never
//! refuses them first. A fault of the JSON form only (a malformed address,
//! a header that would inject another, a bad file name) gets an
//! `InvalidParameter.*` code of [`COMPOSE_ERROR_CODES`]. The limits that
//! depend on the account (attachment count and sizes, message size) and
//! every other rule are the shared policy's, `posthorn_policy::check`, run
//! later on the bytes made here, as for SMTP.
//!
//! The message carries no Date and no Message-ID: the submission path adds
//! both (`policy::rewrite_headers`). mail-builder's `MessageBuilder` always
//! writes them, so the header block is written here with mail-builder's
//! header types and the body with its `MimePart`, which adds neither.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use mail_builder::encoders::base64::Base64Encoder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::{Header, HeaderType};
use mail_builder::mime::{BodyPart, MimePart};
use posthorn_policy::codes;
use serde::Deserialize;
use utoipa::ToSchema;

/// A malformed address; the field is `from`, `to`, `to[2]`, `reply_to[0]`, ...
pub const INVALID_ADDRESS: &str = "InvalidParameter.Address";
/// Inline content that is not base64 (an attachment's is
/// `FailedOperation.InvalidAttachmentContent`, as in SMTP).
pub const INVALID_BASE64: &str = "InvalidParameter.Base64";
/// A custom header with a bad name, a line break in its value, or a name
/// Posthorn writes itself.
pub const INVALID_HEADER: &str = "InvalidParameter.Header";
/// A subject with a line break (or another control character).
pub const INVALID_SUBJECT: &str = "InvalidParameter.Subject";
/// An inline part's content id that is empty or not a plain token.
pub const INVALID_CONTENT_ID: &str = "InvalidParameter.ContentId";
/// An empty file name, or one with a path separator or control character.
pub const INVALID_FILENAME: &str = "InvalidParameter.Filename";
/// A content type that is not `type/subtype`.
pub const INVALID_CONTENT_TYPE: &str = "InvalidParameter.ContentType";
/// `template_data` that is not an object of scalars (or such an object as
/// a JSON string), or given without `template`.
pub const INVALID_TEMPLATE_DATA: &str = "InvalidParameter.TemplateData";

/// Every code [`compose`] answers with.
pub const COMPOSE_ERROR_CODES: &[&str] = &[
    INVALID_ADDRESS,
    INVALID_BASE64,
    INVALID_HEADER,
    INVALID_SUBJECT,
    INVALID_CONTENT_ID,
    INVALID_FILENAME,
    INVALID_CONTENT_TYPE,
    INVALID_TEMPLATE_DATA,
];

/// Every business code [`compose`] answers with: the codes of
/// `posthorn_policy::ERROR_CODES` that SMTP answers for the same message.
pub const COMPOSE_BUSINESS_CODES: &[&str] = &[
    codes::MISSING_FROM,
    codes::MISSING_SUBJECT,
    codes::MISSING_RECIPIENT,
    codes::MISSING_EMAIL_CONTENT,
    codes::INVALID_ATTACHMENT_CONTENT,
    codes::TEMPLATE_NOT_FOUND,
    codes::TEMPLATE_WITH_CONTENT,
    codes::MISSING_TEMPLATE_VARIABLE,
];

/// Header fields Posthorn writes itself; a request may not set them through
/// `headers` (case-insensitive).
pub const RESERVED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-ID",
    "Received",
    "Return-Path",
    "DKIM-Signature",
    // The request's `tracking` field writes it.
    posthorn_policy::TRACK_FIELD,
];

/// The longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;
/// The longest file name, in characters.
const MAX_FILENAME: usize = 255;
/// The longest content id, in bytes (it is written on one line).
const MAX_CONTENT_ID: usize = 250;

/// An address: `"a@example.com"`, `"Name <a@example.com>"`, or
/// `{"email": "a@example.com", "name": "Name"}`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged, deny_unknown_fields)]
#[schema(example = json!("Alice Example <alice@example.com>"))]
pub enum AddressInput {
    /// `local@domain`, or `Display Name <local@domain>` (the name may be in
    /// double quotes).
    Text(String),
    /// The address and its display name apart.
    Object {
        /// `local@domain`, without angle brackets.
        #[schema(example = "alice@example.com")]
        email: String,
        /// Display name, any Unicode (encoded for the header as needed).
        #[serde(default)]
        #[schema(example = "Alice Example")]
        name: Option<String>,
    },
}

/// One address or an array of them.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!(["bob@example.net", {"email": "carol@example.net", "name": "Carol"}]))]
pub enum Addresses {
    /// A single address.
    One(AddressInput),
    /// Several addresses (may be empty).
    Many(Vec<AddressInput>),
}

impl Default for Addresses {
    fn default() -> Self {
        Addresses::Many(Vec::new())
    }
}

impl Addresses {
    /// The addresses with their field paths: `to` for a single value,
    /// `to[0]`, `to[1]`, ... for an array.
    fn entries<'a>(&'a self, field: &'a str) -> Vec<(String, &'a AddressInput)> {
        match self {
            Addresses::One(a) => vec![(field.to_string(), a)],
            Addresses::Many(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("{field}[{i}]"), a))
                .collect(),
        }
    }
}

/// The body of `POST /v1/messages`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The sender: the From header and the envelope sender. It must be an
    /// address the account may send from. Needed: without it (or with an
    /// empty one) the answer is `422` `FailedOperation.MissingFrom`, as SMTP
    /// refuses a message without From.
    #[serde(default)]
    #[schema(example = json!("Example App <app@example.com>"))]
    pub from: Option<AddressInput>,
    /// Recipients shown in To. `to` or `cc` must name an address (`bcc`
    /// alone is not enough, as in SMTP): otherwise `422`
    /// `FailedOperation.MissingRecipient`.
    #[serde(default)]
    #[schema(example = json!(["bob@example.net"]))]
    pub to: Option<Addresses>,
    /// Recipients shown in Cc.
    #[serde(default)]
    pub cc: Option<Addresses>,
    /// Recipients who get the message without being shown in it.
    #[serde(default)]
    pub bcc: Option<Addresses>,
    /// Where replies should go (the Reply-To header; not a recipient).
    #[serde(default)]
    #[schema(example = json!("support@example.com"))]
    pub reply_to: Option<Addresses>,
    /// The subject, any Unicode, on one line (no control characters but
    /// tab). Needed: without it, or with only white space, the answer is
    /// `422` `FailedOperation.MissingSubject`, as in SMTP.
    #[serde(default)]
    #[schema(example = "Your order has shipped")]
    pub subject: Option<String>,
    /// The plain-text body. `text`, `html`, `attachments` or `inline` must
    /// have some content: otherwise `422`
    /// `FailedOperation.MissingEmailContent`.
    #[serde(default)]
    #[schema(example = "Hello Bob,\n\nyour order is on its way.")]
    pub text: Option<String>,
    /// The HTML body. With `text` too, the message carries both as
    /// alternatives.
    #[serde(default)]
    #[schema(example = "<p>Hello Bob,</p><p>your order is on its way.</p><img src=\"cid:logo\">")]
    pub html: Option<String>,
    /// Files attached to the message. How many and how large (decoded)
    /// is the account's limit, as in SMTP: `422`
    /// `FailedOperation.TooManyAttachments`, `.AttachmentTooLarge` or
    /// `.AttachmentsTooLarge`.
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    /// Parts the HTML shows by `cid:` reference (images, typically); they
    /// are not listed as attachments.
    #[serde(default)]
    pub inline: Vec<InlineInput>,
    /// Extra header fields, name to value, added as given. Fields Posthorn
    /// writes itself (From, To, Cc, Bcc, Reply-To, Subject, Date,
    /// Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding,
    /// Content-Disposition, Content-ID, Received, Return-Path,
    /// DKIM-Signature, X-Posthorn-Track) are refused, and so is a value
    /// with a line break.
    #[serde(default)]
    #[schema(example = json!({"List-Unsubscribe": "<https://example.com/u/123>", "X-Campaign": "spring"}))]
    pub headers: BTreeMap<String, String>,
    /// The label to count the message under, as `user#label` does for SMTP
    /// logins; it must exist for the account.
    #[serde(default)]
    #[schema(example = "newsletter")]
    pub label: Option<String>,
    /// A stored template of the account (its id `tpl_...` or its name,
    /// see `/v1/templates`) that supplies `subject`, `text` and `html`,
    /// which must then be left out (`422`
    /// `FailedOperation.TemplateWithContent`). An unknown one is `422`
    /// `FailedOperation.TemplateNotFound`. See docs/templates.md.
    #[serde(default)]
    #[schema(example = "welcome")]
    pub template: Option<String>,
    /// The template's variables: an object of names to strings, numbers
    /// or booleans, or that object as a JSON string (as Tencent's
    /// `TemplateData` is). A variable the template uses and this does not
    /// give is `422` `FailedOperation.MissingTemplateVariable`; anything
    /// else malformed is `400` `InvalidParameter.TemplateData`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"name": "Ann", "order": 1042}))]
    pub template_data: Option<serde_json::Value>,
    /// Open and click tracking for this message (`true`) or not
    /// (`false`), whatever the account's `tracking` setting; left out,
    /// the setting decides. Written as the `X-Posthorn-Track` header field
    /// SMTP clients use, which never leaves Posthorn. See docs/tracking.md.
    #[serde(default)]
    #[schema(example = true)]
    pub tracking: Option<bool>,
}

/// A file attached to the message.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    /// The file name the recipient sees, any Unicode, at most 255
    /// characters; no `/`, `\` or control characters.
    #[schema(example = "invoice-2024-001.pdf")]
    pub filename: String,
    /// MIME type as `type/subtype`, without parameters; default
    /// `application/octet-stream`.
    #[serde(default)]
    #[schema(example = "application/pdf")]
    pub content_type: Option<String>,
    /// The file's bytes in standard base64 (padding optional, line breaks
    /// allowed); anything else is `422`
    /// `FailedOperation.InvalidAttachmentContent`, as in SMTP.
    #[schema(example = "JVBERi0xLjQK")]
    pub content: String,
}

/// A part the HTML shows by `cid:` reference.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineInput {
    /// The id the HTML refers to as `cid:<content_id>`: 1 to 250 bytes,
    /// without angle brackets or white space, unique in the request.
    #[schema(example = "logo")]
    pub content_id: String,
    /// An optional file name for the part (the same rules as an
    /// attachment's).
    #[serde(default)]
    #[schema(example = "logo.png")]
    pub filename: Option<String>,
    /// MIME type as `type/subtype`, without parameters.
    #[schema(example = "image/png")]
    pub content_type: String,
    /// The part's bytes in standard base64 (padding optional, line breaks
    /// allowed).
    #[schema(example = "iVBORw0KGgo=")]
    pub content: String,
}

/// A request turned into what the submission path takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    /// The envelope sender: the bare `from` address.
    pub mail_from: String,
    /// to, cc and bcc in that order, each address once (compared
    /// case-insensitively, first spelling kept). Empty if there are none.
    pub rcpt_to: Vec<String>,
    /// The message: CRLF line endings, no line over 998 octets, 7-bit
    /// (non-ASCII text encoded), no Bcc, no Date, no Message-ID.
    pub content: Vec<u8>,
}

/// Why a request could not be composed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    /// One of [`COMPOSE_ERROR_CODES`], or of [`COMPOSE_BUSINESS_CODES`]
    /// (see [`ComposeError::is_business`]).
    pub code: &'static str,
    /// Where in the request: `from`, `to[2]`, `attachments[1].content`,
    /// `headers.X-Name`, ...
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl ComposeError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ComposeError {
    /// Whether `code` is a business error code (one of
    /// `posthorn_policy::ERROR_CODES`, answered as SMTP answers it) rather
    /// than one of the JSON form's own.
    pub fn is_business(&self) -> bool {
        posthorn_policy::ERROR_CODES
            .iter()
            .any(|c| c.code == self.code)
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.field, self.code, self.message)
    }
}

impl std::error::Error for ComposeError {}

/// The fields a business rule needs, checked in the policy's order (From,
/// Subject, a To or Cc address, some content) and refused with the code
/// `posthorn_policy::check` gives a message without them: the sender and
/// the subject.
pub fn required(req: &SendRequest) -> Result<(&AddressInput, &str), ComposeError> {
    let from = req.from.as_ref().filter(|f| match f {
        AddressInput::Text(text) => !text.trim().is_empty(),
        AddressInput::Object { email, .. } => !email.trim().is_empty(),
    });
    let Some(from) = from else {
        return Err(ComposeError::new(
            codes::MISSING_FROM,
            "from",
            "the request has no sender address",
        ));
    };
    let Some(subject) = req.subject.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(ComposeError::new(
            codes::MISSING_SUBJECT,
            "subject",
            "the request has no subject, or it is empty",
        ));
    };
    let names_one = |a: &Option<Addresses>| match a {
        None => false,
        Some(Addresses::One(_)) => true,
        Some(Addresses::Many(list)) => !list.is_empty(),
    };
    if !names_one(&req.to) && !names_one(&req.cc) {
        return Err(ComposeError::new(
            codes::MISSING_RECIPIENT,
            "to",
            "the request has no to or cc address (bcc alone is not enough)",
        ));
    }
    let blank = |t: &Option<String>| t.as_deref().is_none_or(|t| t.trim().is_empty());
    if blank(&req.text) && blank(&req.html) && req.attachments.is_empty() && req.inline.is_empty() {
        return Err(ComposeError::new(
            codes::MISSING_EMAIL_CONTENT,
            "text",
            "the request has no text, html, attachment or inline part, and no template (TemplateData and Simple cannot be both empty)",
        ));
    }
    Ok((from, subject))
}

/// Check `req` and build its envelope and message.
pub fn compose(req: &SendRequest) -> Result<Composed, ComposeError> {
    let (from, subject) = required(req)?;
    let from = mailbox(from, "from")?;
    let list = |value: &Option<Addresses>, field: &str| -> Result<Vec<Mailbox>, ComposeError> {
        match value {
            None => Ok(Vec::new()),
            Some(a) => a
                .entries(field)
                .into_iter()
                .map(|(path, input)| mailbox(input, &path))
                .collect(),
        }
    };
    let to = list(&req.to, "to")?;
    let cc = list(&req.cc, "cc")?;
    let bcc = list(&req.bcc, "bcc")?;
    let reply_to = list(&req.reply_to, "reply_to")?;

    if subject.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ComposeError::new(
            INVALID_SUBJECT,
            "subject",
            "the subject contains a line break or another control character",
        ));
    }
    let custom = custom_headers(&req.headers)?;
    let inline = inline_parts(&req.inline)?;
    let attachments = attachment_parts(&req.attachments)?;

    let mut seen = HashSet::new();
    let rcpt_to = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .filter(|m| seen.insert(m.email.to_ascii_lowercase()))
        .map(|m| m.email.clone())
        .collect();

    let mut out = Vec::with_capacity(estimate(req));
    write_field(&mut out, "From", &from.header());
    for (name, list) in [("To", &to), ("Cc", &cc), ("Reply-To", &reply_to)] {
        if !list.is_empty() {
            let value = Address::new_list(list.iter().map(Mailbox::header).collect());
            write_field(&mut out, name, &value);
        }
    }
    write_field(&mut out, "Subject", &Text::new(subject));
    for (name, value) in custom {
        write_field(&mut out, name, &value);
    }
    if let Some(on) = req.tracking {
        let value = if on { "on" } else { "off" };
        out.extend_from_slice(format!("{}: {value}\r\n", posthorn_policy::TRACK_FIELD).as_bytes());
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    body(req, inline, attachments).write_part(&mut out);
    // What mail-builder writes is CRLF already (every body is base64,
    // quoted-printable or 7bit text made CRLF by [`crlf`]); this is the
    // guarantee the store relies on.
    let content = posthorn_smtp::canonical_crlf(out);

    Ok(Composed {
        mail_from: from.email,
        rcpt_to,
        content,
    })
}

/// The MIME tree: text and HTML as alternatives, the HTML (or whatever body
/// there is) in multipart/related with the inline parts, and all of that in
/// multipart/mixed with the attachments.
fn body<'a>(
    req: &'a SendRequest,
    inline: Vec<MimePart<'a>>,
    attachments: Vec<MimePart<'a>>,
) -> MimePart<'a> {
    let text_part = |ctype: &'static str, value: &'a Option<String>| {
        value
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| MimePart::new(ctype, BodyPart::Text(crlf(t))))
    };
    let text = text_part("text/plain", &req.text);
    let html = text_part("text/html", &req.html);
    // RFC 2387: `type` names the root part's type.
    let related = |root: Option<MimePart<'a>>, root_type: &str, inline: Vec<MimePart<'a>>| {
        if inline.is_empty() {
            return root;
        }
        let root_type = match (&root, req.inline.first()) {
            (None, Some(first)) => first.content_type.to_ascii_lowercase(),
            _ => root_type.to_string(),
        };
        let mut parts = Vec::with_capacity(inline.len() + 1);
        parts.extend(root);
        parts.extend(inline);
        Some(MimePart::new(
            ContentType::new("multipart/related").attribute("type", root_type),
            parts,
        ))
    };
    let main = match (text, html) {
        (Some(text), Some(html)) => Some(MimePart::new(
            "multipart/alternative",
            vec![
                text,
                related(Some(html), "text/html", inline).unwrap_or_else(empty_text),
            ],
        )),
        (None, Some(html)) => related(Some(html), "text/html", inline),
        (text, None) => related(text, "text/plain", inline),
    };
    if attachments.is_empty() {
        return main.unwrap_or_else(empty_text);
    }
    let mut parts = Vec::with_capacity(attachments.len() + 1);
    parts.extend(main);
    parts.extend(attachments);
    MimePart::new("multipart/mixed", parts)
}

/// A message with no body at all still gets a (blank) text part; the policy
/// then says it has no content.
fn empty_text<'a>() -> MimePart<'a> {
    MimePart::new("text/plain", BodyPart::Text(Cow::Borrowed("")))
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &impl Header) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    value.write_header(out, name.len() + 2);
}

fn estimate(req: &SendRequest) -> usize {
    let text = req.text.as_ref().map_or(0, String::len) + req.html.as_ref().map_or(0, String::len);
    let files: usize = req
        .attachments
        .iter()
        .map(|a| a.content.len())
        .chain(req.inline.iter().map(|i| i.content.len()))
        .sum();
    // A first guess (encoding grows text by a third or so, base64 line
    // breaks add 2 in 76); the buffer grows if it is short.
    1024 + text * 3 / 2 + files + files / 38 + 256 * (req.attachments.len() + req.inline.len())
}

// ---------------------------------------------------------------------------
// Addresses

/// A checked address and its display name.
struct Mailbox {
    name: Option<String>,
    email: String,
}

impl Mailbox {
    fn header(&self) -> Address<'_> {
        Address::new_address(self.name.as_deref(), self.email.as_str())
    }
}

fn mailbox(input: &AddressInput, field: &str) -> Result<Mailbox, ComposeError> {
    let bad = |why: String| ComposeError::new(INVALID_ADDRESS, field, why);
    let (name, email) = match input {
        AddressInput::Text(text) => split_name_addr(text).map_err(|why| bad(why.to_string()))?,
        AddressInput::Object { email, name } => (
            name.as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            email.trim(),
        ),
    };
    if let Some(name) = &name {
        if name.chars().any(char::is_control) {
            return Err(bad(
                "the display name contains a line break or another control character".into(),
            ));
        }
    }
    validate_address(email).map_err(|why| bad(format!("{email:?} is not an address: {why}")))?;
    Ok(Mailbox {
        name,
        email: email.to_string(),
    })
}

/// `Name <addr>`, `"Quoted, Name" <addr>`, `<addr>` or `addr`.
fn split_name_addr(text: &str) -> Result<(Option<String>, &str), &'static str> {
    let text = text.trim();
    let Some(open) = text.rfind('<') else {
        return Ok((None, text));
    };
    let Some(inner) = text[open + 1..].strip_suffix('>') else {
        return Err("an address in angle brackets must end with '>'");
    };
    let name = text[..open].trim();
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => unquote(quoted),
        None => name.to_string(),
    };
    Ok(((!name.is_empty()).then_some(name), inner.trim()))
}

/// The content of a quoted string: `\x` is `x`.
fn unquote(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `email` is a bare address [`compose`] accepts, and if not, why:
/// `local@domain` of at most 254 characters, with a dot-atom local part (no
/// quoted local parts) and a host name or `[address literal]`. ASCII only:
/// the HTTP API does not send SMTPUTF8 messages.
pub fn validate_address(email: &str) -> Result<(), String> {
    let address = posthorn_types::Address::parse(email).map_err(|e| e.to_string())?;
    if !email.is_ascii() {
        return Err("internationalised (non-ASCII) addresses are not supported".into());
    }
    if !address.is_dot_atom() {
        return Err("the part before '@' contains a character that needs quoting".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Headers

fn custom_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(&str, HeaderType<'_>)>, ComposeError> {
    headers
        .iter()
        .map(|(name, value)| {
            let bad = |why: &str| ComposeError::new(INVALID_HEADER, format!("headers.{name}"), why);
            if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                return Err(bad(
                    "a header name is printable ASCII without spaces or ':'",
                ));
            }
            if RESERVED_HEADERS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
            {
                return Err(bad(
                    "Posthorn writes this header itself; use the request's own field",
                ));
            }
            if value.contains(['\r', '\n']) {
                return Err(bad("the value contains a line break"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad("the value contains a control character"));
            }
            // Folding happens only at white space, so the longest word with
            // the name in front of it bounds the longest line.
            let longest = value.split([' ', '\t']).map(str::len).max().unwrap_or(0);
            if value.is_ascii() && name.len() + 2 + longest > MAX_LINE {
                return Err(bad(
                    "the value has a word too long for one line (998 octets)",
                ));
            }
            // ASCII goes in verbatim (folded at white space); anything else
            // as RFC 2047 encoded words, so the message stays 7-bit.
            let value: HeaderType<'_> = if value.is_ascii() {
                Raw::new(value.as_str()).into()
            } else {
                Text::new(value.as_str()).into()
            };
            Ok((name.as_str(), value))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Attachments and inline parts

fn attachment_parts(list: &[AttachmentInput]) -> Result<Vec<MimePart<'_>>, ComposeError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let field = |f: &str| format!("attachments[{i}].{f}");
            check_filename(&a.filename)
                .map_err(|why| ComposeError::new(INVALID_FILENAME, field("filename"), why))?;
            let ctype = match &a.content_type {
                Some(ct) => content_type(ct).map_err(|why| {
                    ComposeError::new(INVALID_CONTENT_TYPE, field("content_type"), why)
                })?,
                None => "application/octet-stream".to_string(),
            };
            let bytes = decode_base64(&a.content).map_err(|why| {
                ComposeError::new(codes::INVALID_ATTACHMENT_CONTENT, field("content"), why)
            })?;
            Ok(MimePart::new(
                ContentType::new(ctype).attribute("name", a.filename.as_str()),
                base64_body(&bytes),
            )
            .attachment(a.filename.as_str())
            .transfer_encoding("base64"))
        })
        .collect()
}

fn inline_parts(list: &[InlineInput]) -> Result<Vec<MimePart<'_>>, ComposeError> {
    let mut ids = HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let field = |f: &str| format!("inline[{i}].{f}");
            let id = p.content_id.as_str();
            if id.is_empty()
                || id
                    .chars()
                    .any(|c| c == '<' || c == '>' || c.is_whitespace() || c.is_control())
                || id.len() > MAX_CONTENT_ID
            {
                return Err(ComposeError::new(
                    INVALID_CONTENT_ID,
                    field("content_id"),
                    "a content id is a token of 1 to 250 bytes without angle brackets or white space (the HTML refers to it as cid:ID)",
                ));
            }
            if !ids.insert(id) {
                return Err(ComposeError::new(
                    INVALID_CONTENT_ID,
                    field("content_id"),
                    format!("the content id {id:?} is used by another inline part"),
                ));
            }
            let mut disposition = ContentType::new("inline");
            if let Some(name) = &p.filename {
                check_filename(name).map_err(|why| {
                    ComposeError::new(INVALID_FILENAME, field("filename"), why)
                })?;
                disposition = disposition.attribute("filename", name.as_str());
            }
            let ctype = content_type(&p.content_type).map_err(|why| {
                ComposeError::new(INVALID_CONTENT_TYPE, field("content_type"), why)
            })?;
            let bytes = decode_base64(&p.content).map_err(|why| {
                ComposeError::new(INVALID_BASE64, field("content"), why)
            })?;
            Ok(MimePart::new(ctype, base64_body(&bytes))
                .header("Content-Disposition", disposition)
                .cid(id)
                .transfer_encoding("base64"))
        })
        .collect()
}

fn check_filename(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the file name is empty");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err("the file name contains '/', '\\' or a control character");
    }
    // An ASCII name is written as one quoted string, never split: this keeps
    // its header line under 998 octets (and it is what file systems take).
    if name.chars().count() > MAX_FILENAME {
        return Err("the file name is longer than 255 characters");
    }
    Ok(())
}

/// `type/subtype` in RFC 2045 token syntax, without parameters; lowercased.
/// A multipart type is refused: an attachment is one part.
fn content_type(ct: &str) -> Result<String, &'static str> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| (33..=126).contains(&b) && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    let ok = ct
        .split_once('/')
        .is_some_and(|(t, sub)| token(t) && token(sub));
    if !ok {
        return Err("a content type is type/subtype, e.g. application/pdf, without parameters");
    }
    let ct = ct.to_ascii_lowercase();
    if ct.starts_with("multipart/") {
        return Err("a multipart type cannot be the type of one part");
    }
    Ok(ct)
}

/// Standard alphabet, padding optional, CR and LF ignored.
fn decode_base64(content: &str) -> Result<Vec<u8>, String> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let compact: Cow<'_, str> = if content.contains(['\r', '\n']) {
        Cow::Owned(content.replace(['\r', '\n'], ""))
    } else {
        Cow::Borrowed(content)
    };
    ENGINE
        .decode(compact.as_bytes())
        .map_err(|e| format!("the content is not base64: {e}"))
}

/// The part's body, base64 in lines of 76, written as given (the part
/// carries its own Content-Transfer-Encoding, so mail-builder does not look
/// at the bytes: a text/* attachment keeps its exact bytes, bare CRs
/// included).
fn base64_body(bytes: &[u8]) -> BodyPart<'static> {
    let mut encoded = Base64Encoder::new()
        .wrap_lines()
        .encode(bytes)
        .unwrap_or_default();
    // The CRLF before the boundary belongs to the boundary.
    if encoded.ends_with(b"\r\n") {
        encoded.truncate(encoded.len() - 2);
    }
    BodyPart::Binary(Cow::Owned(encoded))
}

// ---------------------------------------------------------------------------
// Line endings

/// Text with every line break (CRLF, bare CR, bare LF) as CRLF (the one
/// canonicaliser, `posthorn_smtp::crlf_line_breaks`; no CRLF added at the
/// end). mail-builder turns bare LFs into CRLF but would let a bare CR
/// through in 7bit.
fn crlf(text: &str) -> Cow<'_, str> {
    match posthorn_smtp::crlf_line_breaks(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(fixed) => {
            Cow::Owned(String::from_utf8(fixed).expect("only line breaks were changed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};
    use posthorn_policy::{check, Facts, PolicyLimits};

    fn req(json: serde_json::Value) -> SendRequest {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "from": "App <app@example.com>",
            "to": "bob@example.net",
            "subject": "Hi",
            "text": "Hello Bob"
        })
    }

    fn with(extra: serde_json::Value) -> SendRequest {
        let mut v = base();
        for (k, val) in extra.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        req(v)
    }

    /// Compose, check the wire form and run the policy.
    fn ok(r: &SendRequest) -> (Composed, Facts) {
        let c = compose(r).unwrap();
        assert_wire_form(&c.content);
        let facts = check(&c.content, &c.mail_from, &PolicyLimits::default())
            .unwrap_or_else(|e| panic!("{e:?}\n{}", String::from_utf8_lossy(&c.content)));
        (c, facts)
    }

    fn assert_wire_form(content: &[u8]) {
        assert!(content.ends_with(b"\r\n"));
        assert!(content.is_ascii(), "not 7-bit");
        for (i, &b) in content.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(content[i - 1], b'\r', "bare LF at {i}");
            }
            if b == b'\r' {
                assert_eq!(content.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        for line in content.split(|&b| b == b'\n') {
            assert!(
                line.len() <= MAX_LINE + 1,
                "line of {} octets: {}",
                line.len(),
                String::from_utf8_lossy(&line[..100])
            );
        }
        let text = String::from_utf8_lossy(content);
        let head = text.split("\r\n\r\n").next().unwrap();
        for name in ["Date:", "Message-ID:", "Bcc:"] {
            assert!(
                !head.lines().any(|l| l.starts_with(name)),
                "{name} in {head}"
            );
        }
    }

    fn err(r: &SendRequest) -> (&'static str, String) {
        let e = compose(r).unwrap_err();
        (e.code, e.field)
    }

    fn top_type(content: &[u8]) -> String {
        let m = MessageParser::default().parse(content).unwrap();
        let ct = m.root_part().content_type().unwrap();
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
    }

    #[test]
    fn text_only_is_text_plain() {
        let (c, facts) = ok(&with(serde_json::json!({"text": "Hello\nBob\r\nbye\rnow"})));
        assert_eq!(top_type(&c.content), "text/plain");
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(
            s.contains("Content-Type: text/plain; charset=\"utf-8\"\r\n"),
            "{s}"
        );
        assert!(
            s.starts_with("From: \"App\" <app@example.com>\r\n")
                || s.starts_with("From: App <app@example.com>\r\n"),
            "{s}"
        );
        assert!(s.contains("\r\nMIME-Version: 1.0\r\n"));
        let m = MessageParser::default().parse(&c.content).unwrap();
        assert_eq!(
            m.body_text(0).unwrap().trim_end(),
            "Hello\r\nBob\r\nbye\r\nnow"
        );
        assert_eq!(c.mail_from, "app@example.com");
        assert_eq!(c.rcpt_to, ["bob@example.net"]);
        assert_eq!(facts.subject, "Hi");
        assert_eq!(facts.from, "app@example.com");
        assert_eq!(facts.from_name.as_deref(), Some("App"));
        assert_eq!(facts.to, ["bob@example.net"]);
        assert!(!facts.has_date);
        assert_eq!(facts.message_id, None);
        assert!(facts.attachments.is_empty());
    }

    #[test]
    fn html_only_is_text_html() {
        let (c, _) = ok(&with(
            serde_json::json!({"text": null, "html": "<p>Hello</p>"}),
        ));
        assert_eq!(top_type(&c.content), "text/html");
        let m = MessageParser::default().parse(&c.content).unwrap();
        assert!(m.body_html(0).unwrap().contains("<p>Hello</p>"));
    }

    #[test]
    fn text_and_html_are_alternatives() {
        let (c, _) = ok(&with(serde_json::json!({"html": "<p>Hello</p>"})));
        assert_eq!(top_type(&c.content), "multipart/alternative");
        let m = MessageParser::default().parse(&c.content).unwrap();
        assert_eq!(m.body_text(0).unwrap().trim_end(), "Hello Bob");
        assert!(m.body_html(0).unwrap().contains("<p>Hello</p>"));
    }

    const PNG: &str = "iVBORw0KGgo="; // 8 bytes

    #[test]
    fn inline_parts_go_with_the_html_in_related() {
        let (c, facts) = ok(&with(serde_json::json!({
            "html": "<p>Hi</p><img src=\"cid:logo\">",
            "inline": [{"content_id": "logo", "filename": "logo.png", "content_type": "image/png", "content": PNG}]
        })));
        assert!(facts.attachments.is_empty(), "{:?}", facts.attachments);
        assert_eq!(top_type(&c.content), "multipart/alternative");
        let m = MessageParser::default().parse(&c.content).unwrap();
        let related = m
            .parts
            .iter()
            .find(|p| p.is_content_type("multipart", "related"))
            .expect("a multipart/related part");
        let PartType::Multipart(children) = &related.body else {
            panic!()
        };
        let kids: Vec<_> = children.iter().map(|&i| &m.parts[i as usize]).collect();
        assert!(kids[0].is_content_type("text", "html"));
        assert_eq!(kids[1].content_id(), Some("logo"));
        assert!(kids[1].is_content_type("image", "png"));
        assert_eq!(
            kids[1].contents(),
            &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]
        );

        // HTML alone with an image: related at the top.
        let (c, facts) = ok(&with(serde_json::json!({
            "text": null,
            "html": "<img src=\"cid:logo\">",
            "inline": [{"content_id": "logo", "content_type": "image/png", "content": PNG}]
        })));
        assert_eq!(top_type(&c.content), "multipart/related");
        assert!(facts.attachments.is_empty());
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(s.contains("multipart/related; type=\"text/html\""), "{s}");

        // Inline parts with only text, or with no body: still related, the
        // root's type named.
        let (c, _) = ok(&with(serde_json::json!({
            "inline": [{"content_id": "logo", "content_type": "image/png", "content": PNG}]
        })));
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(s.contains("multipart/related; type=\"text/plain\""), "{s}");
        let (c, _) = ok(&with(serde_json::json!({
            "text": null,
            "inline": [{"content_id": "logo", "content_type": "IMAGE/png", "content": PNG}]
        })));
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(s.contains("multipart/related; type=\"image/png\""), "{s}");
    }

    #[test]
    fn attachments_are_mixed_in_with_their_decoded_size() {
        let bin: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let text_file = b"line one\nline two\rbare cr\r\n".to_vec();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        // Line-wrapped with CRLF and without padding: both tolerated.
        let wrapped: String = b64(&bin)
            .as_bytes()
            .chunks(60)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let (c, facts) = ok(&with(serde_json::json!({
            "html": "<p>see attached</p>",
            "inline": [{"content_id": "logo", "content_type": "image/png", "content": PNG}],
            "attachments": [
                {"filename": "data.bin", "content": wrapped},
                {"filename": "notes.txt", "content_type": "text/plain", "content": b64(&text_file).trim_end_matches('=')},
                {"filename": "Jahresübersicht, 2024.pdf", "content_type": "Application/PDF", "content": "JVBERi0xLjQK"}
            ]
        })));
        assert_eq!(top_type(&c.content), "multipart/mixed");
        let got: Vec<_> = facts
            .attachments
            .iter()
            .map(|a| {
                (
                    a.filename.as_deref().unwrap(),
                    a.content_type.as_str(),
                    a.size,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("data.bin", "application/octet-stream", 10_000),
                ("notes.txt", "text/plain", text_file.len()),
                ("Jahresübersicht, 2024.pdf", "application/pdf", 9),
            ]
        );
        // The bytes come back exactly, bare CR and LF included.
        let m = MessageParser::default().parse(&c.content).unwrap();
        let file = |name: &str| {
            m.attachments()
                .find(|a| a.attachment_name() == Some(name))
                .unwrap()
                .contents()
        };
        assert!(file("data.bin") == bin.as_slice());
        assert!(file("notes.txt") == text_file.as_slice());

        // Attachments alone, no body.
        let (c, facts) = ok(&with(serde_json::json!({
            "text": null,
            "attachments": [{"filename": "a.bin", "content": "AAECAwQ="}]
        })));
        assert_eq!(top_type(&c.content), "multipart/mixed");
        assert_eq!(facts.attachments[0].size, 5);
    }

    #[test]
    fn non_ascii_subject_and_names_round_trip() {
        let subject = "Grüße aus Köln — 你好, ça va? 🎉";
        let (c, facts) = ok(&with(serde_json::json!({
            "from": {"email": "app@example.com", "name": "Jürgen Müller, GmbH"},
            "to": ["\"Zoë \\\"Z\\\" Ångström\" <zoe@example.net>", "Иван <ivan@example.net>"],
            "subject": subject,
            "text": "Straße",
            "headers": {"X-Note": "héllo wörld"}
        })));
        assert_eq!(facts.subject, subject);
        assert_eq!(facts.from_name.as_deref(), Some("Jürgen Müller, GmbH"));
        let m = MessageParser::default().parse(&c.content).unwrap();
        let to = m.to().unwrap();
        let names: Vec<_> = to.iter().map(|a| a.name().unwrap()).collect();
        assert_eq!(names, ["Zoë \"Z\" Ångström", "Иван"]);
        // mail-parser leaves unknown fields undecoded: decode it as a Subject.
        let raw = m.header_raw("X-Note").unwrap();
        assert!(raw.is_ascii(), "{raw}");
        let wrapped = format!("Subject:{raw}\r\n");
        let decoded = MessageParser::default().parse(wrapped.as_bytes()).unwrap();
        assert_eq!(decoded.subject(), Some("héllo wörld"));
        assert_eq!(m.body_text(0).unwrap().trim_end(), "Straße");
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let (c, facts) = ok(&with(serde_json::json!({
            "cc": {"email": "carol@example.net"},
            "bcc": ["secret@example.org", "Hidden <hidden@example.org>"],
            "reply_to": "support@example.com"
        })));
        assert_eq!(
            c.rcpt_to,
            [
                "bob@example.net",
                "carol@example.net",
                "secret@example.org",
                "hidden@example.org"
            ]
        );
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(!s.contains("secret@"), "{s}");
        assert!(!s.contains("hidden"), "{s}");
        assert!(facts.bcc.is_empty());
        assert_eq!(facts.cc, ["carol@example.net"]);
        let m = MessageParser::default().parse(&c.content).unwrap();
        assert_eq!(
            m.reply_to().unwrap().first().unwrap().address(),
            Some("support@example.com")
        );
        // Reply-To is not a recipient.
        assert!(!c.rcpt_to.iter().any(|r| r.starts_with("support")));
    }

    #[test]
    fn recipients_are_deduplicated_case_insensitively() {
        let c = compose(&with(serde_json::json!({
            "to": ["Bob@Example.NET", "alice@example.net", "bob@example.net"],
            "cc": "ALICE@example.net",
            "bcc": ["bob@EXAMPLE.net", "dave@example.net"]
        })))
        .unwrap();
        assert_eq!(
            c.rcpt_to,
            ["Bob@Example.NET", "alice@example.net", "dave@example.net"]
        );
    }

    #[test]
    fn missing_fields_get_the_policy_codes() {
        use posthorn_policy::codes::*;
        let cases = [
            (serde_json::json!({"from": null}), MISSING_FROM, "from"),
            (serde_json::json!({"from": ""}), MISSING_FROM, "from"),
            (serde_json::json!({"from": "  "}), MISSING_FROM, "from"),
            (
                serde_json::json!({"from": {"email": "", "name": "N"}}),
                MISSING_FROM,
                "from",
            ),
            (
                serde_json::json!({"subject": null}),
                MISSING_SUBJECT,
                "subject",
            ),
            (
                serde_json::json!({"subject": ""}),
                MISSING_SUBJECT,
                "subject",
            ),
            (
                serde_json::json!({"subject": " \t "}),
                MISSING_SUBJECT,
                "subject",
            ),
            (serde_json::json!({"to": null}), MISSING_RECIPIENT, "to"),
            (serde_json::json!({"to": []}), MISSING_RECIPIENT, "to"),
            (
                serde_json::json!({"to": [], "cc": [], "bcc": "b@example.net"}),
                MISSING_RECIPIENT,
                "to",
            ),
            (
                serde_json::json!({"text": null}),
                MISSING_EMAIL_CONTENT,
                "text",
            ),
            (
                serde_json::json!({"text": " \r\n", "html": ""}),
                MISSING_EMAIL_CONTENT,
                "text",
            ),
            // The policy's order: From, Subject, recipients, content.
            (
                serde_json::json!({"from": null, "subject": null, "to": null, "text": null}),
                MISSING_FROM,
                "from",
            ),
            (
                serde_json::json!({"subject": null, "to": null, "text": null}),
                MISSING_SUBJECT,
                "subject",
            ),
            (
                serde_json::json!({"to": null, "text": null}),
                MISSING_RECIPIENT,
                "to",
            ),
        ];
        for (extra, code, field) in cases {
            let e = compose(&with(extra.clone())).unwrap_err();
            assert_eq!((e.code, e.field.as_str()), (code, field), "{extra}");
            assert!(e.is_business(), "{extra}");
        }
        // Cc alone is a recipient; so is content in any one place.
        ok(&with(
            serde_json::json!({"to": null, "cc": "c@example.net"}),
        ));
        ok(&with(serde_json::json!({"text": null, "html": "<p>x</p>"})));
        ok(&with(serde_json::json!({"text": null,
            "attachments": [{"filename": "a.bin", "content": "AAEC"}]})));
    }

    #[test]
    fn missing_fields_get_the_code_smtp_gets_for_the_same_message() {
        // The message SMTP would carry without the field: the policy says
        // the same code compose says.
        let policy = |raw: &str| {
            check(raw.as_bytes(), "app@example.com", &PolicyLimits::default())
                .unwrap_err()
                .code
        };
        let head = |from: &str, subject: &str, to: &str| {
            format!("{from}{subject}{to}MIME-Version: 1.0\r\n")
        };
        let from = "From: app@example.com\r\n";
        let subject = "Subject: Hi\r\n";
        let to = "To: bob@example.net\r\n";
        for (extra, raw) in [
            (
                serde_json::json!({"from": null}),
                format!("{}\r\nHello\r\n", head("", subject, to)),
            ),
            (
                serde_json::json!({"subject": ""}),
                format!("{}\r\nHello\r\n", head(from, "Subject: \r\n", to)),
            ),
            (
                serde_json::json!({"to": null, "bcc": "b@example.net"}),
                format!(
                    "{}\r\nHello\r\n",
                    head(from, subject, "Bcc: b@example.net\r\n")
                ),
            ),
            (
                serde_json::json!({"text": null}),
                format!("{}\r\n", head(from, subject, to)),
            ),
        ] {
            assert_eq!(
                compose(&with(extra.clone())).unwrap_err().code,
                policy(&raw),
                "{extra}"
            );
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_their_field() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a@b@example.com",
            "Name <a@example.com",
            "<>",
            "a@example..com",
            "a\r\n@example.com",
            "\"q l\"@example.com",
            "ünï@example.com",
        ] {
            let (code, field) = err(&with(serde_json::json!({"from": bad})));
            assert_eq!((code, field.as_str()), (INVALID_ADDRESS, "from"), "{bad:?}");
        }
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        assert_eq!(
            err(&with(serde_json::json!({"from": long}))).0,
            INVALID_ADDRESS
        );
        assert_eq!(
            err(&with(
                serde_json::json!({"to": ["ok@example.net", "ok2@example.net", "nope"]})
            )),
            (INVALID_ADDRESS, "to[2]".into())
        );
        assert_eq!(
            err(&with(serde_json::json!({"to": "nope"}))),
            (INVALID_ADDRESS, "to".into())
        );
        assert_eq!(
            err(&with(serde_json::json!({"cc": [{"email": "x y@z"}]}))),
            (INVALID_ADDRESS, "cc[0]".into())
        );
        assert_eq!(
            err(&with(serde_json::json!({"bcc": ["a@b.c", "a@"]}))),
            (INVALID_ADDRESS, "bcc[1]".into())
        );
        assert_eq!(
            err(&with(serde_json::json!({"reply_to": ["<a@b"]}))),
            (INVALID_ADDRESS, "reply_to[0]".into())
        );
        assert_eq!(
            err(&with(
                serde_json::json!({"from": {"email": "a@b.c", "name": "Evil\r\nBcc: x@y"}})
            )),
            (INVALID_ADDRESS, "from".into())
        );
        // The accepted forms.
        for good in [
            "a@example.com",
            "<a@example.com>",
            "A <a@example.com>",
            "\"A, B\" <a@example.com>",
            "  a.b+tag@sub.example.com  ",
            "a@[192.0.2.1]",
        ] {
            compose(&with(serde_json::json!({"to": good})))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn bad_base64_is_refused_with_its_field() {
        // An attachment's is the policy's code, as over SMTP; an inline
        // part's the JSON form's own.
        let attachment = posthorn_policy::codes::INVALID_ATTACHMENT_CONTENT;
        let e = err(&with(serde_json::json!({"attachments": [
            {"filename": "a.bin", "content": "AAECAwQ="},
            {"filename": "b.bin", "content": "AAEC!wQ="}
        ]})));
        assert_eq!(e, (attachment, "attachments[1].content".into()));
        for bad in ["AAECA", "AA=ECAwQ", "AAEC AwQ=", "AAECAwQ-"] {
            let e = err(&with(
                serde_json::json!({"attachments": [{"filename": "a", "content": bad}]}),
            ));
            assert_eq!(e, (attachment, "attachments[0].content".into()), "{bad}");
        }
        let e = err(&with(serde_json::json!({"html": "x", "inline": [
            {"content_id": "a", "content_type": "image/png", "content": "***"}
        ]})));
        assert_eq!(e, (INVALID_BASE64, "inline[0].content".into()));
    }

    #[test]
    fn bad_headers_are_refused_with_their_field() {
        for (name, value) in [
            ("X-Foo", "a\r\nBcc: evil@x"),
            ("X-Foo", "a\nb"),
            ("X-Foo", "a\rb"),
            ("X-Foo", "a\u{0}b"),
            ("X Foo", "v"),
            ("X:Foo", "v"),
            ("X-Föo", "v"),
            ("bcc", "evil@x"),
            ("Message-Id", "<x@y>"),
            ("dkim-signature", "v=1"),
            ("Content-Type", "text/plain"),
            ("Return-Path", "<x@y>"),
        ] {
            let mut headers = serde_json::Map::new();
            headers.insert(name.into(), value.into());
            let e = err(&with(serde_json::json!({ "headers": headers })));
            assert_eq!(
                e,
                (INVALID_HEADER, format!("headers.{name}")),
                "{name}: {value:?}"
            );
        }
        let e = err(&with(
            serde_json::json!({"headers": {"X-Long": "x".repeat(1000)}}),
        ));
        assert_eq!(e, (INVALID_HEADER, "headers.X-Long".into()));
        let e = err(&with(serde_json::json!({"headers": {"": "v"}})));
        assert_eq!(e, (INVALID_HEADER, "headers.".into()));
    }

    #[test]
    fn header_injection_is_refused_and_good_headers_go_in_verbatim() {
        let e = compose(&with(
            serde_json::json!({"headers": {"X-Foo": "a\r\nBcc: evil@x"}}),
        ))
        .unwrap_err();
        assert_eq!(e.code, INVALID_HEADER);
        assert_eq!(e.field, "headers.X-Foo");

        let unsubscribe =
            "<https://example.com/unsubscribe?u=1&t=2>, <mailto:unsub@example.com?subject=stop>";
        let long = (0..40)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (c, _) = ok(&with(serde_json::json!({"headers": {
            "List-Unsubscribe": unsubscribe,
            "X-Campaign": "=?not-decoded?= spring",
            "X-Long": long,
        }})));
        let s = String::from_utf8(c.content.clone()).unwrap();
        assert!(
            s.contains(&format!("List-Unsubscribe: {unsubscribe}\r\n")) || {
                let m = MessageParser::default().parse(&c.content).unwrap();
                m.header_raw("List-Unsubscribe")
                    .unwrap()
                    .replace("\r\n", "")
                    .trim()
                    == unsubscribe
            },
            "{s}"
        );
        assert!(s.contains("X-Campaign: =?not-decoded?= spring\r\n"), "{s}");
        let m = MessageParser::default().parse(&c.content).unwrap();
        let unfolded = m.header_raw("X-Long").unwrap().replace("\r\n", "");
        assert_eq!(unfolded.trim(), long);
    }

    #[test]
    fn subject_with_a_line_break_is_refused() {
        for s in ["Hi\r\nBcc: evil@x", "a\nb", "a\rb", "a\u{0}b"] {
            assert_eq!(
                err(&with(serde_json::json!({"subject": s}))),
                (INVALID_SUBJECT, "subject".into())
            );
        }
    }

    #[test]
    fn bad_content_ids_filenames_and_types_are_refused() {
        let inline = |id: &str| {
            with(serde_json::json!({"html": "x", "inline": [
                {"content_id": "ok", "content_type": "image/png", "content": PNG},
                {"content_id": id, "content_type": "image/png", "content": PNG}
            ]}))
        };
        let long_id = "i".repeat(251);
        for id in ["", "<logo>", "lo go", "logo\r\n", "ok", &long_id] {
            assert_eq!(
                err(&inline(id)),
                (INVALID_CONTENT_ID, "inline[1].content_id".into()),
                "{id:?}"
            );
        }
        let file = |name: &str| {
            with(serde_json::json!({"attachments": [{"filename": name, "content": ""}]}))
        };
        let long_name = "f".repeat(256);
        for name in ["", "../etc/passwd", "a\\b", "a\r\nb", "a\u{0}b", &long_name] {
            assert_eq!(
                err(&file(name)),
                (INVALID_FILENAME, "attachments[0].filename".into()),
                "{name:?}"
            );
        }
        let e = err(&with(serde_json::json!({"html": "x", "inline": [
            {"content_id": "a", "filename": "x/y.png", "content_type": "image/png", "content": PNG}
        ]})));
        assert_eq!(e, (INVALID_FILENAME, "inline[0].filename".into()));

        for ct in [
            "pdf",
            "application/",
            "/pdf",
            "text/plain; charset=utf-8",
            "a b/c",
            "a/b/c",
            "multipart/mixed",
            "text/pl\u{e4}in",
        ] {
            let e = err(&with(serde_json::json!({"attachments": [
                {"filename": "a", "content_type": ct, "content": ""}
            ]})));
            assert_eq!(
                e,
                (INVALID_CONTENT_TYPE, "attachments[0].content_type".into()),
                "{ct:?}"
            );
        }
        let e = err(&with(serde_json::json!({"html": "x", "inline": [
            {"content_id": "a", "content_type": "image", "content": PNG}
        ]})));
        assert_eq!(e, (INVALID_CONTENT_TYPE, "inline[0].content_type".into()));
        // Valid tokens pass, including vendor types.
        compose(&with(serde_json::json!({"attachments": [
            {"filename": "a", "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "content": ""}
        ]})))
        .unwrap();
    }

    #[test]
    fn serde_forms() {
        // The three address forms, single and array.
        let r = req(serde_json::json!({
            "from": {"email": "app@example.com"},
            "to": "a@example.net",
            "cc": ["B <b@example.net>", {"email": "c@example.net", "name": "C"}],
            "bcc": {"email": "d@example.net", "name": null},
            "subject": "s",
            "text": "t"
        }));
        assert!(matches!(
            r.from,
            Some(AddressInput::Object { name: None, .. })
        ));
        assert!(matches!(r.to, Some(Addresses::One(AddressInput::Text(_)))));
        assert!(matches!(&r.cc, Some(Addresses::Many(v)) if v.len() == 2));
        assert!(matches!(
            r.bcc,
            Some(Addresses::One(AddressInput::Object { .. }))
        ));
        let c = compose(&r).unwrap();
        assert_eq!(
            c.rcpt_to,
            [
                "a@example.net",
                "b@example.net",
                "c@example.net",
                "d@example.net"
            ]
        );
        assert!(r.attachments.is_empty() && r.inline.is_empty() && r.headers.is_empty());

        // Unknown fields are refused, at the top and inside.
        let unknown = |v: serde_json::Value| serde_json::from_value::<SendRequest>(v).is_err();
        assert!(unknown(
            serde_json::json!({"from": "a@b.c", "subject": "s", "tags": []})
        ));
        assert!(unknown(serde_json::json!({"from": "a@b.c", "subject": "s",
            "attachments": [{"filename": "a", "content": "", "size": 1}]})));
        assert!(unknown(
            serde_json::json!({"from": {"email": "a@b.c", "nmae": "x"}, "subject": "s"})
        ));
        // Fields a business rule governs may be missing for serde (compose
        // refuses them with the policy's code); the JSON form's own may not.
        assert!(!unknown(serde_json::json!({"from": "a@b.c"})));
        assert!(!unknown(serde_json::json!({"subject": "s"})));
        assert!(!unknown(serde_json::json!({})));
        assert!(unknown(serde_json::json!({"from": "a@b.c", "subject": "s",
            "inline": [{"content_id": "a", "content": ""}]})));
        assert!(unknown(serde_json::json!({"from": "a@b.c", "subject": "s",
            "attachments": [{"filename": "a"}]})));
        // A wrong type is still serde's.
        for wrong in [
            serde_json::json!({"to": 5}),
            serde_json::json!({"subject": 5}),
            serde_json::json!({"from": ["a@b.c"]}),
            serde_json::json!({"text": false}),
        ] {
            assert!(unknown(wrong.clone()), "{wrong}");
        }
    }

    #[test]
    fn long_lines_are_encoded() {
        let line = "x".repeat(5_000);
        let html = format!("<p>{}</p>", "é".repeat(3_000));
        let (c, _) = ok(&with(serde_json::json!({
            "text": line,
            "html": html,
            "subject": "s".repeat(2_000),
            "from": {"email": "app@example.com", "name": "N".repeat(1_200)},
            "to": (0..60).map(|i| format!("user{i}@example.net")).collect::<Vec<_>>(),
            "inline": [{"content_id": "i".repeat(250), "content_type": "image/png", "content": PNG}],
            "attachments": [
                {"filename": format!("{}.txt", "f".repeat(251)), "content": "AAAA"},
                {"filename": "\"".repeat(255), "content": "AAAA"},
                {"filename": "ü".repeat(255), "content": "AAAA"}
            ]
        })));
        let m = MessageParser::default().parse(&c.content).unwrap();
        assert_eq!(m.body_text(0).unwrap().trim_end(), line);
        assert_eq!(m.body_html(0).unwrap().trim_end(), html);
        assert_eq!(m.subject().unwrap(), "s".repeat(2_000));
        assert_eq!(m.to().unwrap().iter().count(), 60);
        let longest = c.content.split(|&b| b == b'\n').map(<[u8]>::len).max();
        assert!(longest <= Some(MAX_LINE + 1), "{longest:?}");
        let facts = check(&c.content, &c.mail_from, &PolicyLimits::default()).unwrap();
        assert_eq!(facts.attachments[2].filename, Some("ü".repeat(255)));
    }

    #[test]
    fn error_codes_are_distinct_and_namespaced() {
        let set: HashSet<_> = COMPOSE_ERROR_CODES.iter().collect();
        assert_eq!(set.len(), COMPOSE_ERROR_CODES.len());
        assert!(COMPOSE_ERROR_CODES
            .iter()
            .all(|c| c.starts_with("InvalidParameter.")));
        for code in COMPOSE_BUSINESS_CODES {
            assert!(
                posthorn_policy::ERROR_CODES.iter().any(|c| c.code == *code),
                "{code}"
            );
        }
        let e = ComposeError::new(INVALID_SUBJECT, "subject", "x");
        assert_eq!(e.to_string(), "subject (InvalidParameter.Subject): x");
    }
}
