//! One SMTP client connection: a plain or TLS stream, a small read buffer
//! and a reply reader that understands multi-line replies.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::Tls;

/// Initial read buffer; replies are short, EHLO replies are the longest.
const READ_BUF: usize = 4096;
/// A reply line longer than this is a protocol error.
const MAX_LINE: usize = 64 * 1024;

/// Why a connection stopped being usable.
#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    Timeout,
    Closed,
    Protocol(&'static str),
}

impl Failure {
    /// A short, stable description for the error tally.
    pub fn kind(&self, stage: &str) -> String {
        match self {
            Failure::Io(e) => match e.get_ref() {
                // TLS errors come wrapped in io::Error (InvalidData).
                Some(inner) if e.kind() == io::ErrorKind::InvalidData => {
                    format!("{stage}: {inner}")
                }
                _ => format!("{stage}: {}", e.kind()),
            },
            Failure::Timeout => format!("{stage}: timeout"),
            Failure::Closed => format!("{stage}: closed by the server"),
            Failure::Protocol(what) => format!("{stage}: {what}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the stream.
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    timeout: Duration,
    /// The last line of the last reply that was neither 2xx nor 354.
    refusal: String,
}

async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

impl Conn {
    /// TCP connect (no delay on), then for implicit TLS the handshake.
    /// Errors are tagged with the stage they happened in.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        implicit_tls: Option<&Tls>,
    ) -> Result<Conn, (&'static str, Failure)> {
        let tcp = within(timeout, TcpStream::connect(addr))
            .await
            .map_err(|e| ("connect", e))?;
        tcp.set_nodelay(true).map_err(|e| ("connect", e.into()))?;
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            timeout,
            refusal: String::new(),
        };
        if let Some(tls) = implicit_tls {
            conn.start_tls(tls).await.map_err(|e| ("tls", e))?;
        }
        Ok(conn)
    }

    /// Replace the plain stream by a TLS stream over it.
    pub async fn start_tls(&mut self, tls: &Tls) -> Result<(), Failure> {
        if self.start != self.end {
            return Err(Failure::Protocol("data pipelined before TLS"));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(Failure::Protocol("TLS started twice"));
        };
        let stream = within(self.timeout, tls.connector.connect(tls.name.clone(), tcp)).await?;
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), Failure> {
        let stream = &mut self.stream;
        within(self.timeout, async move {
            stream.write_all(data).await?;
            stream.flush().await
        })
        .await
    }

    /// The last line of the last reply that was neither 2xx nor 354.
    pub fn refusal(&self) -> &str {
        &self.refusal
    }

    /// Close without waiting for anything.
    pub async fn shutdown(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    /// One reply: its code. With `lines`, the text of every line (after the
    /// code and separator) is collected there, for EHLO.
    pub async fn read_reply(
        &mut self,
        mut lines: Option<&mut Vec<String>>,
    ) -> Result<u16, Failure> {
        if let Some(lines) = lines.as_deref_mut() {
            lines.clear();
        }
        let mut first: Option<u16> = None;
        loop {
            let (from, to) = self.read_line().await?;
            let line = &self.buf[from..to];
            let (code, more) = parse_line(line).ok_or(Failure::Protocol("malformed reply"))?;
            if let Some(lines) = lines.as_deref_mut() {
                let text = line.get(4..).unwrap_or_default();
                lines.push(String::from_utf8_lossy(text).into_owned());
            }
            let code = *first.get_or_insert(code);
            if !more {
                if !(200..300).contains(&code) && code != 354 {
                    self.refusal.clear();
                    self.refusal.push_str(&String::from_utf8_lossy(line));
                }
                return Ok(code);
            }
        }
    }

    /// The next line without its line ending, as a range of `buf`; consumed.
    async fn read_line(&mut self) -> Result<(usize, usize), Failure> {
        let mut scanned = self.start;
        loop {
            if let Some(pos) = self.buf[scanned..self.end].iter().position(|&b| b == b'\n') {
                let nl = scanned + pos;
                let from = self.start;
                let to = if nl > from && self.buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                self.start = nl + 1;
                if self.start == self.end {
                    // Everything consumed: the next read starts at 0. The
                    // returned range stays valid until the next read.
                    self.start = 0;
                    self.end = 0;
                }
                return Ok((from, to));
            }
            scanned = self.end;
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    scanned -= self.start;
                    self.end -= self.start;
                    self.start = 0;
                } else if self.buf.len() >= MAX_LINE {
                    return Err(Failure::Protocol("reply line too long"));
                } else {
                    let len = (self.buf.len() * 2).min(MAX_LINE);
                    self.buf.resize(len, 0);
                }
            }
            let end = self.end;
            let n = within(self.timeout, self.stream.read(&mut self.buf[end..])).await?;
            if n == 0 {
                return Err(Failure::Closed);
            }
            self.end += n;
        }
    }
}

/// `250-text` → (250, true); `250 text` and `250` → (250, false).
fn parse_line(line: &[u8]) -> Option<(u16, bool)> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code =
        (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn reply_lines() {
        assert_eq!(parse_line(b"250-PIPELINING"), Some((250, true)));
        assert_eq!(parse_line(b"250 OK"), Some((250, false)));
        assert_eq!(parse_line(b"354"), Some((354, false)));
        assert_eq!(parse_line(b"25"), None);
        assert_eq!(parse_line(b"abc def"), None);
        assert_eq!(parse_line(b"250xOK"), None);
    }

    #[tokio::test]
    async fn multi_line_replies_across_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // Split inside a line and inside a multi-line reply.
            for part in [
                &b"220 hi\r\n250-a.test\r\n250-PIPEL"[..],
                b"INING\r\n250 SIZE 100\r\n354 go\n",
                b"451 4.3.0 ",
            ] {
                s.write_all(part).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let long = vec![b'x'; 10_000];
            s.write_all(b"later\r\n250 ").await.unwrap();
            s.write_all(&long).await.unwrap();
            s.write_all(b"\r\n").await.unwrap();
        });
        let mut conn = Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .map_err(|(_, e)| e)
            .unwrap();
        let mut lines = Vec::new();
        assert_eq!(conn.read_reply(None).await.unwrap(), 220);
        assert_eq!(conn.read_reply(Some(&mut lines)).await.unwrap(), 250);
        assert_eq!(lines, vec!["a.test", "PIPELINING", "SIZE 100"]);
        assert_eq!(conn.read_reply(None).await.unwrap(), 354);
        assert_eq!(conn.read_reply(None).await.unwrap(), 451);
        assert_eq!(conn.read_reply(Some(&mut lines)).await.unwrap(), 250);
        assert_eq!(lines[0].len(), 10_000);
        assert!(matches!(conn.read_reply(None).await, Err(Failure::Closed)));
        server.await.unwrap();
    }
}
