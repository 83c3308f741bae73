//! Group commit: one writer thread, many waiting messages, one fsync.
//!
//! Each SMTP session (or fetcher) sends a [`CommitRequest`] and waits for
//! its outcome. The writer works leader/follower style: when it is idle, the
//! first request is committed at once, alone; every request that arrives
//! while that transaction (its fsync) runs queues up and forms the next
//! batch, taken whole when the writer comes back. So a batch is as large as
//! the device is slow: one request at a time on an idle gateway, hundreds
//! under load, with no fixed delay to tune. The writer never waits for work
//! it does not hold: a client that is slow or parked inside DATA has sent
//! nothing yet and stalls no one else. Each batch is one redb write
//! transaction, and only once it is durable (a batch of small incoming
//! mail: once its record in the commit journal is, see `journal`) are its
//! requests answered. Dedup and threading are decided inside that
//! transaction, so two copies of a message in the same batch still make one
//! ticket message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::journal::{Journal, Pending};
use super::{Store, StoreError};
use crate::tickets::model::Outcome;
use crate::tickets::{CommitRequest, Journaling, OpOutcome, Operation, TicketSettings};

/// A store the writer thread can apply batches to: all requests of one
/// batch in one durable transaction, all or nothing, each through
/// [`crate::tickets::apply`]. When it returns `Ok`, the batch is durable.
pub trait Backend: Send + Sync + 'static {
    fn apply_batch(
        &self,
        settings: &TicketSettings,
        operations: &[&Operation],
    ) -> Result<Vec<OpOutcome>, StoreError>;

    /// [`apply_batch`](Backend::apply_batch) with the raw bytes of ingest
    /// requests already packed on their callers' threads (see
    /// `codec::Prepacked`), so the one writer thread does not compress them.
    fn apply_prepacked(
        &self,
        settings: &TicketSettings,
        operations: &[&Operation],
        _prepacked: &[super::codec::Prepacked],
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_batch(settings, operations)
    }

    /// [`apply_prepacked`](Backend::apply_prepacked) without durability:
    /// the writer has the batch's journal record written before it answers.
    /// `last_seq` (the record's last entry) is stored with the batch. A
    /// backend without a journal commits durably.
    fn apply_journaled(
        &self,
        settings: &TicketSettings,
        operations: &[&Operation],
        prepacked: &[super::codec::Prepacked],
        _last_seq: u64,
    ) -> Result<Vec<OpOutcome>, StoreError> {
        self.apply_prepacked(settings, operations, prepacked)
    }

    /// Makes every commit so far durable.
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The store's journal id (made on first use) and the last journal
    /// entry it holds durably (0: none).
    fn journal_state(&self) -> Result<(u64, u64), StoreError> {
        Ok((0, 0))
    }
}

/// What the writer reports as it goes (the app turns it into metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CommitEvent {
    /// A batch was committed (or failed) and answered.
    Batch {
        elapsed: Duration,
        requests: usize,
        end: BatchEnd,
    },
    /// A checkpoint made every journaled batch before it durable.
    Checkpoint { elapsed: Duration },
    /// The journal could not take a batch (it was committed durably
    /// instead), or a checkpoint failed (retried later). Each is logged.
    JournalError,
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// Committed to redb without fsync; its journal record is on disk.
    Journal,
    /// A durable redb commit.
    Store,
    /// The transaction failed; its senders were told to retry.
    Failed,
}

impl BatchEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchEnd::Journal => "journal",
            BatchEnd::Store => "store",
            BatchEnd::Failed => "failed",
        }
    }
}

/// Called from the writer thread with each [`CommitEvent`].
pub type CommitObserver = Arc<dyn Fn(CommitEvent) + Send + Sync>;

struct Job {
    request: Operation,
    prepacked: Option<super::codec::Prepacked>,
    reply: oneshot::Sender<Result<OpOutcome, String>>,
}

/// The way into the writer's queue; None once [`WriterHandle::close`] ran.
type Queue = Arc<RwLock<Option<mpsc::Sender<Job>>>>;

/// Handle on the writer thread; clone freely.
#[derive(Clone)]
pub struct Committer {
    tx: Queue,
    /// Set once the journal's backlog was ingested again: from then on the
    /// writer journals new batches (see [`Committer::start_journaled`]).
    backlog_done: Arc<AtomicBool>,
    /// Started with a journal: ingest encodes journal entries.
    journaled: bool,
}

/// Most requests one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 512;
/// Most raw bytes one transaction takes (one oversized request still goes alone).
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

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
        Committer::start_on(Arc::new(store.clone()), settings, observer)
    }

    /// [`start_joinable`](Self::start_joinable) with the commit journal
    /// beside the store (see [`super::journal`]): small ingest batches are
    /// committed without durability and answered once their journal record
    /// is on disk; a checkpoint makes them durable in the store at least
    /// every `interval`. Returns the journal's entries that the store does
    /// not hold (a crash came between): the caller ingests each again, in
    /// order, with [`Journaling::Replayed`], then calls
    /// [`Committer::backlog_done`]; until then nothing new is journaled.
    ///
    /// With `enabled` false nothing is journaled, but a journal left by an
    /// earlier run is still read for its backlog.
    pub fn start_journaled(
        store: &Store,
        settings: TicketSettings,
        observer: CommitObserver,
        interval: Duration,
        enabled: bool,
    ) -> Result<(Committer, WriterHandle, Vec<Pending>), StoreError> {
        let backend: Arc<dyn Backend> = Arc::new(store.clone());
        let path = store.journal_path();
        Committer::start_journaled_on(backend, &path, settings, observer, interval, enabled)
    }

    /// [`start_journaled`](Self::start_journaled) on any [`Backend`], with
    /// its journal at `path`.
    pub fn start_journaled_on(
        backend: Arc<dyn Backend>,
        path: &std::path::Path,
        settings: TicketSettings,
        observer: CommitObserver,
        interval: Duration,
        enabled: bool,
    ) -> Result<(Committer, WriterHandle, Vec<Pending>), StoreError> {
        if !enabled && !path.exists() {
            let (committer, handle) = Committer::spawn(backend, settings, observer, None);
            return Ok((committer, handle, Vec::new()));
        }
        let (id, applied) = backend.journal_state()?;
        let (journal, backlog) =
            Journal::open(path, id, applied).map_err(|source| StoreError::Journal {
                path: path.display().to_string(),
                source,
            })?;
        let writer_journal = WriterJournal {
            journal,
            interval,
            enabled,
            on: enabled && backlog.is_empty(),
            last_checkpoint: Instant::now(),
        };
        let (committer, handle) =
            Committer::spawn(backend, settings, observer, Some(writer_journal));
        if backlog.is_empty() {
            committer.backlog_done();
        }
        Ok((committer, handle, backlog))
    }

    /// True when the writer has a journal, so ingest requests should carry
    /// their [`Journaling::Entry`].
    pub fn journals(&self) -> bool {
        self.journaled
    }

    /// The journal's backlog was ingested again (or found unusable and
    /// reported): the writer may journal new batches.
    pub fn backlog_done(&self) {
        self.backlog_done.store(true, Ordering::Release);
    }

    /// [`start_joinable`](Self::start_joinable) on any [`Backend`].
    pub fn start_on(
        backend: Arc<dyn Backend>,
        settings: TicketSettings,
        observer: CommitObserver,
    ) -> (Committer, WriterHandle) {
        Committer::spawn(backend, settings, observer, None)
    }

    fn spawn(
        backend: Arc<dyn Backend>,
        settings: TicketSettings,
        observer: CommitObserver,
        journal: Option<WriterJournal>,
    ) -> (Committer, WriterHandle) {
        // Unbounded, but each sender waits for its answer: at most one
        // request per SMTP session or fetch worker is ever queued.
        let (tx, rx) = mpsc::channel::<Job>();
        let tx: Queue = Arc::new(RwLock::new(Some(tx)));
        let counts = Arc::new(WriterCounts {
            at_close: AtomicU64::new(u64::MAX),
            ..WriterCounts::default()
        });
        let counting = counts.clone();
        let observer: CommitObserver = Arc::new(move |event| {
            if let CommitEvent::Batch { requests, .. } = event {
                counting.transactions.fetch_add(1, Ordering::AcqRel);
                counting
                    .requests
                    .fetch_add(requests as u64, Ordering::AcqRel);
            }
            observer(event)
        });
        let backlog_done = Arc::new(AtomicBool::new(false));
        let ready = backlog_done.clone();
        let journaled = journal.as_ref().is_some_and(|j| j.enabled);
        let thread = std::thread::Builder::new()
            .name("mailgate-commit".into())
            .spawn(move || {
                let mut writer = Writer {
                    backend,
                    settings,
                    observer,
                    journal,
                    backlog_done: ready,
                };
                writer.run(rx)
            })
            .expect("spawning the commit thread");
        let handle = WriterHandle {
            tx: tx.clone(),
            thread,
            counts,
        };
        (
            Committer {
                tx,
                backlog_done,
                journaled,
            },
            handle,
        )
    }

    /// Commits durably and returns one outcome per item, in order.
    pub async fn commit(&self, request: CommitRequest) -> Result<Vec<Outcome>, StoreError> {
        match self.apply(Operation::Ingest(request)).await? {
            OpOutcome::Ingested(outcomes) => Ok(outcomes),
            other => Err(StoreError::Failed(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Commits any operation durably and returns what it did.
    pub async fn apply(&self, request: Operation) -> Result<OpOutcome, StoreError> {
        let prepacked = match &request {
            Operation::Ingest(r) if !r.raw.is_empty() && r.raw.len() <= super::codec::PACK_MAX => {
                Some(super::codec::Prepacked::of(r.raw.as_ref()))
            }
            _ => None,
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Job {
                request,
                prepacked,
                reply,
            })
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

/// The writer thread's state.
struct Writer {
    backend: Arc<dyn Backend>,
    settings: TicketSettings,
    observer: CommitObserver,
    journal: Option<WriterJournal>,
    backlog_done: Arc<AtomicBool>,
}

/// The commit journal as the writer keeps it.
struct WriterJournal {
    journal: Journal,
    /// Longest a journaled batch waits for its checkpoint.
    interval: Duration,
    /// False: opened only for its backlog; nothing new is journaled.
    enabled: bool,
    /// False while the backlog found at start is not ingested again: the
    /// journal then takes nothing new and is never started over.
    on: bool,
    last_checkpoint: Instant,
}

impl WriterJournal {
    /// A durable commit carried every journaled batch before it along:
    /// the file may start over.
    fn checkpointed(&mut self) {
        self.journal.restart();
        self.last_checkpoint = Instant::now();
    }
}

impl Writer {
    /// Blocks only while it holds nothing; then takes what is queued (up to
    /// the batch bounds) without waiting for more, commits it and answers
    /// it. A journal with records is checkpointed when idle for its interval.
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        while let Some(first) = self.next_job(&rx) {
            let mut jobs = gather(first, &rx);
            let started = Instant::now();
            let prepacked: Vec<super::codec::Prepacked> =
                jobs.iter_mut().filter_map(|j| j.prepacked.take()).collect();
            let requests: Vec<&Operation> = jobs.iter().map(|j| &j.request).collect();
            let result = self.commit(&requests, &prepacked);
            self.observer.as_ref()(CommitEvent::Batch {
                elapsed: started.elapsed(),
                requests: jobs.len(),
                end: result.as_ref().map_or(BatchEnd::Failed, |(_, end)| *end),
            });
            match result {
                Ok((outcomes, _)) => {
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
            self.checkpoint_if_due(false);
        }
        self.checkpoint_if_due(true);
    }

    /// The next request; None once every handle is gone.
    fn next_job(&mut self, rx: &mpsc::Receiver<Job>) -> Option<Job> {
        let waiting = self
            .journal
            .as_ref()
            .filter(|j| j.on && j.journal.written());
        if let Some(interval) = waiting.map(|j| j.interval) {
            match rx.recv_timeout(interval) {
                Ok(job) => return Some(job),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => self.checkpoint_if_due(true),
            }
        }
        rx.recv().ok()
    }

    /// One batch: journaled when it may be, else one durable transaction.
    fn commit(
        &mut self,
        requests: &[&Operation],
        prepacked: &[super::codec::Prepacked],
    ) -> Result<(Vec<OpOutcome>, BatchEnd), StoreError> {
        if let Some(j) = self.journal.as_mut()
            && j.enabled
            && !j.on
            && self.backlog_done.load(Ordering::Acquire)
        {
            j.on = true;
        }
        let entries = match &self.journal {
            Some(j) if j.on => journal_entries(requests),
            _ => None,
        };
        let (Some(entries), Some(j)) = (entries, self.journal.as_mut()) else {
            let outcomes = self
                .backend
                .apply_prepacked(&self.settings, requests, prepacked)?;
            if let Some(j) = self.journal.as_mut().filter(|j| j.on) {
                j.checkpointed();
            }
            return Ok((outcomes, BatchEnd::Store));
        };
        let last_seq = j.journal.next_seq() + entries.len() as u64 - 1;
        // The record goes to the disk while redb applies the batch: the
        // fdatasync after it then has only the flush left to wait for.
        let written = j.journal.write(&entries);
        let outcomes = match self.backend.apply_journaled(
            &self.settings,
            requests,
            prepacked,
            last_seq,
        ) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // Its senders hear of the failure: a crash must not
                // ingest the batch after all.
                if let Ok(written) = written
                    && let Err(discard) = j.journal.discard(written)
                {
                    tracing::error!(
                        path = %j.journal.path().display(),
                        error = %discard,
                        "cannot take a failed batch back out of the commit journal; a crash before the next checkpoint would ingest it after all"
                    );
                }
                return Err(e);
            }
        };
        if let Err(e) = written.and_then(|written| j.journal.sync(written)) {
            tracing::error!(
                path = %j.journal.path().display(),
                error = %e,
                "cannot write the commit journal; committing the batch durably in the store instead"
            );
            self.observer.as_ref()(CommitEvent::JournalError);
            self.checkpoint()?;
            return Ok((outcomes, BatchEnd::Store));
        }
        Ok((outcomes, BatchEnd::Journal))
    }

    /// A durable commit of everything so far; the journal starts over.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = Instant::now();
        self.backend.checkpoint()?;
        self.observer.as_ref()(CommitEvent::Checkpoint {
            elapsed: started.elapsed(),
        });
        if let Some(j) = self.journal.as_mut() {
            j.checkpointed();
        }
        Ok(())
    }

    /// Checkpoints when the journal holds records and is full, or they
    /// have waited the interval (or at once with `now`, when idle or ending).
    fn checkpoint_if_due(&mut self, now: bool) {
        let Some(j) = self
            .journal
            .as_mut()
            .filter(|j| j.on && j.journal.written())
        else {
            return;
        };
        if !(now || j.journal.full() || j.last_checkpoint.elapsed() >= j.interval) {
            return;
        }
        if let Err(e) = self.checkpoint() {
            // The records stay; the next batch or idle moment tries again.
            tracing::error!(error = %e, "store checkpoint failed");
            self.observer.as_ref()(CommitEvent::JournalError);
        }
    }
}

/// The journal entries of a batch that may be journaled: ingest requests
/// only, each with its entry, within one record's size.
fn journal_entries<'a>(requests: &[&'a Operation]) -> Option<Vec<&'a [u8]>> {
    let mut entries = Vec::with_capacity(requests.len());
    let mut bytes = 0usize;
    for request in requests {
        let Operation::Ingest(CommitRequest {
            journal: Journaling::Entry(entry),
            ..
        }) = request
        else {
            return None;
        };
        bytes += entry.len() + 4;
        if bytes > super::journal::MAX_RECORD {
            return None;
        }
        entries.push(entry.as_ref());
    }
    Some(entries)
}

/// The batch that starts with `first`: everything already queued behind
/// it, within [`MAX_BATCH`] and [`MAX_BATCH_BYTES`]. Never blocks.
fn gather(first: Job, rx: &mpsc::Receiver<Job>) -> Vec<Job> {
    let mut bytes = first.request.size_hint();
    let mut jobs = vec![first];
    while jobs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(job) => {
                bytes += job.request.size_hint();
                jobs.push(job);
            }
            Err(mpsc::TryRecvError::Empty | mpsc::TryRecvError::Disconnected) => break,
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::tickets::model::Earlier;
    use crate::tickets::suite::{mail, request, settings};

    #[tokio::test]
    async fn concurrent_copies_in_one_batch_make_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let committer = Committer::start(&store, settings(), Arc::new(|_| {}));
        let m = mail("a@x.test", Some("same@x"), "s");
        let (a, b) = tokio::join!(committer.commit(request(&m)), committer.commit(request(&m)));
        let mut outcomes = [a.unwrap().remove(0), b.unwrap().remove(0)];
        outcomes.sort_by_key(|o| matches!(o, Outcome::Duplicate(_)));
        assert!(matches!(outcomes[0], Outcome::Stored { .. }));
        assert!(matches!(outcomes[1], Outcome::Duplicate(_)));
    }

    fn journaled(i: usize, journal: Journaling) -> CommitRequest {
        const IDS: [&str; 5] = ["j0@x", "j1@x", "j2@x", "j3@x", "j4@x"];
        let m = mail("a@x.test", Some(IDS[i]), "s");
        CommitRequest {
            journal,
            ..request(&m)
        }
    }

    fn stored_id(outcomes: Vec<Outcome>) -> u64 {
        match outcomes.as_slice() {
            [Outcome::Stored { message_id, .. }] => *message_id,
            other => panic!("not stored: {other:?}"),
        }
    }

    fn start(
        store: &Store,
        interval: Duration,
    ) -> (Committer, WriterHandle, Vec<super::super::journal::Pending>) {
        Committer::start_journaled(store, settings(), Arc::new(|_| {}), interval, true).unwrap()
    }

    fn start_recorded(store: &Store, interval: Duration) -> (Committer, WriterHandle, Events) {
        let (observer, events) = recorder();
        let (committer, writer, _) =
            Committer::start_journaled(store, settings(), observer, interval, true).unwrap();
        (committer, writer, events)
    }

    type Events = Arc<Mutex<Vec<String>>>;

    /// An observer that keeps every event but the timings.
    fn recorder() -> (CommitObserver, Events) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let observer: CommitObserver = Arc::new(move |event| {
            let name = match event {
                CommitEvent::Batch { requests, end, .. } => format!("{}:{requests}", end.as_str()),
                CommitEvent::Checkpoint { .. } => "checkpoint".to_string(),
                CommitEvent::JournalError => "journal error".to_string(),
            };
            seen.lock().unwrap().push(name);
        });
        (observer, events)
    }

    fn seq_entries(backlog: &[super::super::journal::Pending]) -> Vec<(u64, &[u8])> {
        backlog.iter().map(|p| (p.seq, p.entry.as_ref())).collect()
    }

    /// The files of a running store as a crash would leave them.
    fn crash_copy(store: &Store, path: &std::path::Path) -> tempfile::TempDir {
        let crashed = tempfile::tempdir().unwrap();
        std::fs::copy(path, crashed.path().join("db.redb")).unwrap();
        std::fs::copy(store.journal_path(), crashed.path().join("db.redb.journal")).unwrap();
        crashed
    }

    #[tokio::test]
    async fn a_journaled_batch_is_answered_from_the_journal_and_comes_back_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap();
        let hour = Duration::from_secs(3600);
        let (committer, writer, backlog) = start(&store, hour);
        assert!(backlog.is_empty() && committer.journals());
        let mut ids = Vec::new();
        for i in 0..3 {
            let entry = Journaling::Entry(format!("entry {i}").into_bytes().into());
            ids.push(stored_id(
                committer.commit(journaled(i, entry)).await.unwrap(),
            ));
        }
        // Readers of the running store see them at once.
        assert!(store.message(ids[2]).unwrap().is_some());
        let crashed = crash_copy(&store, &path);
        // A clean end checkpoints: the store itself holds all three.
        drop(committer);
        writer.join().unwrap();
        drop(store);
        let clean = Store::open(&path).unwrap();
        assert!(ids.iter().all(|id| clean.message(*id).unwrap().is_some()));
        assert_eq!(clean.journal_state().unwrap().1, 3);

        // After the crash the database holds none of them: they were
        // acknowledged from the journal, which hands them back in order.
        let crashed_path = crashed.path().join("db.redb");
        let store = Store::open(&crashed_path).unwrap();
        assert!(ids.iter().all(|id| store.message(*id).unwrap().is_none()));
        let (committer, writer, backlog) = start(&store, hour);
        assert_eq!(
            seq_entries(&backlog),
            vec![(1, &b"entry 0"[..]), (2, b"entry 1"), (3, b"entry 2")]
        );
        for (i, pending) in backlog.iter().enumerate() {
            let again = journaled(i, Journaling::Replayed(pending.seq));
            // The same requests in the same order make the same ids.
            assert_eq!(stored_id(committer.commit(again).await.unwrap()), ids[i]);
            assert_eq!(store.journal_state().unwrap().1, pending.seq);
        }
        // Until the caller says the backlog is in, nothing new is journaled:
        // this one is durable at once.
        let entry = Journaling::Entry(b"early".to_vec().into());
        let early = stored_id(committer.commit(journaled(4, entry)).await.unwrap());
        let copy_dir = crash_copy(&store, &crashed_path);
        let copy = Store::open(&copy_dir.path().join("db.redb")).unwrap();
        assert!(copy.message(early).unwrap().is_some());
        drop(copy);
        committer.backlog_done();
        let entry = Journaling::Entry(b"entry 3".to_vec().into());
        let fourth = stored_id(committer.commit(journaled(3, entry)).await.unwrap());
        let crashed_again = crash_copy(&store, &crashed_path);
        drop(committer);
        writer.join().unwrap();

        // A second crash hands back only what came after the replay.
        let store = Store::open(&crashed_again.path().join("db.redb")).unwrap();
        assert!(ids.iter().all(|id| store.message(*id).unwrap().is_some()));
        assert!(store.message(early).unwrap().is_some());
        assert!(store.message(fourth).unwrap().is_none());
        let (_, _, backlog) = start(&store, hour);
        assert_eq!(seq_entries(&backlog), vec![(4, &b"entry 3"[..])]);
    }

    #[tokio::test]
    async fn the_writer_checkpoints_when_idle_for_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap();
        let interval = Duration::from_millis(50);
        let (committer, _writer, events) = start_recorded(&store, interval);
        let entry = Journaling::Entry(b"e".to_vec().into());
        let id = stored_id(committer.commit(journaled(0, entry)).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let crashed = crash_copy(&store, &path);
            // A copy taken mid-checkpoint may be torn; the next one is not.
            let copy = Store::open(&crashed.path().join("db.redb"));
            if let Ok(copy) = copy
                && copy.message(id).unwrap().is_some()
            {
                assert_eq!(copy.journal_state().unwrap().1, 1);
                break;
            }
            assert!(Instant::now() < deadline, "no checkpoint within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ... and reported it (just after it returned).
        while events.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "no checkpoint event");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*events.lock().unwrap(), ["journal:1", "checkpoint"]);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_journaled_is_durable_and_starts_the_journal_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap();
        let hour = Duration::from_secs(3600);
        let (committer, _writer, events) = start_recorded(&store, hour);
        let entry = Journaling::Entry(b"journaled".to_vec().into());
        let first = stored_id(committer.commit(journaled(0, entry)).await.unwrap());
        // No entry (as for large mail): a durable commit, which carries the
        // journaled one along.
        let second = stored_id(
            committer
                .commit(journaled(1, Journaling::Off))
                .await
                .unwrap(),
        );
        assert_eq!(*events.lock().unwrap(), ["journal:1", "store:1"]);
        let crashed = crash_copy(&store, &path);
        let copy = Store::open(&crashed.path().join("db.redb")).unwrap();
        assert!(copy.message(first).unwrap().is_some());
        assert!(copy.message(second).unwrap().is_some());
        let (_, _, backlog) = start(&copy, hour);
        assert!(backlog.is_empty(), "{backlog:?}");
    }

    /// The real store, except that its journaled commits fail while `fail`.
    struct Failing {
        store: Store,
        fail: AtomicBool,
    }

    impl Backend for Failing {
        fn apply_batch(
            &self,
            settings: &TicketSettings,
            operations: &[&Operation],
        ) -> Result<Vec<OpOutcome>, StoreError> {
            self.store.apply_batch(settings, operations)
        }

        fn apply_journaled(
            &self,
            settings: &TicketSettings,
            operations: &[&Operation],
            prepacked: &[super::super::codec::Prepacked],
            last_seq: u64,
        ) -> Result<Vec<OpOutcome>, StoreError> {
            if self.fail.load(Ordering::Acquire) {
                return Err(StoreError::Failed("injected failure".into()));
            }
            self.store
                .apply_journaled(settings, operations, prepacked, last_seq)
        }

        fn checkpoint(&self) -> Result<(), StoreError> {
            self.store.checkpoint()
        }

        fn journal_state(&self) -> Result<(u64, u64), StoreError> {
            self.store.journal_state()
        }
    }

    #[tokio::test]
    async fn a_batch_whose_transaction_failed_is_taken_back_out_of_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap();
        let backend = Arc::new(Failing {
            store: store.clone(),
            fail: AtomicBool::new(false),
        });
        let hour = Duration::from_secs(3600);
        let (observer, events) = recorder();
        let (committer, _writer, backlog) = Committer::start_journaled_on(
            backend.clone(),
            &store.journal_path(),
            settings(),
            observer,
            hour,
            true,
        )
        .unwrap();
        assert!(backlog.is_empty());
        let entry = |e: &str| Journaling::Entry(e.as_bytes().to_vec().into());
        committer
            .commit(journaled(0, entry("before")))
            .await
            .unwrap();
        backend.fail.store(true, Ordering::Release);
        // Its sender hears of the failure (and would send it again) ...
        let failed = committer.commit(journaled(1, entry("failed"))).await;
        assert!(failed.is_err(), "{failed:?}");
        backend.fail.store(false, Ordering::Release);
        committer
            .commit(journaled(2, entry("after")))
            .await
            .unwrap();
        assert_eq!(
            *events.lock().unwrap(),
            ["journal:1", "failed:1", "journal:1"]
        );
        // ... so a crash does not ingest it after all; the next record took
        // its place and its number.
        let crashed = crash_copy(&store, &path);
        let copy = Store::open(&crashed.path().join("db.redb")).unwrap();
        let (_, _, backlog) = start(&copy, hour);
        assert_eq!(
            seq_entries(&backlog),
            vec![(1, &b"before"[..]), (2, b"after")]
        );
    }

    /// Stands in for the durable store and lets the test drive the writer
    /// step by step: each transaction reports which requests it holds, then
    /// stays open until the test lets it commit, and marks its requests
    /// durable as its very last act before returning.
    struct Gated {
        entered: Mutex<mpsc::Sender<Vec<usize>>>,
        go: Mutex<mpsc::Receiver<()>>,
        durable: Mutex<HashSet<usize>>,
    }

    impl Backend for Gated {
        fn apply_batch(
            &self,
            _: &TicketSettings,
            operations: &[&Operation],
        ) -> Result<Vec<OpOutcome>, StoreError> {
            let ids: Vec<usize> = operations.iter().map(|o| id_of(o)).collect();
            self.entered.lock().unwrap().send(ids.clone()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            self.durable.lock().unwrap().extend(&ids);
            Ok(ids.iter().map(|i| echo(*i)).collect())
        }
    }

    /// A request that carries its number (the gated backend echoes it).
    fn numbered(i: usize) -> Operation {
        Operation::Update(crate::tickets::TicketUpdate {
            ticket_id: i as u64,
            ..Default::default()
        })
    }

    fn id_of(op: &Operation) -> usize {
        match op {
            Operation::Update(u) => u.ticket_id as usize,
            other => panic!("not a numbered request: {other:?}"),
        }
    }

    fn echo(i: usize) -> OpOutcome {
        OpOutcome::Updated(crate::tickets::UpdateOutcome::Invalid(i.to_string()))
    }

    type Pending = Pin<Box<dyn Future<Output = Result<OpOutcome, StoreError>> + Send>>;

    /// The writer on a gated backend, the test's ends of the gate, and the
    /// batch sizes the observer saw.
    struct Rig {
        committer: Committer,
        writer: WriterHandle,
        backend: Arc<Gated>,
        entered: mpsc::Receiver<Vec<usize>>,
        go: mpsc::Sender<()>,
        batches: Arc<Mutex<Vec<usize>>>,
    }

    fn rig() -> Rig {
        let (entered_tx, entered) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let backend = Arc::new(Gated {
            entered: Mutex::new(entered_tx),
            go: Mutex::new(go_rx),
            durable: Mutex::new(HashSet::new()),
        });
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let (committer, writer) = Committer::start_on(
            backend.clone(),
            settings(),
            Arc::new(move |event| {
                if let CommitEvent::Batch { requests, .. } = event {
                    seen.lock().unwrap().push(requests)
                }
            }),
        );
        Rig {
            committer,
            writer,
            backend,
            entered,
            go,
            batches,
        }
    }

    impl Rig {
        /// A request in flight: polled once, so it is in the writer's queue.
        fn send(&self, i: usize) -> Pending {
            let c = self.committer.clone();
            let mut fut: Pending = Box::pin(async move { c.apply(numbered(i)).await });
            assert!(poll(&mut fut).is_pending(), "request {i} answered at once");
            fut
        }

        /// The requests of the transaction the writer is inside now.
        fn next_batch(&self) -> Vec<usize> {
            // Only a guard against hanging on a broken writer.
            self.entered
                .recv_timeout(Duration::from_secs(120))
                .expect("the writer started no transaction")
        }
    }

    fn poll(fut: &mut Pending) -> Poll<Result<OpOutcome, StoreError>> {
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    /// The request's answer, which must be there already.
    fn answered(fut: &mut Pending, i: usize) {
        match poll(fut) {
            Poll::Ready(Ok(outcome)) => assert_eq!(outcome, echo(i)),
            Poll::Ready(Err(e)) => panic!("request {i} failed: {e}"),
            Poll::Pending => panic!("request {i} not answered after its commit"),
        }
    }

    #[test]
    fn no_request_is_answered_before_its_transaction_committed() {
        let rig = rig();
        const N: usize = 1000;
        // All in flight at once, more than one batch can take.
        let mut futs: Vec<Pending> = (0..N).map(|i| rig.send(i)).collect();
        let mut done = vec![false; N];
        let mut previous: Vec<usize> = Vec::new();
        let mut seen = 0;
        while seen < N {
            let batch = rig.next_batch();
            assert!(
                !batch.is_empty() && batch.len() <= MAX_BATCH,
                "{}",
                batch.len()
            );
            // The writer answers a batch before it takes the next one.
            for &i in &previous {
                assert!(rig.backend.durable.lock().unwrap().contains(&i));
                answered(&mut futs[i], i);
                done[i] = true;
            }
            // Inside this transaction (not yet durable), nothing of it or
            // of what is still queued may have been answered.
            for (i, fut) in futs.iter_mut().enumerate() {
                if !done[i] {
                    assert!(
                        poll(fut).is_pending(),
                        "request {i} answered before its transaction committed"
                    );
                }
            }
            for &i in &batch {
                assert!(!done[i], "request {i} committed twice");
            }
            seen += batch.len();
            previous = batch;
            rig.go.send(()).unwrap();
        }
        let Rig {
            committer, writer, ..
        } = rig;
        drop(committer);
        let report = writer.join().unwrap();
        for &i in &previous {
            answered(&mut futs[i], i);
            done[i] = true;
        }
        assert!(done.iter().all(|d| *d));
        assert_eq!(report.requests, N as u64);
        assert!(report.transactions >= 2, "{report:?}");
    }

    #[test]
    fn what_arrives_during_a_commit_forms_the_next_batch() {
        let rig = rig();
        // An idle writer commits the first request at once, alone.
        let mut first = rig.send(0);
        assert_eq!(rig.next_batch(), vec![0]);
        // While that transaction runs (its fsync), more arrive ...
        let mut next: Vec<Pending> = (1..=5).map(|i| rig.send(i)).collect();
        assert!(poll(&mut first).is_pending());
        rig.go.send(()).unwrap();
        // ... and go together in the next one, the moment the writer is back.
        assert_eq!(rig.next_batch(), vec![1, 2, 3, 4, 5]);
        answered(&mut first, 0);
        for fut in next.iter_mut() {
            assert!(poll(fut).is_pending());
        }
        // 600 arriving during that commit: one full batch, then the rest.
        let mut many: Vec<Pending> = (6..606).map(|i| rig.send(i)).collect();
        rig.go.send(()).unwrap();
        assert_eq!(rig.next_batch(), (6..6 + MAX_BATCH).collect::<Vec<_>>());
        for (i, fut) in next.iter_mut().enumerate() {
            answered(fut, i + 1);
        }
        rig.go.send(()).unwrap();
        assert_eq!(rig.next_batch(), (6 + MAX_BATCH..606).collect::<Vec<_>>());
        rig.go.send(()).unwrap();
        let Rig {
            committer,
            writer,
            batches,
            ..
        } = rig;
        drop(committer);
        let report = writer.join().unwrap();
        for (i, fut) in many.iter_mut().enumerate() {
            answered(fut, i + 6);
        }
        assert_eq!(
            *batches.lock().unwrap(),
            vec![1, 5, MAX_BATCH, 600 - MAX_BATCH]
        );
        assert_eq!(report.transactions, 4);
        assert_eq!(report.requests, 606);
    }

    #[tokio::test]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let m = mail("a@x.test", Some("p@x"), "s");
        {
            let store = Store::open(&path).unwrap();
            let c = Committer::start(&store, settings(), Arc::new(|_| {}));
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
        let c = Committer::start(&store, settings(), Arc::new(|_| {}));
        let again = c.commit(request(&m)).await.unwrap();
        assert_eq!(again[0], Outcome::Duplicate(Earlier::Message(1)));
    }
}
