//! The pre-scan: a linear walk over the message's header blocks that
//! refuses what would make mail-parser's one parse cost more than linear
//! time, before that parse runs.
//!
//! Where the cost was (mail-parser 0.11.9, `parsers/fields/content_type.rs`):
//! every RFC 2231 continuation (`p*1*=…`) of a Content-Type or
//! Content-Disposition field is merged at the end of the field by a linear
//! search of the attributes seen so far (`merge_continuations`), and every
//! language tag (`p*=utf-8'en'…`) is checked the same way
//! (`add_attribute_parameter`), so one field with n parameters costs n²
//! (release build, one AMD EPYC core: 40,000 parameters took 2.7 s,
//! 160,000 took 35-48 s; the same with `'` tags). A second quadratic
//! path is in its part walk (`parsers/message.rs`): a part that declares
//! itself multipart with a boundary that never appears makes the parser
//! scan to the end of the message and come back, once per such part
//! (20,000 of them: 13 s).
//!
//! Why a workaround and not a fix: the cost is in the dependency, which we
//! cannot patch here without vendoring it, and it gives no hook to replace
//! a field's parser. So [`prescan`] runs before [`mail_parser`] is handed
//! the message and refuses, with `FailedOperation.HeaderTooComplex`, any
//! message over the caps below. With them the parse is linear: a field
//! has at most [`MAX_PARAMETERS`] parameters and [`MAX_PARAMETER_FIELD_BYTES`]
//! bytes, the message [`MAX_PARAMETERS_TOTAL`] parameters, so the quadratic
//! terms add up to at most `MAX_PARAMETERS` × `MAX_PARAMETERS_TOTAL`
//! attribute comparisons; the other caps bound what mail-parser is handed
//! in parts and header bytes, where it is linear but not cheap.
//!
//! The walk uses mail-parser's own pieces wherever a header block
//! starts and ends depends on them: its header-name reader, its field
//! parsers (its Date parser can run past the blank line ending a header
//! block, which then goes on into the body: a scan of our own would see a
//! body where mail-parser sees header fields), its Content-Type parser for
//! the boundary (only after the field's parameters are counted), its
//! decoders for an encoded message/rfc822 part, which it parses as a
//! message of its own, three levels deep. Only the search for the next
//! boundary is ours (`memmem`, the same first match as its byte loop). A
//! property test (`tests/header_budget.rs`) checks that the walk sees the
//! header blocks and fields mail-parser sees.

use crate::codes::{refusal, HEADER_TOO_COMPLEX};
use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, HeaderName, HeaderValue};
use memchr::memmem;
use posthorn_types::BusinessError;

/// Parameters in one Content-Type or Content-Disposition field, counted
/// as the places where mail-parser can end one or look one up: each `;`,
/// `(` and `'` not escaped by a backslash, each line break, and each
/// closing quote (as many as the unescaped quote marks, at most half of
/// all quote marks: each close has its own opening). Counting that, rather
/// than what a parameter looks like, cannot be fooled by how leniently
/// mail-parser reads a hostile field (it starts a parameter after a
/// closing quote or a fold without a `;`, and looks the attributes up
/// again at every `'` of an RFC 2231 value). A legitimate field has a
/// handful: the longest file names, cut into RFC 2231 pieces of a line
/// each, count 2 per piece (about 55 for 255 UTF-8 characters of two bytes,
/// percent-encoded); 100 leaves room.
pub const MAX_PARAMETERS: usize = 100;

/// Parameters, counted the same way, in all the Content-Type and
/// Content-Disposition fields of a message together. mail-parser's cost
/// for a field grows with the square of its parameters, so this with
/// [`MAX_PARAMETERS`] bounds the sum of those squares (10⁶). A message
/// with a hundred parts uses a few hundred.
pub const MAX_PARAMETERS_TOTAL: usize = 10_000;

/// Bytes of one Content-Type or Content-Disposition field. mail-parser
/// copies a parameter's value again for each RFC 2231 piece it joins, so a
/// field's length multiplies its pieces. The longest legitimate ones (a
/// 255-character file name, percent-encoded) are about 3 KB.
pub const MAX_PARAMETER_FIELD_BYTES: usize = 16 * 1024;

/// Parts in a message, counted as header blocks: the message's own, each
/// part's, each nested message's and its parts'. mail-parser is linear in
/// them, but 170,000 one-line parts in 16 MB took it 0.5 s; a newsletter
/// with a hundred inline images has about a hundred.
pub const MAX_PARTS: usize = 1_000;

/// Header fields in one part (one header block). A message's own header
/// has a few dozen even after a long chain of relays (Received,
/// DKIM-Signature, ARC-*); a part's has two to five. mail-parser is linear
/// in them (100,000 took milliseconds), so this only bounds what it is
/// handed.
pub const MAX_HEADER_FIELDS: usize = 1_000;

/// Bytes of one part's header block. A To field of a thousand addresses is
/// about 30 KB; the largest legitimate headers (a long References chain,
/// several signatures, a long relay chain) stay well under 64 KiB.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Bytes of header in the whole message: every part's header block and
/// every nested message's. mail-parser spends more on a byte of header than
/// on a byte of body (a To field of 16 MB across 64 parts took it 0.16 s),
/// and the walk reads each header field with it too. A message's own
/// header is a few KB, a part's a few hundred bytes.
pub const MAX_HEADER_BYTES_TOTAL: usize = 1024 * 1024;

/// A multipart boundary. RFC 2046 allows 70 characters; mail-parser
/// compares the boundary at every `--` in a body, so its length
/// multiplies the cost of a body made of dashes.
pub const MAX_BOUNDARY_LEN: usize = 200;

/// Parts that declare themselves multipart with a boundary that never
/// appears after them (each costs mail-parser a scan to the end of the
/// message and back). A well-formed message has none; a few broken ones
/// are let through as text, as mail-parser reads them.
pub const MAX_MISSING_BOUNDARIES: usize = 8;

/// How deep mail-parser parses an encoded message/rfc822 part as a
/// message (its `MAX_NESTED_ENCODED`).
const NESTED_ENCODED_DEPTH: usize = 3;

/// What the pre-scan did. `bytes` is its work: every byte it (or a
/// mail-parser piece it called) looked at, counted once per look. It is at
/// most [`work_bound`] of the message's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanWork {
    /// Bytes examined, over every header block, body search and decoded
    /// nested message.
    pub bytes: usize,
    /// Complete header blocks walked (the message's, each part's, each
    /// nested message's), and a first block the data ends in if it has a
    /// field: the parts mail-parser will make.
    pub header_blocks: usize,
    /// Header fields in those blocks.
    pub header_fields: usize,
    /// Bytes of those blocks.
    pub header_bytes: usize,
    /// The most parameters counted in one Content-Type or
    /// Content-Disposition field that was let through.
    pub max_parameters: usize,
    /// Parameters counted in all of them.
    pub parameters: usize,
    /// Multipart parts whose boundary never appears.
    pub missing_boundaries: usize,
}

/// The most work [`prescan`] does on `len` bytes: linear, with a loose
/// constant. Each level of the walk looks at a byte at most twice (in a
/// header block: count, then parse; in a body: a decoder, then a search
/// after it gave up), and a missing boundary costs one more pass over its
/// level, up to the one past the cap. mail-parser parses encoded messages
/// `NESTED_ENCODED_DEPTH` levels deep, and a decoded level is at most
/// twice the one holding it (quoted-printable writes CRLF for a bare LF),
/// so the levels add up to at most 1 + 2 + 4 + 8 = 15 times `len`.
pub fn work_bound(len: usize) -> usize {
    let levels = (1 << (NESTED_ENCODED_DEPTH + 1)) - 1;
    (2 + MAX_MISSING_BOUNDARIES + 1) * levels * len.max(1)
}

/// What the walk learnt of the message's shape, for the parse that
/// follows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Where the body starts when the message is a single part that is
    /// neither multipart nor a message nor transfer-encoded: mail-parser
    /// reads all the rest as that one body. `None` for any other message.
    pub single_body: Option<usize>,
}

/// Walk `raw` the way mail-parser will and refuse it if a header block is
/// over the caps. Returns the work done either way, and the message's
/// shape when it passes.
pub fn prescan(raw: &[u8]) -> (ScanWork, Result<Shape, BusinessError>) {
    let mut scan = Scan::default();
    let result = scan.walk(raw, NESTED_ENCODED_DEPTH);
    (scan.work, result.map(|()| scan.shape))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mime {
    Multipart { digest: bool },
    Message,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    None,
    Base64,
    QuotedPrintable,
}

/// What the walk needs from one header block: mail-parser takes the last
/// Content-Type and Content-Transfer-Encoding field of a block.
#[derive(Default)]
struct Block<'x> {
    content_type: Option<ContentType<'x>>,
    transfer_encoding: Option<HeaderValue<'x>>,
}

/// One level of mail-parser's state stack: the innermost multipart or
/// message being read and the boundary its parts end at.
struct Frame {
    mime: Mime,
    boundary: Option<Vec<u8>>,
}

#[derive(Default)]
struct Scan {
    work: ScanWork,
    shape: Shape,
    /// Fields of the last header block the data ended in.
    unfinished_fields: usize,
}

fn too_complex(explanation: String) -> BusinessError {
    refusal(HEADER_TOO_COMPLEX, explanation)
}

/// mail-parser's `mime_type`, reduced to what decides where header blocks
/// are.
fn mime_type(ct: Option<&ContentType<'_>>, parent: Mime) -> Mime {
    match ct {
        Some(ct) => match ct.ctype() {
            "multipart" => Mime::Multipart {
                digest: ct.subtype() == Some("digest"),
            },
            "message" if matches!(ct.subtype(), Some("rfc822" | "global")) => Mime::Message,
            _ => Mime::Other,
        },
        None if parent == (Mime::Multipart { digest: true }) => Mime::Message,
        None => Mime::Other,
    }
}

/// How a Content-Type or Content-Disposition field measured.
#[derive(Debug, PartialEq, Eq)]
enum Field {
    /// Its parameters, counted as [`MAX_PARAMETERS`] says.
    Parameters(usize),
    /// More than the limit of parameters.
    TooManyParameters,
    /// Longer than [`MAX_PARAMETER_FIELD_BYTES`].
    TooLong,
}

/// Measure the field value starting at `from`, up to its end (a line
/// break not followed by white space) or until it is over a limit.
/// Returns the measure and the bytes looked at.
fn measure_field(data: &[u8], from: usize, max_parameters: usize) -> (Field, usize) {
    let mut count = 0;
    // Quote marks not escaped, and all of them.
    let (mut quotes, mut all_quotes) = (0usize, 0usize);
    let mut escaped = false;
    let mut i = from;
    while let Some(&b) = data.get(i) {
        i += 1;
        match b {
            // mail-parser ends a value at a line break, escaped or not.
            b'\n' => count += 1,
            b'"' => {
                all_quotes += 1;
                quotes += usize::from(!escaped);
            }
            b';' | b'(' | b'\'' if !escaped => count += 1,
            b'\\' if !escaped => {
                escaped = true;
                continue;
            }
            _ => {}
        }
        escaped = false;
        if count + quotes.min(all_quotes / 2) > max_parameters {
            return (Field::TooManyParameters, i - from);
        }
        if i - from > MAX_PARAMETER_FIELD_BYTES {
            return (Field::TooLong, i - from);
        }
        if b == b'\n' && !matches!(data.get(i), Some(b' ' | b'\t')) {
            break;
        }
    }
    (
        Field::Parameters(count + quotes.min(all_quotes / 2)),
        i - from,
    )
}

/// mail-parser's parser for a field (`parse_headers` with the default
/// configuration), so the field ends where mail-parser ends it.
fn parse_field<'x>(stream: &mut MessageStream<'x>, name: &HeaderName<'x>) -> HeaderValue<'x> {
    match name {
        HeaderName::Subject
        | HeaderName::Comments
        | HeaderName::ContentDescription
        | HeaderName::ContentLocation
        | HeaderName::ContentTransferEncoding => stream.parse_unstructured(),
        HeaderName::From
        | HeaderName::To
        | HeaderName::Cc
        | HeaderName::Bcc
        | HeaderName::ReplyTo
        | HeaderName::Sender
        | HeaderName::ResentTo
        | HeaderName::ResentFrom
        | HeaderName::ResentBcc
        | HeaderName::ResentCc
        | HeaderName::ResentSender
        | HeaderName::ListArchive
        | HeaderName::ListHelp
        | HeaderName::ListId
        | HeaderName::ListOwner
        | HeaderName::ListPost
        | HeaderName::ListSubscribe
        | HeaderName::ListUnsubscribe => stream.parse_address(),
        HeaderName::Date | HeaderName::ResentDate => stream.parse_date(),
        HeaderName::MessageId
        | HeaderName::References
        | HeaderName::InReplyTo
        | HeaderName::ReturnPath
        | HeaderName::ContentId
        | HeaderName::ResentMessageId => stream.parse_id(),
        HeaderName::Keywords | HeaderName::ContentLanguage => stream.parse_comma_separared(),
        HeaderName::Received => stream.parse_received(),
        HeaderName::MimeVersion => stream.parse_raw(),
        HeaderName::ContentType | HeaderName::ContentDisposition => stream.parse_content_type(),
        _ => stream.parse_raw(),
    }
}

impl Scan {
    /// mail-parser's `parse_` loop, keeping only what decides where the
    /// next header block starts.
    fn walk(&mut self, data: &[u8], depth: usize) -> Result<(), BusinessError> {
        let mut stream = MessageStream::new(data);
        let blocks_before = self.work.header_blocks;
        let mut state = Frame {
            mime: Mime::Message,
            boundary: None,
        };
        // `true` where mail-parser stacks a message it will go back to.
        let mut stack: Vec<(Frame, bool)> = Vec::new();

        'outer: while let Some(block) = self.header_block(data, &mut stream)? {
            let ct = block.content_type.as_ref();
            let mut mime = mime_type(ct, state.mime);
            if let Mime::Multipart { .. } = mime {
                if let Some(boundary) = ct.and_then(|c| c.attribute("boundary")) {
                    let boundary = boundary.as_bytes();
                    if boundary.len() > MAX_BOUNDARY_LEN {
                        return Err(too_complex(format!(
                            "part {}: the multipart boundary is {} bytes; the limit is {MAX_BOUNDARY_LEN}",
                            self.work.header_blocks - 1,
                            boundary.len()
                        )));
                    }
                    if self.seek(data, &mut stream, boundary) {
                        stack.push((state, false));
                        state = Frame {
                            mime,
                            boundary: Some(boundary.to_vec()),
                        };
                        self.skip_crlf(&mut stream);
                        continue;
                    }
                    if !boundary.is_empty() {
                        self.work.missing_boundaries += 1;
                        if self.work.missing_boundaries > MAX_MISSING_BOUNDARIES {
                            return Err(too_complex(format!(
                                "more than {MAX_MISSING_BOUNDARIES} multipart parts name a boundary that never appears"
                            )));
                        }
                    }
                    mime = Mime::Other;
                }
            }
            let encoding = match &block.transfer_encoding {
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => {
                    Encoding::QuotedPrintable
                }
                _ => Encoding::None,
            };
            if mime == Mime::Message && encoding == Encoding::None {
                // A message inside: its header block follows at once.
                let inner = Frame {
                    mime: Mime::Message,
                    boundary: state.boundary.take(),
                };
                stack.push((state, true));
                state = inner;
                continue;
            }

            // The body, up to the boundary of the part it is in.
            let start = stream.offset();
            let boundary = state.boundary.clone().unwrap_or_default();
            if mime == Mime::Message {
                let (end, bytes) = match encoding {
                    Encoding::Base64 => stream.decode_base64_mime(&boundary),
                    _ => stream.decode_quoted_printable_mime(&boundary),
                };
                if end == usize::MAX {
                    // mail-parser keeps it as text and looks for the
                    // boundary again.
                    let found = self.seek_part_end(data, &mut stream, state.boundary.as_deref());
                    self.work.bytes += stream.offset() - start;
                    if !found {
                        state.boundary = None;
                    }
                } else {
                    self.work.bytes += stream.offset() - start;
                    if depth != 0 {
                        self.walk(&bytes, depth - 1)?;
                    }
                }
            } else if boundary.is_empty() {
                // The message's own header block (the first of the top
                // level), a leaf: one body to the end.
                if depth == NESTED_ENCODED_DEPTH
                    && self.work.header_blocks == 1
                    && encoding == Encoding::None
                {
                    self.shape.single_body = Some(start);
                }
                self.work.bytes += data.len() - start;
                stream.seek_end();
            } else if !self.seek(data, &mut stream, &boundary) {
                // Not found: mail-parser keeps the rest as this part's
                // text and stops looking for parts.
                stream.seek_end();
                state.boundary = None;
            }

            if state.boundary.is_some() {
                'inner: loop {
                    if state.mime == Mime::Message {
                        // The end of a message inside a part.
                        match stack.pop() {
                            Some((mut parent, true)) => {
                                parent.boundary = state.boundary.take();
                                state = parent;
                            }
                            _ => break 'outer,
                        }
                    }
                    let at = stream.offset();
                    let end = stream.is_multipart_end();
                    self.work.bytes += stream.offset().saturating_sub(at);
                    if !end {
                        break 'inner;
                    }
                    if let Some((parent, _)) = stack.pop() {
                        state = parent;
                        if let Some(boundary) = state.boundary.clone() {
                            if self.seek(data, &mut stream, &boundary) {
                                continue 'inner;
                            }
                        }
                    }
                    break 'outer;
                }
            } else if stream.offset() >= data.len() {
                break 'outer;
            }
        }
        // A message that ends inside its first header block is still one
        // part to mail-parser, if it had a field.
        if self.work.header_blocks == blocks_before && self.unfinished_fields > 0 {
            self.work.header_blocks += 1;
            self.work.header_fields += self.unfinished_fields;
        }
        Ok(())
    }

    /// mail-parser's `parse_headers`, counting. `None` where it finds no
    /// complete block (the end of the data first).
    fn header_block<'x>(
        &mut self,
        data: &'x [u8],
        stream: &mut MessageStream<'x>,
    ) -> Result<Option<Block<'x>>, BusinessError> {
        let start = stream.offset();
        let part = self.work.header_blocks;
        let mut block = Block::default();
        let mut fields = 0usize;
        loop {
            loop {
                match stream.peek() {
                    Some(b'\n') => {
                        stream.next();
                        self.work.bytes += stream.offset() - start;
                        self.work.header_blocks += 1;
                        self.work.header_fields += fields;
                        self.work.header_bytes += stream.offset() - start;
                        if self.work.header_blocks > MAX_PARTS {
                            return Err(too_complex(format!(
                                "the message has more than {MAX_PARTS} parts"
                            )));
                        }
                        return Ok(Some(block));
                    }
                    None => {
                        self.work.bytes += stream.offset() - start;
                        self.unfinished_fields = fields;
                        return Ok(None);
                    }
                    Some(ch) if !ch.is_ascii_whitespace() => break,
                    _ => {
                        stream.next();
                    }
                }
            }
            if let Some(name) = stream.parse_header_name() {
                fields += 1;
                if fields > MAX_HEADER_FIELDS {
                    return Err(too_complex(format!(
                        "part {part} has more than {MAX_HEADER_FIELDS} header fields"
                    )));
                }
                if matches!(
                    name,
                    HeaderName::ContentType | HeaderName::ContentDisposition
                ) {
                    let field = if name == HeaderName::ContentType {
                        "Content-Type"
                    } else {
                        "Content-Disposition"
                    };
                    let (measure, looked) = measure_field(data, stream.offset(), MAX_PARAMETERS);
                    self.work.bytes += looked;
                    let count = match measure {
                        Field::Parameters(count) => count,
                        Field::TooManyParameters => {
                            return Err(too_complex(format!(
                                "part {part}: {field} has more than {MAX_PARAMETERS} parameters"
                            )))
                        }
                        Field::TooLong => {
                            return Err(too_complex(format!(
                            "part {part}: {field} is longer than {MAX_PARAMETER_FIELD_BYTES} bytes"
                        )))
                        }
                    };
                    self.work.max_parameters = self.work.max_parameters.max(count);
                    self.work.parameters += count;
                    if self.work.parameters > MAX_PARAMETERS_TOTAL {
                        return Err(too_complex(format!(
                            "more than {MAX_PARAMETERS_TOTAL} parameters in the message's Content-Type and Content-Disposition fields"
                        )));
                    }
                }
                let value = parse_field(stream, &name);
                match name {
                    HeaderName::ContentType => block.content_type = value.into_content_type(),
                    HeaderName::ContentTransferEncoding => block.transfer_encoding = Some(value),
                    _ => {}
                }
            } else if stream.is_eof() {
                self.work.bytes += stream.offset() - start;
                self.unfinished_fields = fields;
                return Ok(None);
            }
            let size = stream.offset() - start;
            if size > MAX_HEADER_BYTES {
                return Err(too_complex(format!(
                    "part {part} has more than {MAX_HEADER_BYTES} bytes of header"
                )));
            }
            if self.work.header_bytes + size > MAX_HEADER_BYTES_TOTAL {
                return Err(too_complex(format!(
                    "the message has more than {MAX_HEADER_BYTES_TOTAL} bytes of header in all"
                )));
            }
        }
    }

    /// mail-parser's `seek_next_part`: past the first `--boundary` from
    /// here, or (not found) nowhere.
    fn seek(&mut self, data: &[u8], stream: &mut MessageStream<'_>, boundary: &[u8]) -> bool {
        if boundary.is_empty() {
            return false;
        }
        let from = stream.offset();
        let rest = &data[from..];
        let mut needle = Vec::with_capacity(boundary.len() + 2);
        needle.extend_from_slice(b"--");
        needle.extend_from_slice(boundary);
        match memmem::find(rest, &needle) {
            Some(at) => {
                self.work.bytes += at + needle.len();
                stream.skip_bytes(at + needle.len());
                true
            }
            None => {
                self.work.bytes += rest.len();
                false
            }
        }
    }

    /// mail-parser's `seek_part_end`: past the boundary, or to the end.
    fn seek_part_end(
        &mut self,
        data: &[u8],
        stream: &mut MessageStream<'_>,
        boundary: Option<&[u8]>,
    ) -> bool {
        match boundary {
            Some(b) if !b.is_empty() && self.seek(data, stream, b) => true,
            Some(_) => {
                stream.seek_end();
                false
            }
            None => {
                self.work.bytes += data.len() - stream.offset();
                stream.seek_end();
                true
            }
        }
    }

    fn skip_crlf(&mut self, stream: &mut MessageStream<'_>) {
        let at = stream.offset();
        stream.skip_crlf();
        self.work.bytes += stream.offset() - at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_counted_where_they_can_end() {
        let count = |s: &str| match measure_field(s.as_bytes(), 0, usize::MAX).0 {
            Field::Parameters(n) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(count(" text/plain\r\n"), 1);
        assert_eq!(count(" text/plain; charset=utf-8\r\n"), 2);
        assert_eq!(count(" attachment; filename=\"a;b.pdf\"\r\n"), 4);
        assert_eq!(count(" attachment; filename*=utf-8''a%20b\r\n"), 4);
        // Folds and closing quotes end parameters without a `;`.
        assert_eq!(count(" a/b;\r\n x=\"1\"y=\"2\"\r\n z=3\r\nNext: 1\r\n"), 6);
        // Escaped separators count nothing; escaped quote marks count
        // only as openings (one close here, counted as two: at most half
        // of the five quote marks).
        assert_eq!(count(" a; n=\"\\\"\\\"\\;\\'\\(\\\"\"\r\n"), 4);
        assert_eq!(count(" a; n=\\\"x\" m=\\\"y\"\r\n"), 4);
        assert_eq!(count(" a; n=\"\\\\\"; m=1\r\n"), 4);
        // It stops past a limit.
        let many = format!(" a/b{}\r\n", "; p=1".repeat(1000));
        let (field, looked) = measure_field(many.as_bytes(), 0, 100);
        assert_eq!(field, Field::TooManyParameters);
        assert!(looked < 101 * 6);
        let long = format!(" a/b; p=\"{}\"\r\n", "x".repeat(100_000));
        let (field, looked) = measure_field(long.as_bytes(), 0, 100);
        assert_eq!(field, Field::TooLong);
        assert_eq!(looked, MAX_PARAMETER_FIELD_BYTES + 1);
    }

    #[test]
    fn the_date_quirk_is_followed() {
        // mail-parser's Date parser reads past the blank line after a
        // zone of one letter, so the "body" is read as header fields: the
        // walk must read it the same way.
        let params = "; p=1".repeat(200);
        let raw = format!(
            "From: a@example.com\r\nDate: 1 Jan 2026 00:00:00 E\r\n\r\nContent-Disposition: attachment{params}\r\n\r\nhi\r\n"
        );
        let (_, result) = prescan(raw.as_bytes());
        assert_eq!(result.unwrap_err().code, HEADER_TOO_COMPLEX);
        let fine = raw.replace(" E\r\n", " +0000\r\n");
        let (_, result) = prescan(fine.as_bytes());
        assert!(result.is_ok());
    }
}
