//! Group commit: one writer thread, many waiting messages, one fsync.
//!
//! Each SMTP session (or fetcher) sends a [`CommitRequest`] and waits for
//! its outcome; the writer takes every request queued at that moment, applies
//! them in one redb write transaction with immediate durability, commits, and
//! only then answers them all. Durable throughput then grows with concurrency
//! instead of paying one fsync per message. Dedup and threading are decided
//! inside that transaction, so two copies of a message in the same batch
//! still make one ticket message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Store, StoreError};
use crate::tickets::model::Outcome;
use crate::tickets::{CommitRequest, OpOutcome, Operation, TicketSettings};

/// A store the writer thread can apply batches to: all requests of one
/// batch in one durable transaction, all or nothing, each through
/// [`crate::tickets::apply`].
pub trait Backend: Send + Sync + 'static {
    fn apply_batch(
        &self,
        settings: &TicketSettings,
        operations: &[&Operation],
    ) -> Result<Vec<OpOutcome>, StoreError>;
}

/// Called after each transaction with its duration and request count.
pub type CommitObserver = Arc<dyn Fn(Duration, usize) + Send + Sync>;

struct Job {
    request: Operation,
    reply: oneshot::Sender<Result<OpOutcome, String>>,
}

/// The way into the writer's queue; None once [`WriterHandle::close`] ran.
type Queue = Arc<RwLock<Option<mpsc::Sender<Job>>>>;

/// Handle on the writer thread; clone freely.
#[derive(Clone)]
pub struct Committer {
    tx: Queue,
    expected: Arc<AtomicUsize>,
}

/// A message known to be on its way (an SMTP transaction in progress): while
/// any exist, the writer holds a transaction open a little longer
/// ([`COMMIT_DELAY`]) to take them into the same fsync. Dropped when the
/// request is handed over, or when the transaction ends without one.
pub struct Expected(Arc<AtomicUsize>);

impl Drop for Expected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most requests one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 512;
/// Most raw bytes one transaction takes (one oversized request still goes alone).
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;
/// Longest a transaction waits for expected requests before committing
/// (PostgreSQL's commit_delay, but only when work is known to be coming).
pub const COMMIT_DELAY: Duration = Duration::from_millis(2);

impl Committer {
    /// Starts the writer thread. It ends when every handle is dropped.
    pub fn start(store: &Store, settings: TicketSettings, observer: CommitObserver) -> Committer {
        Committer::start_joinable(store, settings, observer).0
    }

    /// Starts the writer thread and returns, besides the handle, the means
    /// to stop it in order: [`WriterHandle::close`] then [`WriterHandle::join`].
    pub fn start_joinable(
        store: &Store,
        settings: TicketSettings,
        observer: CommitObserver,
    ) -> (Committer, WriterHandle) {
        // Unbounded, but each sender waits for its answer: at most one
        // request per SMTP session or fetch worker is ever queued.
        let (tx, rx) = mpsc::channel::<Job>();
        let tx: Queue = Arc::new(RwLock::new(Some(tx)));
        let expected = Arc::new(AtomicUsize::new(0));
        let backend: Arc<dyn Backend> = Arc::new(store.clone());
        let waiting = expected.clone();
        let counts = Arc::new(WriterCounts {
            at_close: AtomicU64::new(u64::MAX),
            ..WriterCounts::default()
        });
        let counting = counts.clone();
        let observer: CommitObserver = Arc::new(move |elapsed, batch| {
            counting.transactions.fetch_add(1, Ordering::AcqRel);
            counting.requests.fetch_add(batch as u64, Ordering::AcqRel);
            observer(elapsed, batch)
        });
        let thread = std::thread::Builder::new()
            .name("mailgate-commit".into())
            .spawn(move || writer_loop(backend, settings, observer, rx, waiting))
            .expect("spawning the commit thread");
        let handle = WriterHandle {
            tx: tx.clone(),
            thread,
            counts,
        };
        (Committer { tx, expected }, handle)
    }

    /// Announces a request that will come soon (see [`Expected`]).
    pub fn expect(&self) -> Expected {
        self.expected.fetch_add(1, Ordering::AcqRel);
        Expected(self.expected.clone())
    }

    /// Commits durably and returns one outcome per item, in order.
    pub async fn commit(&self, request: CommitRequest) -> Result<Vec<Outcome>, StoreError> {
        self.commit_expected(request, None).await
    }

    /// Like [`commit`](Self::commit), ending an announcement as it hands over.
    pub async fn commit_expected(
        &self,
        request: CommitRequest,
        expected: Option<Expected>,
    ) -> Result<Vec<Outcome>, StoreError> {
        match self
            .apply_expected(Operation::Ingest(request), expected)
            .await?
        {
            OpOutcome::Ingested(outcomes) => Ok(outcomes),
            other => Err(StoreError::Failed(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Commits any operation durably and returns what it did.
    pub async fn apply(&self, operation: Operation) -> Result<OpOutcome, StoreError> {
        self.apply_expected(operation, None).await
    }

    /// Like [`apply`](Self::apply), ending an announcement as it hands over.
    pub async fn apply_expected(
        &self,
        request: Operation,
        expected: Option<Expected>,
    ) -> Result<OpOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        drop(expected);
        self.tx
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Job { request, reply })
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(message)) => Err(StoreError::Failed(message)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// Transactions and requests the writer committed (or failed) so far.
#[derive(Default)]
struct WriterCounts {
    transactions: AtomicU64,
    requests: AtomicU64,
    /// `transactions` when the queue closed; u64::MAX while open.
    at_close: AtomicU64,
}

/// What the writer did from its start until it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterReport {
    pub transactions: u64,
    pub requests: u64,
    /// Of those, the transactions committed after [`WriterHandle::close`]:
    /// requests that were already queued when the queue closed.
    pub after_close: u64,
}

/// The writer thread, for an orderly shutdown.
pub struct WriterHandle {
    tx: Queue,
    thread: std::thread::JoinHandle<()>,
    counts: Arc<WriterCounts>,
}

impl WriterHandle {
    /// Closes the queue: from now on a commit answers [`StoreError::Closed`]
    /// at once (so nothing new is acknowledged), while everything already
    /// queued is still committed and answered. Returns the transactions
    /// committed so far.
    pub fn close(&self) -> u64 {
        let closed = self
            .tx
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if closed.is_some() {
            let now = self.counts.transactions.load(Ordering::Acquire);
            self.counts.at_close.store(now, Ordering::Release);
        }
        drop(closed);
        self.counts.at_close.load(Ordering::Acquire)
    }

    /// Closes the queue (if not yet) and waits, blocking, until the writer
    /// has committed everything queued and its thread has ended.
    pub fn join(self) -> Result<WriterReport, StoreError> {
        let at_close = self.close();
        self.thread
            .join()
            .map_err(|_| StoreError::Failed("the commit thread panicked".into()))?;
        let transactions = self.counts.transactions.load(Ordering::Acquire);
        Ok(WriterReport {
            transactions,
            requests: self.counts.requests.load(Ordering::Acquire),
            after_close: transactions.saturating_sub(at_close),
        })
    }
}

fn writer_loop(
    backend: Arc<dyn Backend>,
    settings: TicketSettings,
    observer: CommitObserver,
    rx: mpsc::Receiver<Job>,
    expected: Arc<AtomicUsize>,
) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.request.size_hint();
        let mut jobs = vec![first];
        let deadline = Instant::now() + COMMIT_DELAY;
        while jobs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Disconnected) => None,
                Err(mpsc::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if expected.load(Ordering::Acquire) == 0 || now >= deadline {
                        None
                    } else {
                        rx.recv_timeout(deadline - now).ok()
                    }
                }
            };
            match next {
                Some(job) => {
                    bytes += job.request.size_hint();
                    jobs.push(job);
                }
                None => break,
            }
        }
        let started = Instant::now();
        let requests: Vec<&Operation> = jobs.iter().map(|j| &j.request).collect();
        let result = backend.apply_batch(&settings, &requests);
        observer(started.elapsed(), jobs.len());
        match result {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = jobs.len(), "store commit failed; answering with a temporary failure");
                let message = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tickets::model::Earlier;
    use crate::tickets::suite::{mail, request, settings};

    #[tokio::test]
    async fn concurrent_copies_in_one_batch_make_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let committer = Committer::start(&store, settings(), Arc::new(|_, _| {}));
        let m = mail("a@x.test", Some("same@x"), "s");
        let (a, b) = tokio::join!(committer.commit(request(&m)), committer.commit(request(&m)));
        let mut outcomes = [a.unwrap().remove(0), b.unwrap().remove(0)];
        outcomes.sort_by_key(|o| matches!(o, Outcome::Duplicate(_)));
        assert!(matches!(outcomes[0], Outcome::Stored { .. }));
        assert!(matches!(outcomes[1], Outcome::Duplicate(_)));
    }

    #[tokio::test]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let m = mail("a@x.test", Some("p@x"), "s");
        {
            let store = Store::open(&path).unwrap();
            let c = Committer::start(&store, settings(), Arc::new(|_, _| {}));
            c.commit(request(&m)).await.unwrap();
        }
        // The writer thread holds the database until its channel closes.
        let store = loop {
            match Store::open(&path) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert_eq!(store.ticket(1).unwrap().unwrap().number, 1000);
        assert_eq!(
            store.message_raw(1).unwrap().unwrap(),
            b"From: a@x.test\r\nSubject: s\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n"
        );
        let c = Committer::start(&store, settings(), Arc::new(|_, _| {}));
        let again = c.commit(request(&m)).await.unwrap();
        assert_eq!(again[0], Outcome::Duplicate(Earlier::Message(1)));
    }
}
