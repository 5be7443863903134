//! Reading message content: the DATA reader (end marker, dot-unstuffing,
//! line endings, limits) and the same canonical form for BDAT chunks.

use crate::LineEndings;
use memchr::memchr;
use std::borrow::Cow;

/// Why message content was refused. The reader always reads to the end of
/// the data before reporting, so the connection stays usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataError {
    /// Larger than the SIZE limit.
    TooLarge,
    /// A line longer than the line limit.
    LineTooLong,
    /// A bare CR or LF while `line_endings = "reject"`.
    BareLineEnding,
}

/// Limits that shape the stored copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_size: usize,
    pub max_line: usize,
    pub line_endings: LineEndings,
}

/// Builds the canonical stored copy: CRLF line endings only, no line over
/// the limit, no more bytes than the size limit. The first error wins; once
/// there is one, nothing more is kept.
struct Canonical {
    out: Vec<u8>,
    error: Option<DataError>,
    limits: Limits,
}

impl Canonical {
    fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, 0)
    }

    fn with_capacity(limits: Limits, bytes: usize) -> Self {
        Self {
            out: Vec::with_capacity(bytes.min(limits.max_size)),
            error: None,
            limits,
        }
    }

    fn fail(&mut self, e: DataError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.out = Vec::new();
        }
    }

    /// Append one line's content (no terminator) and a CRLF. `bare_end` says
    /// the line ended in a bare LF rather than CRLF.
    fn push_line(&mut self, content: &[u8], bare_end: bool) {
        if self.error.is_some() {
            return;
        }
        if content.len() > self.limits.max_line {
            return self.fail(DataError::LineTooLong);
        }
        // Every CR left in `content` is bare, and is stored as CRLF. Most
        // lines have none: look for one before counting them.
        let has_bare_cr = memchr::memchr(b'\r', content).is_some();
        let bare_crs = if has_bare_cr {
            memchr::memchr_iter(b'\r', content).count()
        } else {
            0
        };
        if (bare_end || has_bare_cr) && self.limits.line_endings == LineEndings::Reject {
            return self.fail(DataError::BareLineEnding);
        }
        if self.out.len() + content.len() + bare_crs + 2 > self.limits.max_size {
            return self.fail(DataError::TooLarge);
        }
        if has_bare_cr {
            // Each bare CR ends a line of its own.
            for (i, piece) in content.split(|&b| b == b'\r').enumerate() {
                if i > 0 {
                    self.out.extend_from_slice(b"\r\n");
                }
                self.out.extend_from_slice(piece);
            }
        } else {
            self.out.extend_from_slice(content);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Append whole lines already in the stored form (see [`clean_lines`]).
    fn push_clean(&mut self, lines: &[u8]) {
        if self.error.is_some() {
            return;
        }
        // Every line fits, so the only limit these lines can break is the
        // size, as they would one by one.
        if self.out.len() + lines.len() > self.limits.max_size {
            return self.fail(DataError::TooLarge);
        }
        self.out.extend_from_slice(lines);
    }

    fn finish(self) -> Result<Vec<u8>, DataError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }
}

/// What [`DataReader::consume`] found.
pub(crate) enum DataProgress {
    /// All of the input was used; the end has not been seen.
    NeedMore,
    /// The end marker was seen; the stored copy, or why it was refused.
    Done(Result<Vec<u8>, DataError>),
}

/// The DATA phase. Content ends only at `<CRLF>.<CRLF>`: a `.` line that
/// follows a bare LF, or ends in one, is content (the smuggling variants of
/// CVE-2023-51764). A line is what ends in LF; its leading dot is removed
/// (dot-unstuffing), also after a bare LF, because clients that send bare LFs
/// (Python's smtplib with bytes) stuff dots after them too.
pub(crate) struct DataReader {
    canonical: Canonical,
    /// The previous line ended in CRLF, or no line has been read yet.
    prev_crlf: bool,
    /// Inside a line already known to be too long: drop bytes up to its LF.
    skipping: bool,
    /// While skipping: the last byte dropped was a CR.
    skipped_cr: bool,
    /// Copy runs of clean lines in one piece (off only in tests that check
    /// it changes nothing).
    bulk: bool,
}

impl DataReader {
    #[cfg(test)]
    pub fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, 0)
    }

    /// A reader whose stored copy starts with room for `bytes` (what the
    /// connection's last message needed), so a large message is not copied
    /// again each time the copy doubles.
    pub fn with_capacity(limits: Limits, bytes: usize) -> Self {
        Self {
            canonical: Canonical::with_capacity(limits, bytes.min(MAX_RESERVE)),
            prev_crlf: true,
            skipping: false,
            skipped_cr: false,
            bulk: true,
        }
    }

    /// Read from `input`; returns how many bytes were used. The caller drops
    /// those and keeps the rest (an incomplete line, or what follows the end
    /// marker) for the next call.
    pub fn consume(&mut self, input: &[u8]) -> (usize, DataProgress) {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            // Most content is whole lines that are stored as they came:
            // copied in one piece. What is left is read line by line.
            if self.bulk && self.prev_crlf && !self.skipping {
                let clean = clean_lines(rest, self.canonical.limits.max_line);
                if clean > 0 {
                    self.canonical.push_clean(&rest[..clean]);
                    pos += clean;
                    continue;
                }
            }
            let Some(lf) = memchr(b'\n', rest) else {
                if self.skipping {
                    if let Some(&last) = rest.last() {
                        self.skipped_cr = last == b'\r';
                    }
                    return (input.len(), DataProgress::NeedMore);
                }
                // An incomplete line longer than any allowed line (plus a
                // dot and CRLF) is dropped now, so memory stays bounded.
                if rest.len() > self.canonical.limits.max_line + 3 {
                    self.canonical.fail(DataError::LineTooLong);
                    self.skipping = true;
                    self.skipped_cr = rest.last() == Some(&b'\r');
                    return (input.len(), DataProgress::NeedMore);
                }
                return (pos, DataProgress::NeedMore);
            };
            let line = &rest[..lf];
            pos += lf + 1;
            if self.skipping {
                self.skipping = false;
                self.prev_crlf = line.last().map_or(self.skipped_cr, |&b| b == b'\r');
                continue;
            }
            let ends_crlf = line.last() == Some(&b'\r');
            let content = if ends_crlf {
                &line[..line.len() - 1]
            } else {
                line
            };
            if self.prev_crlf && ends_crlf && content == b"." {
                let limits = self.canonical.limits;
                let canonical = std::mem::replace(&mut self.canonical, Canonical::new(limits));
                return (pos, DataProgress::Done(canonical.finish()));
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            self.canonical.push_line(content, !ends_crlf);
            self.prev_crlf = ends_crlf;
        }
    }
}

/// The most a reader reserves for the stored copy before content arrives.
const MAX_RESERVE: usize = 4 << 20;

/// How many bytes at the start of `data` (which starts a line after a CRLF)
/// are whole lines the DATA reader stores unchanged: each ends in CRLF,
/// holds no other CR or LF, is no longer than `max_line` and does not start
/// with a dot, so neither the end marker nor a stuffed dot is among them.
fn clean_lines(data: &[u8], max_line: usize) -> usize {
    crlf_lines(data, max_line, true)
}

/// How many bytes at the start of `data` are whole lines ending in CRLF,
/// with no other CR or LF and no longer than `max_line`; with `dot_ends`,
/// stopping before a line that starts with a dot. The one scan behind
/// [`clean_lines`] (DATA) and [`clean_through`] (BDAT, the HTTP API).
fn crlf_lines(data: &[u8], max_line: usize, dot_ends: bool) -> usize {
    if dot_ends && data.first() == Some(&b'.') {
        return 0;
    }
    let mut line_start = 0;
    for i in memchr::memchr2_iter(b'\r', b'\n', data) {
        if data[i] == b'\r' {
            if data.get(i + 1) == Some(&b'\n') {
                continue;
            }
            // A bare CR, or a line not yet complete.
            break;
        }
        if i == line_start || data[i - 1] != b'\r' || i - 1 - line_start > max_line {
            break;
        }
        line_start = i + 1;
        if dot_ends && data.get(line_start) == Some(&b'.') {
            break;
        }
    }
    line_start
}

/// The stored form of message content, whatever door it came in by: every
/// line break CRLF (a bare CR or a bare LF becomes CRLF) and a final CRLF,
/// with no size or line limit. The one canonicaliser: DATA and BDAT make
/// the same form under their limits below, the HTTP API through this and
/// [`crlf_line_breaks`].
pub fn canonical_crlf(data: Vec<u8>) -> Vec<u8> {
    canonicalize_chunks(data, UNLIMITED).expect("no limit to break")
}

/// The line breaks of `text` as [`canonical_crlf`] makes them (every one
/// CRLF), but without the CRLF it adds at the end of text that has none;
/// borrowed when nothing changes. For text inside a message, such as a
/// part the HTTP API builds.
pub fn crlf_line_breaks(text: &[u8]) -> Cow<'_, [u8]> {
    if clean_through(text, usize::MAX).is_some() {
        return Cow::Borrowed(text);
    }
    let mut fixed = rewrite(text, UNLIMITED).expect("no limit to break");
    if !text.ends_with(b"\r") && !text.ends_with(b"\n") {
        fixed.truncate(fixed.len().saturating_sub(2));
    }
    Cow::Owned(fixed)
}

const UNLIMITED: Limits = Limits {
    max_size: usize::MAX,
    max_line: usize::MAX,
    line_endings: LineEndings::Fix,
};

/// Where the last line of `data` starts, if every line break in `data` is
/// CRLF and no line is longer than `max_line`: the canonical form already,
/// but for a final CRLF when the last line is not empty. `None` when
/// `data` must be rewritten.
fn clean_through(data: &[u8], max_line: usize) -> Option<usize> {
    let line_start = crlf_lines(data, max_line, false);
    let last = &data[line_start..];
    (memchr::memchr2(b'\r', b'\n', last).is_none() && last.len() <= max_line).then_some(line_start)
}

/// The canonical stored copy of BDAT content (no dot-unstuffing: BDAT is
/// not dot-stuffed). The size limit was enforced on the raw bytes while
/// chunks arrived; it is checked again here, because turning bare line
/// endings into CRLF (or adding the final CRLF) makes the copy longer.
pub(crate) fn canonicalize_chunks(data: Vec<u8>, limits: Limits) -> Result<Vec<u8>, DataError> {
    // Fast path: already CRLF throughout, no long lines.
    let Some(line_start) = clean_through(&data, limits.max_line) else {
        return rewrite(&data, limits);
    };
    if line_start == data.len() {
        return Ok(data);
    }
    // Content must end with CRLF to be a message.
    if data.len() + 2 > limits.max_size {
        return Err(DataError::TooLarge);
    }
    let mut data = data;
    data.extend_from_slice(b"\r\n");
    Ok(data)
}

/// `data` line by line into a new canonical copy (the slow path).
fn rewrite(data: &[u8], limits: Limits) -> Result<Vec<u8>, DataError> {
    // Room for a CR before each line's LF, in lines of 64 bytes or more.
    let mut canonical = Canonical::with_capacity(limits, data.len() + data.len() / 64 + 2);
    let mut rest = data;
    while !rest.is_empty() {
        match memchr(b'\n', rest) {
            Some(lf) => {
                let line = &rest[..lf];
                let ends_crlf = line.last() == Some(&b'\r');
                let content = if ends_crlf {
                    &line[..line.len() - 1]
                } else {
                    line
                };
                canonical.push_line(content, !ends_crlf);
                rest = &rest[lf + 1..];
            }
            None => {
                canonical.push_line(rest, false);
                break;
            }
        }
    }
    canonical.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_in_text_become_crlf_with_no_final_one_added() {
        assert!(matches!(crlf_line_breaks(b"a\r\nb"), Cow::Borrowed(_)));
        assert!(matches!(crlf_line_breaks(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*crlf_line_breaks(b"a\nb"), b"a\r\nb");
        assert_eq!(&*crlf_line_breaks(b"a\nb\n"), b"a\r\nb\r\n");
        // The stored form's line breaks, less the CRLF it adds at the end.
        for text in [
            &b"x\ny"[..],
            b"x\r\ry\n",
            b"\n\n",
            b"plain",
            b"a\r\n",
            b"a\rb\r",
        ] {
            let mut whole = crlf_line_breaks(text).into_owned();
            if !text.ends_with(b"\r") && !text.ends_with(b"\n") {
                whole.extend_from_slice(b"\r\n");
            }
            assert_eq!(whole, canonical_crlf(text.to_vec()), "{text:?}");
        }
    }

    fn limits() -> Limits {
        Limits {
            max_size: 1000,
            max_line: 20,
            line_endings: LineEndings::Fix,
        }
    }

    fn read_all(input: &[u8], limits: Limits) -> Option<(usize, Result<Vec<u8>, DataError>)> {
        let mut r = DataReader::new(limits);
        match r.consume(input) {
            (consumed, DataProgress::Done(result)) => Some((consumed, result)),
            (_, DataProgress::NeedMore) => None,
        }
    }

    #[test]
    fn canonical_crlf_makes_every_break_crlf() {
        assert_eq!(
            canonical_crlf(b"a\nb\r\nc\rd".to_vec()),
            b"a\r\nb\r\nc\r\nd\r\n"
        );
        assert_eq!(canonical_crlf(b"a\r\n".to_vec()), b"a\r\n");
        assert_eq!(canonical_crlf(b"a\r\r\n\n".to_vec()), b"a\r\n\r\n\r\n");
        assert_eq!(canonical_crlf(Vec::new()), b"");
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let (n, got) = read_all(b"a\r\n..b\r\n.\r\nNEXT", limits()).unwrap();
        assert_eq!(got.unwrap(), b"a\r\n.b\r\n");
        assert_eq!(n, 11);
    }

    #[test]
    fn smuggling_variants_are_content() {
        for fake in [
            &b"a\n.\nb\r\n"[..],
            b"a\n.\r\nb\r\n",
            b"a\r\n.\nb\r\n",
            b"a\r.\rb\r\n",
            b"a\r.\r\nb\r\n",
        ] {
            let mut input = fake.to_vec();
            input.extend_from_slice(b".\r\n");
            let (n, got) = read_all(&input, limits()).unwrap();
            assert_eq!(n, input.len(), "{fake:?}");
            let got = got.unwrap();
            assert!(got.ends_with(b"b\r\n"), "{fake:?} -> {got:?}");
            assert!(!got.windows(2).any(|w| w == b"\n\n"));
        }
    }

    #[test]
    fn bare_line_endings_are_fixed_or_refused() {
        let (_, got) = read_all(b"a\nb\rc\r\n.\r\n", limits()).unwrap();
        assert_eq!(got.unwrap(), b"a\r\nb\r\nc\r\n");
        let reject = Limits {
            line_endings: LineEndings::Reject,
            ..limits()
        };
        let (_, got) = read_all(b"a\nb\r\n.\r\n", reject).unwrap();
        assert_eq!(got, Err(DataError::BareLineEnding));
    }

    #[test]
    fn long_lines_are_read_through_and_refused() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\n");
        let mut r = DataReader::new(limits());
        // Feed in small pieces to exercise the skipping path.
        let mut buf = Vec::new();
        let mut outcome = None;
        for chunk in input.chunks(7) {
            buf.extend_from_slice(chunk);
            let (n, p) = r.consume(&buf);
            buf.drain(..n);
            if let DataProgress::Done(result) = p {
                outcome = Some(result);
            }
        }
        assert_eq!(outcome, Some(Err(DataError::LineTooLong)));
    }

    #[test]
    fn size_limit_applies_to_stored_bytes() {
        let small = Limits {
            max_size: 10,
            ..limits()
        };
        let (_, got) = read_all(b"0123456\r\n0123\r\n.\r\n", small).unwrap();
        assert_eq!(got, Err(DataError::TooLarge));
    }

    /// Reads `input` fed `step` bytes at a time as a connection does (the
    /// unused rest kept for the next call); `None` if it never ends.
    fn read_in_steps(
        input: &[u8],
        step: usize,
        limits: Limits,
        bulk: bool,
    ) -> Option<(usize, Result<Vec<u8>, DataError>)> {
        let mut r = DataReader::new(limits);
        r.bulk = bulk;
        let (mut buf, mut fed, mut used) = (Vec::new(), 0, 0);
        while fed < input.len() {
            let end = (fed + step).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
            let (n, p) = r.consume(&buf);
            buf.drain(..n);
            used += n;
            if let DataProgress::Done(result) = p {
                return Some((used, result));
            }
        }
        None
    }

    #[test]
    fn whole_lines_copied_in_one_piece_read_as_line_by_line() {
        // Every input of a few lines made of the bytes that matter, in
        // every feeding step: the bulk copy changes nothing.
        let alphabet = [b'a', b'.', b'\r', b'\n', b'x'];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..4000 {
            let len = (next() % 60) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            input.extend_from_slice(b"\r\n.\r\nNEXT");
            let limits = Limits {
                max_size: [8, 30, 1000][round % 3],
                max_line: [3, 20][round % 2],
                line_endings: [LineEndings::Fix, LineEndings::Reject][round % 5 / 4],
            };
            for step in [1, 2, 3, 7, input.len()] {
                assert_eq!(
                    read_in_steps(&input, step, limits, true),
                    read_in_steps(&input, step, limits, false),
                    "{input:?} in steps of {step}, {limits:?}"
                );
            }
        }
    }

    #[test]
    fn clean_lines_stop_before_a_dot_a_bare_break_or_a_long_line() {
        assert_eq!(clean_lines(b"ab\r\ncd\r\n", 20), 8);
        assert_eq!(clean_lines(b"ab\r\n.\r\n", 20), 4);
        assert_eq!(clean_lines(b".ab\r\n", 20), 0);
        assert_eq!(clean_lines(b"ab\r\ncd\nef\r\n", 20), 4);
        assert_eq!(clean_lines(b"ab\r\nc\rd\r\n", 20), 4);
        assert_eq!(clean_lines(b"ab\r\ncd\r", 20), 4);
        assert_eq!(clean_lines(b"ab\r\ncdef\r\n", 3), 4);
        assert_eq!(clean_lines(b"\r\n\r\n", 0), 4);
    }

    #[test]
    fn chunks_are_canonicalized() {
        assert_eq!(
            canonicalize_chunks(b"a\r\nb\r\n".to_vec(), limits()).unwrap(),
            b"a\r\nb\r\n"
        );
        assert_eq!(
            canonicalize_chunks(b"a\nb".to_vec(), limits()).unwrap(),
            b"a\r\nb\r\n"
        );
        assert_eq!(
            canonicalize_chunks(vec![b'x'; 30], limits()),
            Err(DataError::LineTooLong)
        );
    }
}
