//! Large messages go to a file while they arrive, so that many concurrent
//! uploads cost disk, not memory; only when one is complete is it read back
//! (once, into one buffer) to be parsed and stored, and a memory budget lets
//! only so many large messages be in memory at a time.
//!
//! Spool files live in `<data_dir>/spool` (0700), are created 0600, hold at
//! most `limits.max_message_size` bytes (the session stops storing content
//! past the cap), and are removed when the message was answered — committed,
//! refused or abandoned — and at start-up (what a crash left).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Content beyond this many bytes goes to a spool file while it arrives.
pub const SPOOL_THRESHOLD: usize = 1024 * 1024;
/// Bytes of spooled messages held in memory at once (parsed and stored),
/// in KiB: a message larger than this waits until it is alone.
const IN_MEMORY_BUDGET_KIB: u32 = 64 * 1024;

/// The spool directory and the budget of messages read back from it.
pub struct Spool {
    dir: PathBuf,
    next: AtomicU64,
    budget: Semaphore,
}

impl Spool {
    /// Creates `dir` (0700) when missing, makes it 0700 when it is not (it
    /// is ours alone) and removes what is left in it.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        crate::auth::private_fs::create_dir(dir)?;
        #[cfg(unix)]
        if crate::auth::private_fs::shared_bits(dir) != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut removed = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                dir = %dir.display(),
                removed,
                "removed spool files of messages never answered (a crash or kill)"
            );
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(1),
            budget: Semaphore::new(IN_MEMORY_BUDGET_KIB as usize),
        })
    }

    /// A new, empty spool file (0600).
    pub async fn create(&self) -> std::io::Result<SpoolFile> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{}-{n}.eml", std::process::id()));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&path).await?;
        Ok(SpoolFile {
            path: Some(path),
            file: Some(file),
            len: 0,
            failed: None,
        })
    }
}

/// One message being spooled; the file is removed when this is dropped.
pub struct SpoolFile {
    path: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    len: usize,
    /// The first write error: the message is then answered 451.
    failed: Option<std::io::Error>,
}

/// A spooled message read back, with its share of the memory budget.
pub struct Loaded<'a> {
    pub bytes: Vec<u8>,
    _budget: SemaphorePermit<'a>,
    _file: SpoolFile,
}

impl SpoolFile {
    /// A spool file that could not be created: takes nothing, loads as `error`.
    pub fn broken(error: std::io::Error) -> SpoolFile {
        SpoolFile {
            path: None,
            file: None,
            len: 0,
            failed: Some(error),
        }
    }

    /// Appends content; after a write error nothing more is written and
    /// [`load`](Self::load) reports it.
    pub async fn append(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write_all(bytes).await {
            Ok(()) => self.len += bytes.len(),
            Err(e) => self.failed = Some(e),
        }
    }

    /// Appends the rest of the message and reads the whole back, once the
    /// memory budget has room for it. The file stays until the result is
    /// dropped (after the message was answered).
    pub async fn load<'s>(mut self, rest: &[u8], spool: &'s Spool) -> std::io::Result<Loaded<'s>> {
        self.append(rest).await;
        if let Some(file) = self.file.as_mut() {
            let flushed = file.flush().await;
            if let (Err(e), None) = (flushed, &self.failed) {
                self.failed = Some(e);
            }
        }
        self.file = None;
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let kib = u32::try_from(self.len.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, IN_MEMORY_BUDGET_KIB);
        let permit = spool
            .budget
            .acquire_many(kib)
            .await
            .map_err(|_| std::io::Error::other("the spool budget is closed"))?;
        let Some(path) = &self.path else {
            return Err(std::io::Error::other("no spool file"));
        };
        let bytes = tokio::fs::read(path).await?;
        if bytes.len() != self.len {
            return Err(std::io::Error::other(format!(
                "spool file {} has {} bytes, {} were written",
                path.display(),
                bytes.len(),
                self.len
            )));
        }
        Ok(Loaded {
            bytes,
            _budget: permit,
            _file: self,
        })
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        // Dropping the tokio file closes it in the background; unlinking an
        // open file is fine on Unix.
        self.file = None;
        if let Some(path) = &self.path
            && let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a spool file");
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[tokio::test]
    async fn a_spooled_message_comes_back_whole_and_its_file_goes_away() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let spool = Spool::open(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut file = spool.create().await.unwrap();
        file.append(b"Subject: x\r\n\r\n").await;
        file.append(&[b'a'; 5000]).await;
        let [path] = files(&dir).try_into().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = file.load(b"end\r\n", &spool).await.unwrap();
        let mut want = b"Subject: x\r\n\r\n".to_vec();
        want.extend_from_slice(&[b'a'; 5000]);
        want.extend_from_slice(b"end\r\n");
        assert_eq!(loaded.bytes, want);
        assert!(path.exists(), "kept until the message is answered");
        drop(loaded);
        assert!(files(&dir).is_empty());
    }

    #[tokio::test]
    async fn an_abandoned_message_leaves_no_file_and_start_up_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let spool = Spool::open(&dir).unwrap();
        let mut file = spool.create().await.unwrap();
        file.append(b"partial").await;
        drop(file);
        assert!(files(&dir).is_empty());
        std::fs::write(dir.join("123-1.eml"), b"left by a crash").unwrap();
        Spool::open(&dir).unwrap();
        assert!(files(&dir).is_empty());
    }
}
