//! The instance keys (the one that signs reply tokens, the one that
//! encrypts stored OAuth2 tokens): from an environment variable (hex or
//! base64), or from a file, generated with the system's random source on
//! first start (0600 in a 0700 directory). Their bytes never reach a log.

use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::TokenKeySource;
use crate::mail::Secret;

/// Bytes of a generated key.
const KEY_LEN: usize = 32;

/// Which key: names the config keys in messages and the file in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    /// The config key without `_env` / `_file`: `tickets.reply_token_key`.
    pub key: &'static str,
    /// What it is for, in the log line of a generated key.
    pub what: &'static str,
}

/// The key that signs reply tokens.
pub const REPLY_TOKEN: KeyUse = KeyUse {
    key: "tickets.reply_token_key",
    what: "reply-token",
};

/// The key that encrypts stored OAuth2 tokens.
pub const OAUTH_TOKENS: KeyUse = KeyUse {
    key: "oauth.key",
    what: "OAuth2 token",
};

const INVALID: &str = "must hold at least 64 hex digits (32 bytes) or the base64 of 32 bytes";

#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("{key}_env: environment variable {name} is not set")]
    EnvMissing { key: &'static str, name: String },
    #[error("{key}_env: {name} {INVALID}")]
    EnvInvalid { key: &'static str, name: String },
    #[error("{key}_file: {path}: {detail}")]
    File {
        key: &'static str,
        path: String,
        detail: String,
    },
}

/// The reply-token key's bytes, decoded from the environment or read (or
/// made) in its file.
pub fn load(source: &TokenKeySource) -> Result<Secret, TokenKeyError> {
    load_for(source, REPLY_TOKEN)
}

/// A key's bytes (as hex in the secret: see [`bytes`]), from the
/// environment or its file, generated when the file does not exist.
pub fn load_for(source: &TokenKeySource, use_: KeyUse) -> Result<Secret, TokenKeyError> {
    match source {
        TokenKeySource::Env(name) => {
            let value = std::env::var(name).map_err(|_| TokenKeyError::EnvMissing {
                key: use_.key,
                name: name.clone(),
            })?;
            decode_key(value.trim())
                .map(|k| Secret::new(hex(&k)))
                .ok_or_else(|| TokenKeyError::EnvInvalid {
                    key: use_.key,
                    name: name.clone(),
                })
        }
        TokenKeySource::File(path) => load_file(path, use_),
    }
}

/// Hex of at least 32 bytes, or base64 of exactly 32.
fn decode_key(text: &str) -> Option<Vec<u8>> {
    if let Some(k) = decode_hex(text).filter(|k| k.len() >= KEY_LEN) {
        return Some(k);
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|k| k.len() == KEY_LEN)
}

/// The raw key bytes of a loaded secret.
pub fn bytes(secret: &Secret) -> Vec<u8> {
    decode_hex(secret.expose()).unwrap_or_default()
}

fn load_file(path: &Path, use_: KeyUse) -> Result<Secret, TokenKeyError> {
    let file_err = |detail: String| TokenKeyError::File {
        key: use_.key,
        path: path.display().to_string(),
        detail,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path).map_err(file_err)?;
            decode_key(text.trim())
                .map(|k| Secret::new(hex(&k)))
                .ok_or_else(|| file_err(INVALID.into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| file_err("the system's random source failed".into()))?;
            super::private_fs::create_file(path, format!("{}\n", hex(&key)).as_bytes())
                .map_err(|e| file_err(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated a new {} key", use_.what);
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
            Err(TokenKeyError::EnvMissing { .. })
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
        // base64 of 32 bytes, as `openssl rand -base64 32` prints it.
        unsafe { std::env::set_var(name, "Dw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8=") };
        let e = load_for(&TokenKeySource::Env(name.into()), OAUTH_TOKENS).unwrap();
        assert_eq!(bytes(&e), vec![0x0f; 32]);
        unsafe { std::env::set_var(name, "Dw8P") };
        let e = load_for(&TokenKeySource::Env(name.into()), OAUTH_TOKENS)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("oauth.key_env: "), "{e}");
    }
}
