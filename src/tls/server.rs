//! TLS server configuration: the operator's certificate, or a development
//! certificate made on first start so that STARTTLS works out of the box.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// File names of the development certificate inside `tls.dev_cert_dir`.
pub const DEV_CERT: &str = "dev-cert.pem";
pub const DEV_KEY: &str = "dev-key.pem";

/// Loads the configured certificate, or makes/reuses the development one.
/// Returns the rustls config and the certificate path in use.
pub fn server_config(tls: &TlsConfig) -> Result<(Arc<ServerConfig>, PathBuf)> {
    let (cert_path, key_path) = match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => ensure_dev_cert(&tls.dev_cert_dir)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("tls.cert: cannot read {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "tls.cert: {} is not a valid PEM certificate chain",
                cert_path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert: no certificate found in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("tls.key: no usable private key in {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert/tls.key: the key does not match the certificate")?;
    Ok((Arc::new(config), cert_path))
}

/// Makes a self-signed certificate for localhost, 127.0.0.1 and ::1 unless
/// one is already there. The key file is readable by its owner only.
pub fn ensure_dev_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join(DEV_CERT);
    let key_path = dir.join(DEV_KEY);
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("tls.dev_cert_dir: cannot create {}", dir.display()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .context("generating the development certificate")?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::warn!(
        cert = %cert_path.display(),
        "generated a self-signed development certificate; configure tls.cert and tls.key for production"
    );
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cert_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsConfig {
            cert: None,
            key: None,
            dev_cert_dir: dir.path().join("certs"),
        };
        let (_, path) = server_config(&tls).unwrap();
        let first = std::fs::read(&path).unwrap();
        let (_, again) = server_config(&tls).unwrap();
        assert_eq!(
            first,
            std::fs::read(again).unwrap(),
            "the certificate is reused, not remade"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("certs").join(DEV_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key must not be readable by others");
        }
    }
}
