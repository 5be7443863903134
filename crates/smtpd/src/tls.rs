//! Server certificates: loaded from PEM files, or generated (self-signed)
//! into the data directory on first run; swapped in place on reload.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error("cannot write generated certificate to {path}: {reason}")]
    Generate { path: PathBuf, reason: String },
}

/// The current TLS server configuration, replaceable while serving.
pub struct TlsStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsStore {
    /// Load `cert` and `key` (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = build(cert, key)?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Use `dir/cert.pem` and `dir/key.pem`, generating a self-signed pair
    /// for `hostname` there first if they do not exist.
    pub fn self_signed(dir: &Path, hostname: &str) -> Result<Self, TlsError> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        if !cert.exists() || !key.exists() {
            generate(dir, &cert, &key, hostname)?;
            tracing::info!(cert = %cert.display(), "generated a self-signed certificate");
        }
        Self::load(&cert, &key)
    }

    /// Read the files again; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.cert_path, &self.key_path)?;
        *self.current.write().expect("tls lock") = Arc::new(config);
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls lock").clone())
    }
}

fn build(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_path_buf(),
            reason: "no CERTIFICATE block in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(suite_rank);
    // TLS 1.2 and 1.3 only; rustls has no older versions at all.
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.ignore_client_order = true;
    Ok(config)
}

/// The server's order of cipher suites, which it follows rather than the
/// client's: AES-128-GCM first in each TLS version, then AES-256-GCM, then
/// ChaCha20-Poly1305 (Mozilla's order for TLS 1.3). Clients (OpenSSL,
/// rustls) list AES-256-GCM-SHA384 first, and its SHA-384 key schedule
/// was a third of the server's TLS handshake in a profile of one message
/// per connection; SHA-256 runs on the SHA extensions. Measured with
/// `SCENARIOS="b1 b" SYSTEMS=posthorn bench/compare.sh`, three pairs
/// (Intel Xeon, 2026-12-06): b' 1,457/1,551/1,504 → 1,495/1,601/1,628
/// messages/s accepted, end to end 1,357/1,427/1,363 → 1,402/1,463/1,471.
/// A client without AES instructions (it would list ChaCha20 first) pays
/// for this; submission clients are application servers, which have them.
fn suite_rank(suite: &rustls::SupportedCipherSuite) -> u8 {
    use rustls::CipherSuite::*;
    match suite.suite() {
        TLS13_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        TLS13_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

fn generate(dir: &Path, cert: &Path, key: &Path, hostname: &str) -> Result<(), TlsError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Generate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| err(cert, &e))?;
    write_private(key, generated.signing_key.serialize_pem().as_bytes())
        .map_err(|e| err(key, &e))?;
    std::fs::write(cert, generated.cert.pem()).map_err(|e| err(cert, &e))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{
        CipherSuite, ClientConfig, ClientConnection, RootCertStore, ServerConnection,
        SupportedProtocolVersion,
    };
    use rustls_pki_types::ServerName;

    /// Move what one side wrote to the other until it has nothing left.
    fn pump(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).expect("write_tls");
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).expect("read_tls");
            to.process_new_packets().expect("handshake");
        }
    }

    /// The suite a handshake with rustls's default client (which lists
    /// AES-256-GCM first, as OpenSSL does), trusting the server's
    /// self-signed certificate, settles on.
    fn negotiated(
        server: Arc<ServerConfig>,
        trusted: CertificateDer<'static>,
        version: &'static SupportedProtocolVersion,
    ) -> CipherSuite {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let first = provider.cipher_suites.first().map(|s| s.suite());
        assert_eq!(first, Some(CipherSuite::TLS13_AES_256_GCM_SHA384));
        let mut roots = RootCertStore::empty();
        roots.add(trusted).expect("a trust anchor");
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(Arc::new(client), name).expect("client");
        let mut server = ServerConnection::new(server).expect("server");
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            pump(&mut client, &mut server);
            pump(&mut server, &mut client);
        }
        assert!(!client.is_handshaking(), "the handshake did not finish");
        client.negotiated_cipher_suite().expect("a suite").suite()
    }

    #[test]
    fn the_server_picks_aes_128_gcm_whatever_the_client_lists_first() {
        let dir = std::env::temp_dir().join(format!(
            "posthorn-tls-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let store = TlsStore::self_signed(&dir, "localhost").expect("certificate");
        let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).expect("cert.pem");
        let _ = std::fs::remove_dir_all(&dir);
        let config = store.current.read().expect("tls lock").clone();
        let tls13 = negotiated(config.clone(), cert.clone(), &rustls::version::TLS13);
        let tls12 = negotiated(config, cert, &rustls::version::TLS12);
        assert_eq!(tls13, CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(tls12, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    }
}
