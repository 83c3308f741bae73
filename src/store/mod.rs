//! The embedded store (redb): tickets, messages, raw mail, rejections.
//!
//! Writes go through one committer thread that groups concurrent requests
//! into a single durable transaction ([`commit`]); reads use redb's MVCC
//! snapshots from any thread ([`query`]).

pub mod codec;
pub mod commit;
pub mod index;
#[cfg(test)]
mod index_tests;
pub mod journal;
mod lazy_table;
pub mod mailbox_state;
pub mod oauth_tokens;
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
    #[error("damaged value in {table} for key {key}: {source}")]
    Unpack {
        table: &'static str,
        key: String,
        source: std::io::Error,
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
    #[error("cannot open the commit journal {path}: {source}")]
    Journal {
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
    path: Arc<std::path::PathBuf>,
}

/// redb's page cache when the caller does not say (`store.cache_size`'s
/// default): redb's own default is 1 GiB, which the resident memory of a
/// long-running gateway grows toward.
pub const DEFAULT_CACHE_SIZE: usize = crate::config::store::DEFAULT_CACHE_SIZE;

impl Store {
    /// Opens (or creates) the database file and its tables, with the
    /// default cache.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_SIZE)
    }

    /// [`open`](Store::open) with `cache_size` bytes of page cache (read
    /// cache and write buffer together).
    pub fn open_with_cache(path: &Path, cache_size: usize) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            private_dir(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        private_file(path).map_err(|source| StoreError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
        let db = Database::builder()
            .set_cache_size(cache_size)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(schema::COUNTERS)?;
            txn.open_table(schema::TICKETS)?;
            txn.open_table(schema::TICKET_NUMBERS)?;
            txn.open_table(schema::TICKETS_BY_MAILBOX)?;
            txn.open_table(schema::MESSAGES)?;
            txn.open_table(schema::MESSAGE_RAW)?;
            txn.open_table(schema::MESSAGE_RAW_PACKED)?;
            txn.open_table(schema::ATTACHMENTS)?;
            txn.open_table(schema::TICKET_MESSAGES)?;
            txn.open_table(schema::MESSAGE_IDS)?;
            txn.open_table(schema::DEDUP)?;
            txn.open_table(schema::REJECTIONS)?;
            txn.open_table(schema::REJECTION_RAW)?;
            txn.open_table(schema::REJECTION_RAW_PACKED)?;
            txn.open_table(schema::UPSTREAM_SEEN)?;
            txn.open_table(schema::MAILBOX_STATE)?;
            txn.open_table(schema::OUTBOX)?;
            txn.open_table(schema::TICKET_EVENTS)?;
            txn.open_table(schema::OUTBOX_PENDING)?;
            txn.open_table(schema::SEND_LOG)?;
            txn.open_table(schema::NOTIFY_BY_RECIPIENT)?;
            txn.open_table(schema::NOTIFY_BY_TICKET)?;
            txn.open_table(schema::OAUTH_TOKENS)?;
            txn.open_table(schema::META)?;
            txn.open_table(schema::TICKET_FILTERS)?;
            txn.open_table(schema::REJECTIONS_BY_REASON)?;
            txn.open_table(schema::OUTBOX_FILTERS)?;
        }
        txn.commit()?;
        index::ensure(&db)?;
        Ok(Store {
            db: Arc::new(db),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The commit journal beside the database file (see [`journal`]).
    pub fn journal_path(&self) -> std::path::PathBuf {
        let mut name = self.path.as_os_str().to_os_string();
        name.push(".journal");
        name.into()
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

/// Mail is personal data: the data directory is created 0700 and the
/// database file 0600, whatever the umask. An existing store that others can
/// read is not changed behind the operator's back, but warned about.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    crate::auth::private_fs::create_dir(dir)?;
    warn_if_shared(dir, "data directory");
    Ok(())
}

fn private_file(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return crate::auth::private_fs::create_file(path, b"");
    }
    warn_if_shared(path, "database file");
    Ok(())
}

fn warn_if_shared(path: &Path, what: &str) {
    let bits = crate::auth::private_fs::shared_bits(path);
    if bits != 0 {
        tracing::warn!(
            path = %path.display(),
            others = format!("{bits:o}"),
            "the {what} is readable by other users; it holds mail: chmod go-rwx it"
        );
    }
}

/// A record as stored (plain or compressed JSON, see [`codec`]).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let json = codec::unpack_record(bytes).map_err(|source| StoreError::Unpack {
        table,
        key: key.to_string(),
        source,
    })?;
    serde_json::from_slice(&json).map_err(|source| StoreError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

/// A record as it is stored: its JSON, compressed (see [`codec`]).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serializing them
    // cannot fail.
    codec::pack_record(encode_plain(value))
}

/// A record as plain JSON, uncompressed ([`decode`] reads both).
pub(crate) fn encode_plain<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Raw bytes from a `*_raw_packed` table.
pub(crate) fn unpack_raw(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<Vec<u8>, StoreError> {
    codec::unpack_raw(bytes).map_err(|source| StoreError::Unpack {
        table,
        key: key.to_string(),
        source,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::Store;

    #[test]
    fn data_dir_and_database_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").join("inner");
        let path = data.join("mailgate.redb");
        Store::open(&path).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}
