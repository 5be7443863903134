/// What to do with a bare CR or bare LF inside message data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LineEndings {
    /// Turn it into CRLF, so the stored copy is canonical.
    #[default]
    Fix,
    /// Refuse the message with `550 5.5.2`.
    Reject,
}

/// The settings one session runs under. The driver fills in the parts that
/// depend on the connection (`tls_active`, `starttls_available`,
/// `auth_without_tls`).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Largest message accepted, in bytes as stored; advertised as `SIZE`.
    pub max_message_size: usize,
    /// Recipients accepted in one transaction; later ones get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest line of message data, without its CRLF.
    pub max_line_length: usize,
    /// Longest command line, CRLF included (AUTH lines carry base64).
    pub max_command_length: usize,
    pub line_endings: LineEndings,
    /// The connection started in TLS (implicit TLS port).
    pub tls_active: bool,
    /// STARTTLS may be offered (the listener has a certificate).
    pub starttls_available: bool,
    /// AUTH may be used without TLS (loopback, when the config says so).
    pub auth_without_tls: bool,
    /// Bad commands tolerated before the session is closed with `421`.
    pub max_errors: u32,
    /// Failed AUTH attempts before the connection is closed with `421`.
    pub max_auth_failures: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_size: 16 * 1024 * 1024,
            max_recipients: 50,
            max_line_length: 2000,
            max_command_length: 12 * 1024,
            line_endings: LineEndings::Fix,
            tls_active: false,
            starttls_available: true,
            auth_without_tls: false,
            max_errors: 20,
            max_auth_failures: 3,
        }
    }
}
