//! The store as the OAuth2 token vault: one record per mailbox in
//! `oauth_tokens`, written in its own durable transaction (a rotated
//! refresh token must be on disk before the access token that came with it
//! is used).

use redb::ReadableDatabase;

use super::schema::OAUTH_TOKENS;
use super::{Store, StoreError, decode, encode_plain};
use crate::oauth::vault::{StoredTokens, TokenVault, VaultError};

impl Store {
    /// The record of `mailbox`, if it has one.
    pub fn oauth_tokens(&self, mailbox: &str) -> Result<Option<StoredTokens>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(OAUTH_TOKENS)?;
        match table.get(mailbox)? {
            Some(v) => Ok(Some(decode("oauth_tokens", mailbox, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn save_oauth_tokens(
        &self,
        mailbox: &str,
        record: &StoredTokens,
    ) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(OAUTH_TOKENS)?;
            // Plain JSON: one small record per mailbox, and the file shows
            // that only sealed tokens are in it (its test scans for them).
            table.insert(mailbox, encode_plain(record).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl TokenVault for Store {
    fn load(&self, mailbox: &str) -> Result<Option<StoredTokens>, VaultError> {
        self.oauth_tokens(mailbox)
            .map_err(|e| VaultError::Store(e.to_string()))
    }

    fn save(&self, mailbox: &str, record: &StoredTokens) -> Result<(), VaultError> {
        self.save_oauth_tokens(mailbox, record)
            .map_err(|e| VaultError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::oauth::vault::{AccessEntry, TokenCipher, TokenSecrets};

    #[test]
    fn the_database_file_never_holds_a_token_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.redb");
        let refresh = "1.AQ-refresh-token-in-clear-would-be-found";
        let access = "eyJ-access-token-in-clear-would-be-found";
        let cipher = TokenCipher::new(&[3u8; 32]).unwrap();
        {
            let store = Store::open(&path).unwrap();
            let mut record = StoredTokens::default();
            record.health.refreshes = 1;
            let secrets = TokenSecrets {
                refresh_token: Some(refresh.into()),
                seeded_from: None,
                access: BTreeMap::from([(
                    "graph".to_string(),
                    AccessEntry {
                        token: access.into(),
                        expires_at: 100,
                        obtained_at: 50,
                    },
                )]),
            };
            cipher
                .seal_secrets("support", &secrets, &mut record)
                .unwrap();
            TokenVault::save(&store, "support", &record).unwrap();
            let back = TokenVault::load(&store, "support").unwrap().unwrap();
            assert_eq!(back, record);
            assert_eq!(cipher.open_secrets("support", &back).unwrap(), secrets);
            assert_eq!(TokenVault::load(&store, "other").unwrap(), None);
        }
        let bytes = std::fs::read(&path).unwrap();
        for needle in [refresh, access, "refresh-token", "access-token"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} is in the database file"
            );
        }
        // The record is there (health in clear), so the scan looked at it.
        assert!(bytes.windows(9).any(|w| w == b"refreshes"));
    }
}
