//! TLS for a benchmark: the delivery client's unverified config (aws-lc-rs, TLS
//! 1.3 and 1.2, any certificate accepted but the handshake signatures still
//! checked, so the cost of a real handshake is measured).

use std::net::IpAddr;

use anyhow::Context;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// A connector shared by all sessions, and the name to send as SNI.
pub struct Tls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

pub fn connector(host: &str) -> anyhow::Result<Tls> {
    let config =
        posthorn_delivery::client::unverified_config().map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .with_context(|| format!("{host:?} is not a valid TLS server name"))?,
    };
    Ok(Tls {
        connector: TlsConnector::from(config),
        name,
    })
}
