//! TLS for upstream connections: system roots plus an optional extra CA
//! file (self-hosted servers with a private CA), and a connect helper that
//! turns every failure into a [`FetchError`] naming what went wrong.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::inbound::pull::upstream::{ConnectSettings, FetchError};

/// Builds the client config: native roots + `ca_file`.
pub fn client_config(settings: &ConnectSettings) -> Result<Arc<ClientConfig>, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.ca_file {
        let tls_err = |detail: String| FetchError::Tls {
            host: settings.host.clone(),
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
        .map_err(|e| FetchError::Tls {
            host: settings.host.clone(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Resolves and connects TCP within the connect timeout.
pub async fn connect_tcp(settings: &ConnectSettings) -> Result<TcpStream, FetchError> {
    let host = settings.host.clone();
    let port = settings.port;
    let addresses: Vec<_> = tokio::time::timeout(
        settings.connect_timeout,
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| FetchError::Timeout(format!("resolving {host}")))?
    .map_err(|e| FetchError::Dns {
        host: host.clone(),
        detail: e.to_string(),
    })?
    .collect();
    if addresses.is_empty() {
        return Err(FetchError::Dns {
            host,
            detail: "no addresses".into(),
        });
    }
    let mut last = String::new();
    for address in &addresses {
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
    }
    Err(FetchError::Connect {
        address: format!("{host}:{port}"),
        detail: last,
    })
}

/// Wraps a connected stream in TLS, verifying the certificate for `host`.
pub async fn handshake<S>(settings: &ConnectSettings, stream: S) -> Result<TlsStream<S>, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = client_config(settings)?;
    let name = ServerName::try_from(settings.host.clone()).map_err(|e| FetchError::Tls {
        host: settings.host.clone(),
        detail: format!("invalid server name: {e}"),
    })?;
    tokio::time::timeout(
        settings.connect_timeout,
        TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| FetchError::Timeout("TLS handshake".into()))?
    .map_err(|e| FetchError::Tls {
        host: settings.host.clone(),
        detail: e.to_string(),
    })
}
