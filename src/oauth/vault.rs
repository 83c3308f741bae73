//! Tokens at rest: what the gateway keeps per OAuth2 mailbox, the secret
//! part sealed with AES-256-GCM (a fresh random 96-bit nonce per write, the
//! mailbox name as associated data, so a record copied to another mailbox
//! does not open), the health part in clear (so `oauth status` and the API
//! read it without the key). The store keeps the records through
//! [`TokenVault`], defined here because the store sits above this layer.

use std::collections::BTreeMap;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::mail::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("the OAuth2 token key must be 32 bytes")]
    BadKey,
    #[error("the system's random source failed")]
    Random,
    /// Wrong key, or a record altered or moved to another mailbox.
    #[error(
        "the stored OAuth2 tokens of mailbox {0} cannot be decrypted (another oauth key, or an altered record)"
    )]
    Undecryptable(String),
    #[error("token store: {0}")]
    Store(String),
}

/// The AEAD key, from `[oauth] key_file` / `key_env`.
pub struct TokenCipher {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(<key not shown>)")
    }
}

impl TokenCipher {
    /// `key`: exactly 32 bytes (the first 32 of a longer hex key).
    pub fn new(key: &[u8]) -> Result<TokenCipher, VaultError> {
        let key = key.get(..32).ok_or(VaultError::BadKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| VaultError::BadKey)?;
        Ok(TokenCipher {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        })
    }

    /// nonce || ciphertext || tag.
    pub fn seal(&self, mailbox: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(mailbox.as_bytes()),
                &mut data,
            )
            .map_err(|_| VaultError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    pub fn open(&self, mailbox: &str, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
        let undecryptable = || VaultError::Undecryptable(mailbox.to_string());
        if sealed.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(mailbox.as_bytes()), &mut data)
            .map_err(|_| undecryptable())?;
        Ok(plain.to_vec())
    }

    /// The secrets of a record, decrypted (empty when it has none yet).
    pub fn open_secrets(
        &self,
        mailbox: &str,
        record: &StoredTokens,
    ) -> Result<TokenSecrets, VaultError> {
        if record.sealed.is_empty() {
            return Ok(TokenSecrets::default());
        }
        let plain = self.open(mailbox, &record.sealed)?;
        serde_json::from_slice(&plain).map_err(|_| VaultError::Undecryptable(mailbox.to_string()))
    }

    /// Seals `secrets` into `record` (a new nonce every time).
    pub fn seal_secrets(
        &self,
        mailbox: &str,
        secrets: &TokenSecrets,
        record: &mut StoredTokens,
    ) -> Result<(), VaultError> {
        let plain = serde_json::to_vec(secrets).map_err(|e| VaultError::Store(e.to_string()))?;
        record.sealed = self.seal(mailbox, &plain)?;
        Ok(())
    }
}

/// One cached access token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessEntry {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub obtained_at: i64,
}

/// The secret part of a record: only ever stored sealed.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenSecrets {
    pub refresh_token: Option<String>,
    /// SHA-256 (hex) of the configured refresh token this record last took
    /// over: a different one in the config is the admin's new token and
    /// wins; the same one is older than what the vault holds.
    pub seeded_from: Option<String>,
    /// Per use (`imap`, `graph`...).
    pub access: BTreeMap<String, AccessEntry>,
}

impl std::fmt::Debug for TokenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecrets")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("access", &self.access.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where the refresh token in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenOrigin {
    /// `refresh_token_env` / `refresh_token_file`.
    Config,
    /// The token endpoint sent a new one (rotation).
    Rotated,
    /// `mailgate oauth authorize`.
    Authorized,
}

/// Token health, in clear (no secret in it). Times are unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHealth {
    /// Expiry of the access token obtained last.
    pub access_expires_at: Option<i64>,
    pub last_refresh_ok_at: Option<i64>,
    /// Text of the last failed refresh (cleared by a good one).
    pub last_refresh_error: Option<String>,
    pub last_refresh_error_at: Option<i64>,
    /// `revoked`, `unavailable`, `not_configured`.
    pub last_refresh_error_kind: Option<String>,
    /// Start of the current run of failed refreshes.
    pub failing_since: Option<i64>,
    pub refresh_token_obtained_at: Option<i64>,
    pub refresh_token_origin: Option<RefreshTokenOrigin>,
    /// Refreshes that worked, all time.
    pub refreshes: u64,
}

/// What the store keeps per mailbox.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTokens {
    pub health: TokenHealth,
    /// [`TokenSecrets`] as JSON, sealed; base64 in the record.
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("health", &self.health)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Durable storage of the records, one per mailbox (blocking calls: the
/// provider runs them off the async threads).
pub trait TokenVault: Send + Sync {
    fn load(&self, mailbox: &str) -> Result<Option<StoredTokens>, VaultError>;
    /// Durable when it returns.
    fn save(&self, mailbox: &str, record: &StoredTokens) -> Result<(), VaultError>;
}

/// A vault in memory (tests, and commands that store nothing).
#[derive(Default)]
pub struct MemoryVault {
    records: std::sync::Mutex<BTreeMap<String, StoredTokens>>,
}

impl TokenVault for MemoryVault {
    fn load(&self, mailbox: &str) -> Result<Option<StoredTokens>, VaultError> {
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(records.get(mailbox).cloned())
    }

    fn save(&self, mailbox: &str, record: &StoredTokens) -> Result<(), VaultError> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(mailbox.to_string(), record.clone());
        Ok(())
    }
}

/// SHA-256 of a secret, hex: recognises a configured token again without
/// keeping it.
pub fn fingerprint(secret: &Secret) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.expose().as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The base64 of a sealed record, for tests that look for it.
pub fn encode_sealed(sealed: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(rt: &str) -> TokenSecrets {
        TokenSecrets {
            refresh_token: Some(rt.into()),
            seeded_from: None,
            access: BTreeMap::from([(
                "imap".to_string(),
                AccessEntry {
                    token: "at-very-secret".into(),
                    expires_at: 10,
                    obtained_at: 5,
                },
            )]),
        }
    }

    #[test]
    fn round_trip_with_a_new_nonce_every_time() {
        let cipher = TokenCipher::new(&[7u8; 32]).unwrap();
        let mut record = StoredTokens::default();
        cipher
            .seal_secrets("support", &secrets("rt-1"), &mut record)
            .unwrap();
        let first = record.sealed.clone();
        assert!(
            !String::from_utf8_lossy(&first).contains("rt-1")
                && !String::from_utf8_lossy(&first).contains("at-very-secret")
        );
        assert_eq!(
            cipher.open_secrets("support", &record).unwrap(),
            secrets("rt-1")
        );
        cipher
            .seal_secrets("support", &secrets("rt-1"), &mut record)
            .unwrap();
        assert_ne!(first[..NONCE_LEN], record.sealed[..NONCE_LEN]);
        assert_ne!(first, record.sealed);
        let json = serde_json::to_string(&record).unwrap();
        let back: StoredTokens = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        let shown = format!("{record:?} {:?}", secrets("rt-1"));
        assert!(
            !shown.contains("rt-1") && !shown.contains("at-very"),
            "{shown}"
        );
    }

    #[test]
    fn a_tampered_record_another_mailbox_or_another_key_does_not_open() {
        let cipher = TokenCipher::new(&[7u8; 32]).unwrap();
        let mut record = StoredTokens::default();
        cipher
            .seal_secrets("support", &secrets("rt-1"), &mut record)
            .unwrap();
        let mut tampered = record.clone();
        let last = tampered.sealed.len() - 1;
        tampered.sealed[last] ^= 1;
        assert_eq!(
            cipher.open_secrets("support", &tampered),
            Err(VaultError::Undecryptable("support".into()))
        );
        let mut flipped = record.clone();
        flipped.sealed[NONCE_LEN + 2] ^= 0x80;
        assert!(cipher.open_secrets("support", &flipped).is_err());
        assert!(cipher.open_secrets("sales", &record).is_err());
        let other = TokenCipher::new(&[8u8; 32]).unwrap();
        assert!(other.open_secrets("support", &record).is_err());
        assert!(cipher.open("support", b"short").is_err());
        assert_eq!(
            TokenCipher::new(&[1u8; 16]).unwrap_err(),
            VaultError::BadKey
        );
    }
}
