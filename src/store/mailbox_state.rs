//! Sync status of upstream mailboxes, kept across restarts: an
//! `auth_failed` mailbox stays paused after a restart until it is resumed,
//! so a wrong password is never retried into an account lockout.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::schema::{MAILBOX_STATE, UPSTREAM_SEEN};
use super::{Store, StoreError, decode, encode};
use crate::tickets::model::Earlier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Last sync worked (or none has run yet).
    #[default]
    Ok,
    /// `active = false`, or paused by an operator.
    Paused,
    /// Too many authentication failures in a row: not retried until resumed.
    AuthFailed,
    /// The last sync failed; it is retried with backoff.
    Error,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    pub status: SyncStatus,
    /// RFC 3339 time of the last sync that completed.
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Metrics/API label of the last error (dns, tls, auth, ...).
    pub last_error_kind: Option<String>,
    /// Messages imported from upstream, all time.
    pub imported: u64,
    /// Authentication failures in a row.
    pub auth_failures: u32,
}

impl Store {
    pub fn mailbox_state(&self, name: &str) -> Result<Option<MailboxState>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(MAILBOX_STATE)?;
        match table.get(name)? {
            Some(v) => Ok(Some(decode("mailbox_state", name, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn save_mailbox_state(&self, name: &str, state: &MailboxState) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        {
            let mut table = txn.open_table(MAILBOX_STATE)?;
            table.insert(name, encode(state).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// What an upstream message already became, if it was committed.
    pub fn upstream_seen(&self, mailbox: &str, key: &str) -> Result<Option<Earlier>, StoreError> {
        let txn = self.db().begin_read()?;
        let table = txn.open_table(UPSTREAM_SEEN)?;
        Ok(table
            .get((mailbox, key))?
            .and_then(|v| Earlier::decode(v.value())))
    }
}
