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

use bytes::Bytes;
use redb::{Database, ReadableTable, Table, WriteTransaction};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::schema::*;
use super::{Store, StoreError, decode, encode};
use crate::mail::{Origin, ParsedMail, RejectReason, TagFormat};
use crate::tickets::model::{Earlier, Outcome, Rejection, StoredMessage, Ticket};

/// The mailbox an item is for.
#[derive(Debug, Clone)]
pub struct MailboxRef {
    pub name: String,
    pub queue: String,
}

/// What to record for one mailbox.
#[derive(Debug, Clone)]
pub enum Item {
    /// A readable message: becomes a ticket message, unless it is automatic
    /// and threads nowhere, then a rejection with that reason.
    Message {
        mailbox: MailboxRef,
        mail: Arc<ParsedMail>,
        automatic: Option<(RejectReason, String)>,
    },
    /// A message refused before routing (unparseable, no sender, oversize).
    Reject {
        mailbox: Option<String>,
        reason: RejectReason,
        detail: String,
        message_id: Option<String>,
        from: Option<String>,
        subject: Option<String>,
        /// Keep the raw bytes with the record (false for oversize).
        keep_raw: bool,
    },
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub origin: Origin,
    /// The original bytes (empty when not kept, e.g. oversize).
    pub raw: Bytes,
    /// Size of the message as received (may exceed raw.len() for oversize).
    pub size: u64,
    /// Upstream identity of pulled mail (`imap:V:U`, `pop3:UIDL`): a
    /// request whose identity is already recorded for its mailbox changes
    /// nothing and answers Duplicate.
    pub upstream_key: Option<String>,
    pub items: Vec<Item>,
}

/// Ticket numbering and tags, fixed at start.
#[derive(Debug, Clone)]
pub struct TicketSettings {
    pub tag: TagFormat,
    pub first_number: u64,
}

/// Called after each transaction with its duration and request count.
pub type CommitObserver = Arc<dyn Fn(Duration, usize) + Send + Sync>;

struct Job {
    request: CommitRequest,
    reply: oneshot::Sender<Result<Vec<Outcome>, String>>,
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
        let db = store.db().clone();
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
            .spawn(move || writer_loop(db, settings, observer, rx, waiting))
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
    db: Arc<Database>,
    settings: TicketSettings,
    observer: CommitObserver,
    rx: mpsc::Receiver<Job>,
    expected: Arc<AtomicUsize>,
) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.request.raw.len();
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
                    bytes += job.request.raw.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        let started = Instant::now();
        let result = apply_batch(&db, &settings, &jobs);
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

fn apply_batch(
    db: &Database,
    settings: &TicketSettings,
    jobs: &[Job],
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let started = Instant::now();
    let txn = db.begin_write()?;
    let mut all = Vec::with_capacity(jobs.len());
    {
        let mut w = Writer::open(&txn, settings)?;
        for job in jobs {
            all.push(w.apply(&job.request)?);
        }
    }
    let applied = started.elapsed();
    txn.commit()?;
    tracing::debug!(
        requests = jobs.len(),
        apply_us = applied.as_micros() as u64,
        commit_us = (started.elapsed() - applied).as_micros() as u64,
        "store transaction committed"
    );
    Ok(all)
}

fn item_mailbox(item: &Item) -> &str {
    match item {
        Item::Message { mailbox, .. } => &mailbox.name,
        Item::Reject { mailbox, .. } => mailbox.as_deref().unwrap_or(""),
    }
}

/// `m:ID` / `r:ID`, as kept in the dedup and upstream tables.
pub(crate) fn format_earlier(earlier: Earlier) -> String {
    match earlier {
        Earlier::Message(id) => format!("m:{id}"),
        Earlier::Rejection(id) => format!("r:{id}"),
    }
}

pub(crate) fn parse_earlier(value: &str) -> Option<Earlier> {
    let (kind, id) = value.split_once(':')?;
    let id = id.parse::<u64>().ok()?;
    match kind {
        "m" => Some(Earlier::Message(id)),
        "r" => Some(Earlier::Rejection(id)),
        _ => None,
    }
}

/// What a rejection record says beyond its origin.
struct RejectFields {
    mailbox: Option<String>,
    reason: RejectReason,
    detail: String,
    message_id: Option<String>,
    from: Option<String>,
    subject: Option<String>,
}

/// The open tables of one write transaction.
struct Writer<'t> {
    settings: &'t TicketSettings,
    counters: Table<'t, &'static str, u64>,
    tickets: Table<'t, u64, &'static [u8]>,
    numbers: Table<'t, u64, u64>,
    by_mailbox: Table<'t, (&'static str, u64), ()>,
    messages: Table<'t, u64, &'static [u8]>,
    message_raw: Table<'t, u64, &'static [u8]>,
    attachments: Table<'t, (u64, u32), &'static [u8]>,
    ticket_messages: Table<'t, (u64, u64), ()>,
    message_ids: Table<'t, (&'static str, &'static str), (u64, u64)>,
    dedup: Table<'t, (&'static str, &'static str), &'static str>,
    rejections: Table<'t, u64, &'static [u8]>,
    rejection_raw: Table<'t, u64, &'static [u8]>,
    upstream_seen: Table<'t, (&'static str, &'static str), &'static str>,
}

impl<'t> Writer<'t> {
    fn open(txn: &'t WriteTransaction, settings: &'t TicketSettings) -> Result<Self, StoreError> {
        Ok(Writer {
            settings,
            counters: txn.open_table(COUNTERS)?,
            tickets: txn.open_table(TICKETS)?,
            numbers: txn.open_table(TICKET_NUMBERS)?,
            by_mailbox: txn.open_table(TICKETS_BY_MAILBOX)?,
            messages: txn.open_table(MESSAGES)?,
            message_raw: txn.open_table(MESSAGE_RAW)?,
            attachments: txn.open_table(ATTACHMENTS)?,
            ticket_messages: txn.open_table(TICKET_MESSAGES)?,
            message_ids: txn.open_table(MESSAGE_IDS)?,
            dedup: txn.open_table(DEDUP)?,
            rejections: txn.open_table(REJECTIONS)?,
            rejection_raw: txn.open_table(REJECTION_RAW)?,
            upstream_seen: txn.open_table(UPSTREAM_SEEN)?,
        })
    }

    fn apply(&mut self, request: &CommitRequest) -> Result<Vec<Outcome>, StoreError> {
        let Some(key) = &request.upstream_key else {
            return self.apply_items(request);
        };
        let scope = request
            .items
            .first()
            .map(item_mailbox)
            .unwrap_or("")
            .to_string();
        if let Some(v) = self.upstream_seen.get((scope.as_str(), key.as_str()))?
            && let Some(earlier) = parse_earlier(v.value())
        {
            return Ok(vec![Outcome::Duplicate(earlier); request.items.len()]);
        }
        let outcomes = self.apply_items(request)?;
        if let Some(first) = outcomes.first() {
            let earlier = first.earlier();
            self.upstream_seen.insert(
                (scope.as_str(), key.as_str()),
                format_earlier(earlier).as_str(),
            )?;
        }
        Ok(outcomes)
    }

    fn apply_items(&mut self, request: &CommitRequest) -> Result<Vec<Outcome>, StoreError> {
        let mut hash: Option<String> = None;
        let mut content_key = |raw: &Bytes| -> String {
            hash.get_or_insert_with(|| format!("sha256:{:x}", Sha256::digest(raw)))
                .clone()
        };
        let mut outcomes = Vec::with_capacity(request.items.len());
        for item in &request.items {
            let outcome = match item {
                Item::Message {
                    mailbox,
                    mail,
                    automatic,
                } => {
                    let key = match &mail.message_id {
                        Some(id) => format!("id:{id}"),
                        None => content_key(&request.raw),
                    };
                    if let Some(earlier) = self.earlier(&mailbox.name, &key)? {
                        Outcome::Duplicate(earlier)
                    } else {
                        let outcome =
                            self.store_message(request, mailbox, mail, automatic.as_ref())?;
                        let earlier = outcome.earlier();
                        self.remember(&mailbox.name, &key, earlier)?;
                        outcome
                    }
                }
                Item::Reject {
                    mailbox,
                    reason,
                    detail,
                    message_id,
                    from,
                    subject,
                    keep_raw,
                } => {
                    // Oversize mail is not kept: without a Message-ID it
                    // cannot be compared, so it is never deduplicated.
                    let key = match (message_id, *keep_raw) {
                        (Some(id), _) => Some(format!("id:{id}")),
                        (None, true) => Some(content_key(&request.raw)),
                        (None, false) => None,
                    };
                    let scope = mailbox.as_deref().unwrap_or("");
                    let earlier = match &key {
                        Some(k) => self.earlier(scope, k)?,
                        None => None,
                    };
                    match earlier {
                        Some(e) => Outcome::Duplicate(e),
                        None => {
                            let outcome = self.reject(
                                request,
                                RejectFields {
                                    mailbox: mailbox.clone(),
                                    reason: *reason,
                                    detail: detail.clone(),
                                    message_id: message_id.clone(),
                                    from: from.clone(),
                                    subject: subject.clone(),
                                },
                                *keep_raw,
                            )?;
                            if let Some(k) = &key {
                                self.remember(scope, k, outcome.earlier())?;
                            }
                            outcome
                        }
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn earlier(&self, mailbox: &str, key: &str) -> Result<Option<Earlier>, StoreError> {
        Ok(self
            .dedup
            .get((mailbox, key))?
            .and_then(|v| parse_earlier(v.value())))
    }

    fn remember(&mut self, mailbox: &str, key: &str, earlier: Earlier) -> Result<(), StoreError> {
        self.dedup
            .insert((mailbox, key), format_earlier(earlier).as_str())?;
        Ok(())
    }

    fn next(&mut self, counter: &str) -> Result<u64, StoreError> {
        let current = self.counters.get(counter)?.map(|v| v.value()).unwrap_or(0);
        let next = current + 1;
        self.counters.insert(counter, next)?;
        Ok(next)
    }

    fn next_number(&mut self) -> Result<u64, StoreError> {
        let last = self.counters.get("number")?.map(|v| v.value());
        let next = match last {
            Some(n) => (n + 1).max(self.settings.first_number),
            None => self.settings.first_number,
        };
        self.counters.insert("number", next)?;
        Ok(next)
    }

    /// The ticket this message continues: by In-Reply-To / References (the
    /// newest reference first), then by a tag in the subject; same mailbox only.
    fn find_ticket(&self, mailbox: &str, mail: &ParsedMail) -> Result<Option<Ticket>, StoreError> {
        let referenced = mail.in_reply_to.iter().chain(mail.references.iter().rev());
        for id in referenced {
            if let Some(hit) = self.message_ids.get((mailbox, id.as_str()))? {
                let (_, ticket_id) = hit.value();
                if let Some(ticket) = self.ticket(ticket_id)? {
                    return Ok(Some(ticket));
                }
            }
        }
        for number in self.settings.tag.find_all(&mail.subject) {
            if let Some(id) = self.numbers.get(number)?.map(|v| v.value())
                && let Some(ticket) = self.ticket(id)?
                && ticket.mailbox == mailbox
            {
                return Ok(Some(ticket));
            }
        }
        Ok(None)
    }

    fn ticket(&self, id: u64) -> Result<Option<Ticket>, StoreError> {
        match self.tickets.get(id)? {
            Some(v) => Ok(Some(decode("tickets", id, v.value())?)),
            None => Ok(None),
        }
    }

    fn store_message(
        &mut self,
        request: &CommitRequest,
        mailbox: &MailboxRef,
        mail: &ParsedMail,
        automatic: Option<&(RejectReason, String)>,
    ) -> Result<Outcome, StoreError> {
        let now = &request.origin.received_at;
        let existing = self.find_ticket(&mailbox.name, mail)?;
        if existing.is_none()
            && let Some((reason, detail)) = automatic
        {
            let fields = RejectFields {
                mailbox: Some(mailbox.name.clone()),
                reason: *reason,
                detail: detail.clone(),
                message_id: mail.message_id.clone(),
                from: Some(mail.from.address.clone()),
                subject: Some(mail.subject.clone()),
            };
            return self.reject(request, fields, true);
        }
        let new_ticket = existing.is_none();
        let mut ticket = match existing {
            Some(t) => t,
            None => {
                let id = self.next("ticket")?;
                let number = self.next_number()?;
                self.numbers.insert(number, id)?;
                self.by_mailbox.insert((mailbox.name.as_str(), id), ())?;
                Ticket {
                    id,
                    number,
                    tag: self.settings.tag.format(number),
                    mailbox: mailbox.name.clone(),
                    queue: mailbox.queue.clone(),
                    status: "open".into(),
                    subject: mail.subject.clone(),
                    requester: mail.from.clone(),
                    created_at: now.clone(),
                    updated_at: now.clone(),
                    message_count: 0,
                }
            }
        };
        let id = self.next("message")?;
        // Every message gets a Message-ID to thread on; ours when it had none.
        let message_id = mail
            .message_id
            .clone()
            .unwrap_or_else(|| format!("mailgate-{id}@local.invalid"));
        let stored = StoredMessage {
            id,
            ticket_id: ticket.id,
            direction: "inbound".into(),
            message_id: message_id.clone(),
            in_reply_to: mail.in_reply_to.clone(),
            references: mail.references.clone(),
            from: mail.from.clone(),
            to: mail.to.clone(),
            cc: mail.cc.clone(),
            date: mail.date.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
            attachments: mail.attachments.iter().map(|a| a.meta.clone()).collect(),
            auto_submitted: automatic.is_some(),
            source: request.origin.source.clone(),
            envelope: request.origin.envelope.clone(),
            received_at: now.clone(),
            size: request.size,
        };
        self.messages.insert(id, encode(&stored).as_slice())?;
        self.message_raw.insert(id, request.raw.as_ref())?;
        for a in &mail.attachments {
            self.attachments
                .insert((id, a.meta.index), a.bytes.as_slice())?;
        }
        self.ticket_messages.insert((ticket.id, id), ())?;
        self.message_ids.insert(
            (mailbox.name.as_str(), message_id.as_str()),
            (id, ticket.id),
        )?;
        ticket.message_count += 1;
        ticket.updated_at = now.clone();
        self.tickets.insert(ticket.id, encode(&ticket).as_slice())?;
        Ok(Outcome::Stored {
            message_id: id,
            ticket_id: ticket.id,
            ticket_number: ticket.number,
            new_ticket,
        })
    }

    /// Records a rejection, with the raw bytes when `keep_raw`.
    fn reject(
        &mut self,
        request: &CommitRequest,
        fields: RejectFields,
        keep_raw: bool,
    ) -> Result<Outcome, StoreError> {
        let rejection = Rejection {
            id: self.next("rejection")?,
            reason: fields.reason.as_str().to_string(),
            detail: fields.detail,
            source: request.origin.source.clone(),
            mailbox: fields.mailbox,
            envelope: request.origin.envelope.clone(),
            message_id: fields.message_id,
            from: fields.from,
            subject: fields.subject,
            size: request.size,
            received_at: request.origin.received_at.clone(),
            raw_available: keep_raw,
        };
        let id = self.insert_rejection(&rejection, keep_raw.then_some(&request.raw))?;
        Ok(Outcome::Rejected {
            rejection_id: id,
            reason: rejection.reason,
        })
    }

    fn insert_rejection(
        &mut self,
        rejection: &Rejection,
        raw: Option<&Bytes>,
    ) -> Result<u64, StoreError> {
        self.rejections
            .insert(rejection.id, encode(rejection).as_slice())?;
        if let Some(raw) = raw {
            self.rejection_raw.insert(rejection.id, raw.as_ref())?;
        }
        Ok(rejection.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        committer: Committer,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let committer = Committer::start(&store, settings(), Arc::new(|_, _| {}));
        Fixture {
            _dir: dir,
            store,
            committer,
        }
    }

    fn settings() -> TicketSettings {
        TicketSettings {
            tag: TagFormat::parse("[MG#{number}]").unwrap(),
            first_number: 1000,
        }
    }

    fn mailbox(name: &str) -> MailboxRef {
        MailboxRef {
            name: name.into(),
            queue: name.to_uppercase(),
        }
    }

    fn request(raw: &str, mailboxes: &[&str], automatic: bool) -> CommitRequest {
        let raw = Bytes::from(raw.as_bytes().to_vec());
        let mail = Arc::new(parse(&raw).unwrap());
        CommitRequest {
            origin: Origin {
                source: "test".into(),
                envelope: crate::mail::EnvelopeInfo::default(),
                received_at: "2026-01-01T00:00:00Z".into(),
            },
            size: raw.len() as u64,
            raw,
            upstream_key: None,
            items: mailboxes
                .iter()
                .map(|m| Item::Message {
                    mailbox: mailbox(m),
                    mail: mail.clone(),
                    automatic: automatic.then(|| (RejectReason::AutoSubmitted, "test".into())),
                })
                .collect(),
        }
    }

    async fn one(f: &Fixture, raw: &str, automatic: bool) -> Outcome {
        f.committer
            .commit(request(raw, &["support"], automatic))
            .await
            .unwrap()
            .remove(0)
    }

    fn stored(o: &Outcome) -> (u64, u64, bool) {
        match o {
            Outcome::Stored {
                message_id,
                ticket_number,
                new_ticket,
                ..
            } => (*message_id, *ticket_number, *new_ticket),
            other => panic!("expected a stored message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn threads_by_references_in_reply_to_and_tag() {
        let f = fixture();
        let first = one(
            &f,
            "From: a@x.test\r\nMessage-ID: <1@x>\r\nSubject: Help\r\n\r\nhi\r\n",
            false,
        )
        .await;
        assert_eq!(stored(&first), (1, 1000, true));
        let by_refs = one(&f, "From: a@x.test\r\nMessage-ID: <2@x>\r\nReferences: <unknown@x> <1@x>\r\nSubject: Re: Help\r\n\r\nmore\r\n", false).await;
        assert_eq!(stored(&by_refs), (2, 1000, false));
        let by_irt = one(&f, "From: a@x.test\r\nMessage-ID: <3@x>\r\nIn-Reply-To: <2@x>\r\nSubject: x\r\n\r\nmore\r\n", false).await;
        assert_eq!(stored(&by_irt).1, 1000);
        let by_tag = one(
            &f,
            "From: b@x.test\r\nMessage-ID: <4@x>\r\nSubject: Re: [MG#1000] Help\r\n\r\nmore\r\n",
            false,
        )
        .await;
        assert_eq!(stored(&by_tag).1, 1000);
        let unknown_tag = one(
            &f,
            "From: b@x.test\r\nMessage-ID: <5@x>\r\nSubject: Re: [MG#4242] Help\r\n\r\nnew\r\n",
            false,
        )
        .await;
        assert_eq!(stored(&unknown_tag), (5, 1001, true));
        let ticket = f.store.ticket(1).unwrap().unwrap();
        assert_eq!(ticket.message_count, 4);
        assert_eq!(ticket.tag, "[MG#1000]");
        let ids: Vec<u64> = f
            .store
            .ticket_messages(1)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn duplicates_by_message_id_and_by_content() {
        let f = fixture();
        let mail = "From: a@x.test\r\nMessage-ID: <d@x>\r\nSubject: s\r\n\r\nbody\r\n";
        stored(&one(&f, mail, false).await);
        assert_eq!(
            one(&f, mail, false).await,
            Outcome::Duplicate(Earlier::Message(1))
        );
        let no_id = "From: a@x.test\r\nSubject: s\r\n\r\nno id\r\n";
        let (id, _, _) = stored(&one(&f, no_id, false).await);
        assert_eq!(
            one(&f, no_id, false).await,
            Outcome::Duplicate(Earlier::Message(id))
        );
        // Another mailbox is another scope.
        let other = f
            .committer
            .commit(request(mail, &["sales"], false))
            .await
            .unwrap();
        assert!(matches!(
            other[0],
            Outcome::Stored {
                new_ticket: true,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn duplicates_inside_one_batch_are_caught() {
        let f = fixture();
        let mail = "From: a@x.test\r\nMessage-ID: <same@x>\r\nSubject: s\r\n\r\nbody\r\n";
        let (a, b) = tokio::join!(
            f.committer.commit(request(mail, &["support"], false)),
            f.committer.commit(request(mail, &["support"], false))
        );
        let mut outcomes = [a.unwrap().remove(0), b.unwrap().remove(0)];
        outcomes.sort_by_key(|o| matches!(o, Outcome::Duplicate(_)));
        assert!(matches!(outcomes[0], Outcome::Stored { .. }));
        assert!(matches!(outcomes[1], Outcome::Duplicate(_)));
    }

    #[tokio::test]
    async fn automatic_mail_threads_or_is_rejected() {
        let f = fixture();
        stored(
            &one(
                &f,
                "From: a@x.test\r\nMessage-ID: <t@x>\r\nSubject: s\r\n\r\nx\r\n",
                false,
            )
            .await,
        );
        let threaded = one(&f, "From: a@x.test\r\nMessage-ID: <ar1@x>\r\nIn-Reply-To: <t@x>\r\nSubject: Out of office\r\n\r\nx\r\n", true).await;
        assert_eq!(stored(&threaded).1, 1000);
        assert!(f.store.message(2).unwrap().unwrap().auto_submitted);
        let alone = one(
            &f,
            "From: a@x.test\r\nMessage-ID: <ar2@x>\r\nSubject: Out of office\r\n\r\nx\r\n",
            true,
        )
        .await;
        assert_eq!(
            alone,
            Outcome::Rejected {
                rejection_id: 1,
                reason: "auto_submitted".into()
            }
        );
        assert!(f.store.rejection_raw(1).unwrap().is_some());
    }

    #[tokio::test]
    async fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        {
            let store = Store::open(&path).unwrap();
            let c = Committer::start(&store, settings(), Arc::new(|_, _| {}));
            c.commit(request(
                "From: a@x.test\r\nMessage-ID: <p@x>\r\n\r\nx\r\n",
                &["support"],
                false,
            ))
            .await
            .unwrap();
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
            b"From: a@x.test\r\nMessage-ID: <p@x>\r\n\r\nx\r\n"
        );
        let c = Committer::start(&store, settings(), Arc::new(|_, _| {}));
        let again = c
            .commit(request(
                "From: a@x.test\r\nMessage-ID: <p@x>\r\n\r\nx\r\n",
                &["support"],
                false,
            ))
            .await
            .unwrap();
        assert_eq!(again[0], Outcome::Duplicate(Earlier::Message(1)));
    }
}
