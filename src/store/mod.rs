//! The embedded store (redb): tickets, messages, raw mail, rejections.
//!
//! Writes go through one committer thread that groups concurrent requests
//! into a single durable transaction ([`commit`]); reads use redb's MVCC
//! snapshots from any thread ([`query`]).

pub mod commit;
pub mod mailbox_state;
pub mod query;
pub mod redb_txn;
pub mod schema;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("corrupt record in {table} for key {key}: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("commit failed: {0}")]
    Failed(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Opens (or creates) the database file and its tables.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(schema::COUNTERS)?;
            txn.open_table(schema::TICKETS)?;
            txn.open_table(schema::TICKET_NUMBERS)?;
            txn.open_table(schema::TICKETS_BY_MAILBOX)?;
            txn.open_table(schema::MESSAGES)?;
            txn.open_table(schema::MESSAGE_RAW)?;
            txn.open_table(schema::ATTACHMENTS)?;
            txn.open_table(schema::TICKET_MESSAGES)?;
            txn.open_table(schema::MESSAGE_IDS)?;
            txn.open_table(schema::DEDUP)?;
            txn.open_table(schema::REJECTIONS)?;
            txn.open_table(schema::REJECTION_RAW)?;
            txn.open_table(schema::UPSTREAM_SEEN)?;
            txn.open_table(schema::MAILBOX_STATE)?;
        }
        txn.commit()?;
        Ok(Store { db: Arc::new(db) })
    }

    pub(crate) fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// Verifies a read transaction can be opened (health check).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.db.begin_read()?;
        Ok(())
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serializing them
    // cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
