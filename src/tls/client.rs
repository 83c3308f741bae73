//! TLS for connections the gateway opens (upstream mailboxes, the outbound
//! relay): system roots plus an optional extra CA file (self-hosted servers
//! with a private CA), and connect helpers that turn every failure into a
//! [`ConnectError`] naming what went wrong.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where to connect, and how long each step may take.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Extra trusted CA certificate (PEM), on top of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Resolving, connecting and the TLS handshake each finish within this.
    pub connect_timeout: std::time::Duration,
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("timed out during {0}")]
    Timeout(String),
}

/// The system roots, read once per process: reading and parsing them
/// (hundreds of files under SSL_CERT_DIR) for every connection cost some
/// 50 ms per outbound message.
fn native_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

/// Builds the client config: native roots + `ca_file` (read each time, so a
/// replaced CA file is used by the next connection).
pub fn client_config(target: &Target) -> Result<Arc<ClientConfig>, ConnectError> {
    let mut roots = native_roots().clone();
    if let Some(path) = &target.ca_file {
        let tls_err = |detail: String| ConnectError::Tls {
            host: target.host.clone(),
            detail,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| tls_err(format!("cannot read ca_file {}: {e}", path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(format!("ca_file {} is not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(tls_err(format!(
                "no certificate in ca_file {}",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("unusable certificate in {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls {
            host: target.host.clone(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Resolves and connects TCP within the connect timeout.
pub async fn connect_tcp(target: &Target) -> Result<TcpStream, ConnectError> {
    let host = target.host.clone();
    let port = target.port;
    let addresses: Vec<_> = tokio::time::timeout(
        target.connect_timeout,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| ConnectError::Timeout(format!("resolving {host}")))?
    .map_err(|e| ConnectError::Dns {
        host: host.clone(),
        detail: e.to_string(),
    })?
    .collect();
    if addresses.is_empty() {
        return Err(ConnectError::Dns {
            host,
            detail: "no addresses".into(),
        });
    }
    let mut last = String::new();
    for address in &addresses {
        match tokio::time::timeout(target.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err(ConnectError::Connect {
        address: format!("{host}:{port}"),
        detail: last,
    })
}

/// Wraps a connected stream in TLS, verifying the certificate for `host`.
pub async fn handshake<S>(target: &Target, stream: S) -> Result<TlsStream<S>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = client_config(target)?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| ConnectError::Tls {
        host: target.host.clone(),
        detail: format!("invalid server name: {e}"),
    })?;
    tokio::time::timeout(
        target.connect_timeout,
        TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| ConnectError::Timeout("TLS handshake".into()))?
    .map_err(|e| ConnectError::Tls {
        host: target.host.clone(),
        detail: e.to_string(),
    })
}
