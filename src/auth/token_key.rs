//! The instance key that signs reply tokens: from an environment variable
//! (hex), or from a file, generated with the system's random source on
//! first start (0600 in a 0700 directory). Its bytes never reach a log.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::TokenKeySource;
use crate::mail::Secret;

/// Bytes of a generated key.
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("tickets.reply_token_key_env: environment variable {0} is not set")]
    EnvMissing(String),
    #[error("tickets.reply_token_key_env: {0} must hold at least 64 hex digits (32 bytes)")]
    EnvInvalid(String),
    #[error("tickets.reply_token_key_file: {path}: {detail}")]
    File { path: String, detail: String },
}

/// The key's bytes, hex-decoded from the environment or read (or made) in
/// its file.
pub fn load(source: &TokenKeySource) -> Result<Secret, TokenKeyError> {
    match source {
        TokenKeySource::Env(name) => {
            let value = std::env::var(name).map_err(|_| TokenKeyError::EnvMissing(name.clone()))?;
            decode_hex(value.trim())
                .filter(|k| k.len() >= KEY_LEN)
                .map(|k| Secret::new(hex(&k)))
                .ok_or_else(|| TokenKeyError::EnvInvalid(name.clone()))
        }
        TokenKeySource::File(path) => load_file(path),
    }
}

/// The raw key bytes of a loaded secret.
pub fn bytes(secret: &Secret) -> Vec<u8> {
    decode_hex(secret.expose()).unwrap_or_default()
}

fn load_file(path: &Path) -> Result<Secret, TokenKeyError> {
    let file_err = |detail: String| TokenKeyError::File {
        path: path.display().to_string(),
        detail,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path).map_err(file_err)?;
            decode_hex(text.trim())
                .filter(|k| k.len() >= KEY_LEN)
                .map(|k| Secret::new(hex(&k)))
                .ok_or_else(|| file_err("must hold at least 64 hex digits (32 bytes)".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| file_err("the system's random source failed".into()))?;
            super::private_fs::create_file(path, format!("{}\n", hex(&key)).as_bytes())
                .map_err(|e| file_err(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated a new reply-token key");
            Ok(Secret::new(hex(&key)))
        }
        Err(e) => Err(file_err(e.to_string())),
    }
}

fn check_private(path: &Path) -> Result<(), String> {
    match super::private_fs::shared_bits(path) {
        0 => Ok(()),
        bits => Err(format!(
            "readable or writable by other users (group/other bits {bits:o}): chmod 600 it"
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_generated_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("reply-token.key");
        let first = load(&TokenKeySource::File(path.clone())).unwrap();
        assert_eq!(bytes(&first).len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = load(&TokenKeySource::File(path)).unwrap();
        assert_eq!(bytes(&first), bytes(&again));
        assert_eq!(format!("{first:?}"), "<redacted>");
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_or_short_key_file_is_refused_without_printing_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = "ab".repeat(32);
        std::fs::write(&path, &key).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&TokenKeySource::File(path.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600") && !e.contains(&key), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "abcd").unwrap();
        let e = load(&TokenKeySource::File(path)).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }

    #[test]
    fn an_environment_key_must_be_long_hex() {
        let name = "MAILGATE_TEST_TOKEN_KEY_UNIT";
        assert!(matches!(
            load(&TokenKeySource::Env(name.into())),
            Err(TokenKeyError::EnvMissing(_))
        ));
        // SAFETY: this test alone uses this variable.
        unsafe { std::env::set_var(name, "zz") };
        let e = load(&TokenKeySource::Env(name.into()))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("zz"), "{e}");
        unsafe { std::env::set_var(name, "0f".repeat(32)) };
        assert_eq!(
            bytes(&load(&TokenKeySource::Env(name.into())).unwrap()),
            vec![0x0f; 32]
        );
    }
}
