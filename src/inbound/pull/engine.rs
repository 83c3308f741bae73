//! One sync of one upstream mailbox: list -> (skip known) -> fetch ->
//! ingest/commit -> mark, chunk by chunk, whatever the protocol.
//!
//! The upstream mark (flag, move, delete) happens only after the commit,
//! and the upstream identity is committed with the message: after a crash
//! at any point, the next sync either marks what was already committed
//! (without downloading it again) or imports what was not. Nothing is lost,
//! nothing is imported twice.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use bytes::Bytes;
use governor::DefaultDirectRateLimiter;

use super::upstream::{FetchError, Upstream, UpstreamMessage, Verdict};
use crate::ingest::{Inbound, Ingestor, OversizeNotice};
use crate::mail::{EnvelopeInfo, Origin};
use crate::metrics::{MailboxLabel, Metrics};
use crate::store::{Store, StoreError};
use crate::tickets::model::{Earlier, Outcome};

/// Everything a sync needs besides the upstream session.
#[derive(Clone)]
pub struct SyncContext {
    pub mailbox: String,
    /// "imap" or "pop3": the `source` of stored messages.
    pub source: &'static str,
    /// Shown as the envelope "client" of pulled mail, e.g. `imap://user@host:993/INBOX`.
    pub origin_label: String,
    /// The upstream account, as the envelope recipient.
    pub account: String,
    /// POP3 `keep`: messages stay upstream, so every sync lists the ones
    /// already committed; they are skipped quietly.
    pub keeps_messages: bool,
    pub max_message_size: u64,
    pub ingestor: Ingestor,
    pub store: Store,
    pub limiter: Arc<DefaultDirectRateLimiter>,
    pub metrics: Arc<Metrics>,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Messages the upstream listed as new.
    pub listed: usize,
    /// Became ticket messages.
    pub imported: usize,
    /// Became rejection records.
    pub rejected: usize,
    /// Already stored (same Message-ID or content); marked processed.
    pub duplicates: usize,
    /// Committed by an earlier sync but not yet marked upstream: marked now.
    pub resumed: usize,
    /// Times the rate limit made this sync wait.
    pub throttled: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl SyncError {
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Fetch(e) => e.kind(),
            SyncError::Store(_) => "store",
        }
    }

    pub fn is_auth(&self) -> bool {
        matches!(self, SyncError::Fetch(FetchError::Auth { .. }))
    }
}

/// Most messages one chunk holds: downloaded with one command (IMAP
/// `UID FETCH <set>`), their commits submitted together (so the group
/// commit makes them one or a few transactions and fsyncs), and, once
/// each has its own commit, marked with one command per verdict.
const CHUNK: usize = 64;
/// Most announced bytes one chunk downloads (a single larger message goes
/// alone). At most two chunks are held at once, one committing while the
/// next downloads: a sync holds about 2 x max(CHUNK_BYTES,
/// `limits.max_message_size`) of mail at most. Well under the default
/// message limit (50 MB), so one chunk's download (a single command, within
/// `command_timeout`) takes no longer than one message as large as allowed.
const CHUNK_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes a message too large to download counts for in a chunk (only its
/// header block is fetched).
const HEADER_BYTES: u64 = 64 * 1024;

/// A message whose commit is under way.
type Pending = (
    UpstreamMessage,
    JoinHandle<Result<Vec<Outcome>, StoreError>>,
);

/// Imports everything new from an open session, then finishes it.
pub async fn sync_once<U: Upstream>(
    ctx: &SyncContext,
    upstream: U,
) -> Result<SyncReport, SyncError> {
    let (_keep, never) = watch::channel(false);
    sync_until(ctx, upstream, &never).await
}

/// [`sync_once`], but once `stop` turns true no further chunk is started:
/// the commits under way complete and are marked, and the session is
/// finished (moves and deletions made final). The rest waits for the next
/// sync.
///
/// The listed messages go in chunks (see [`CHUNK`]): a chunk is downloaded,
/// its commits are submitted without waiting, and while they commit the
/// previous chunk is settled: each of its commits awaited, then its
/// messages marked. A message is marked only after its own commit
/// answered OK; a cut anywhere leaves the unmarked ones listed again, and
/// their upstream identity (committed with them) keeps them from being
/// imported twice.
pub async fn sync_until<U: Upstream>(
    ctx: &SyncContext,
    mut upstream: U,
    stop: &watch::Receiver<bool>,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let listed = upstream.list_new().await?;
    report.listed = listed.len();
    let mut in_flight: VecDeque<Vec<Pending>> = VecDeque::new();
    let mut rest = &listed[..];
    while !rest.is_empty() {
        if *stop.borrow() {
            tracing::info!(mailbox = %ctx.mailbox, in_flight = in_flight.iter().map(Vec::len).sum::<usize>(), "stopping: finishing the commits and marks under way");
            break;
        }
        let chunk = &rest[..chunk_len(rest, ctx.max_message_size)];
        let (started, taken, stopped) = start(ctx, &mut upstream, chunk, &mut report, stop).await?;
        rest = &rest[taken..];
        in_flight.push_back(started);
        while in_flight.len() > 1 {
            if let Some(chunk) = in_flight.pop_front() {
                settle(ctx, &mut upstream, chunk, &mut report).await?;
            }
        }
        if stopped {
            break;
        }
    }
    // On an error above, commits still in flight complete without their
    // mark; the next sync finds their upstream identity and marks them.
    while let Some(chunk) = in_flight.pop_front() {
        settle(ctx, &mut upstream, chunk, &mut report).await?;
    }
    upstream.finish().await?;
    Ok(report)
}

/// How many of `messages` the next chunk takes: at most [`CHUNK`], at most
/// [`CHUNK_BYTES`] announced, at least one.
fn chunk_len(messages: &[UpstreamMessage], max_message_size: u64) -> usize {
    let mut bytes = 0u64;
    let mut n = 0;
    for message in messages.iter().take(CHUNK) {
        let size = if message.size > max_message_size {
            HEADER_BYTES
        } else {
            message.size
        };
        bytes = bytes.saturating_add(size);
        if n > 0 && bytes > CHUNK_BYTES {
            break;
        }
        n += 1;
    }
    n.max(1)
}

/// Downloads the new messages of a chunk and starts their commits; marks
/// at once those an earlier sync committed already. The rate limit may
/// end the chunk early: a message that would have to wait for it starts
/// the next chunk instead (so a low `fetch_per_minute` does not hold back
/// the messages already allowed), and only the first message of a chunk
/// waits. Answers the commits started, how many of `chunk` were taken,
/// and whether a stop arrived while waiting.
async fn start<U: Upstream>(
    ctx: &SyncContext,
    upstream: &mut U,
    chunk: &[UpstreamMessage],
    report: &mut SyncReport,
    stop: &watch::Receiver<bool>,
) -> Result<(Vec<Pending>, usize, bool), SyncError> {
    let store = ctx.store.clone();
    let mailbox = ctx.mailbox.clone();
    let keys: Vec<String> = chunk.iter().map(|m| m.key.clone()).collect();
    let known = tokio::task::spawn_blocking(move || {
        keys.iter()
            .map(|key| store.upstream_seen(&mailbox, key))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| StoreError::Failed(e.to_string()))??;
    let mut resumed: Vec<(UpstreamMessage, Verdict)> = Vec::new();
    let mut pending: Vec<Pending> = Vec::with_capacity(chunk.len());
    let mut download: Vec<UpstreamMessage> = Vec::with_capacity(chunk.len());
    let mut stopped = false;
    let mut taken = chunk.len();
    for (i, (message, known)) in chunk.iter().zip(known).enumerate() {
        if (known.is_some() && ctx.keeps_messages) || (known.is_none() && message.leftover) {
            // Kept and already committed; or flagged by someone else, not by us.
            continue;
        }
        if let Some(earlier) = known {
            // Committed before a crash or a failed mark: finish the job only.
            tracing::info!(mailbox = %ctx.mailbox, upstream = %message.key, "already committed; marking upstream");
            resumed.push((message.clone(), verdict_of(earlier)));
            continue;
        }
        if ctx.limiter.check().is_err() {
            if !(pending.is_empty() && download.is_empty()) {
                // Throttled: this chunk ends here, the next one waits.
                taken = i;
                break;
            }
            if !wait_for_permit(ctx, report, stop).await {
                // Stopping: this message and the rest wait for the next sync.
                stopped = true;
                taken = i;
                break;
            }
        }
        if message.size > ctx.max_message_size {
            let head = upstream.fetch_headers(message).await?;
            let notice = oversize(ctx, message, message.size, head);
            let ingestor = ctx.ingestor.clone();
            let commit = tokio::spawn(async move { ingestor.record_oversize(notice).await });
            pending.push((message.clone(), commit));
        } else {
            download.push(message.clone());
        }
    }
    mark_all(upstream, &resumed).await?;
    report.resumed += resumed.len();
    if download.is_empty() {
        return Ok((pending, taken, stopped));
    }
    let raws = upstream.fetch_many(&download).await?;
    for (message, raw) in download.into_iter().zip(raws) {
        let ingestor = ctx.ingestor.clone();
        let commit = if raw.len() as u64 > ctx.max_message_size {
            // The server announced less than it sent.
            let notice = oversize(ctx, &message, raw.len() as u64, header_block(&raw).to_vec());
            tokio::spawn(async move { ingestor.record_oversize(notice).await })
        } else {
            let inbound = Inbound {
                origin: origin(ctx),
                raw: Bytes::from(raw),
                return_path: None,
                mailboxes: vec![ctx.mailbox.clone()],
                upstream_key: Some(message.key.clone()),
            };
            tokio::spawn(async move { ingestor.ingest(inbound).await })
        };
        pending.push((message, commit));
    }
    Ok((pending, taken, stopped))
}

/// Waits until the rate limit allows one more message and takes it; false
/// when a stop arrived first.
async fn wait_for_permit(
    ctx: &SyncContext,
    report: &mut SyncReport,
    stop: &watch::Receiver<bool>,
) -> bool {
    report.throttled += 1;
    ctx.metrics
        .fetch_throttled
        .get_or_create(&MailboxLabel {
            mailbox: ctx.mailbox.clone(),
        })
        .inc();
    let mut stop = stop.clone();
    tokio::select! {
        _ = ctx.limiter.until_ready() => true,
        Ok(_) = stop.wait_for(|s| *s) => false,
    }
}

/// Waits for the commits of a chunk, in order, then marks upstream every
/// message whose commit answered OK. A failed commit ends the chunk: the
/// ones before it are still marked, the ones after it are left to the
/// next sync (committed or not, their upstream identity decides).
async fn settle<U: Upstream>(
    ctx: &SyncContext,
    upstream: &mut U,
    chunk: Vec<Pending>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let mut done: Vec<(UpstreamMessage, Verdict)> = Vec::with_capacity(chunk.len());
    let mut failed: Option<SyncError> = None;
    for (message, commit) in chunk {
        let outcomes = match commit.await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => {
                failed = Some(e.into());
                break;
            }
            Err(e) => {
                failed = Some(StoreError::Failed(format!("commit task failed: {e}")).into());
                break;
            }
        };
        let verdict = match outcomes.first() {
            Some(Outcome::Stored { .. }) => {
                report.imported += 1;
                ctx.metrics.count_fetch(&ctx.mailbox, "imported");
                Verdict::Processed
            }
            Some(Outcome::Rejected { .. }) => {
                report.rejected += 1;
                ctx.metrics.count_fetch(&ctx.mailbox, "rejected");
                Verdict::Rejected
            }
            Some(Outcome::Duplicate(earlier)) => {
                report.duplicates += 1;
                ctx.metrics.count_fetch(&ctx.mailbox, "duplicate");
                verdict_of(*earlier)
            }
            None => Verdict::Processed,
        };
        done.push((message, verdict));
    }
    mark_all(upstream, &done).await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Marks committed messages upstream, one [`Upstream::mark_many`] per verdict.
async fn mark_all<U: Upstream>(
    upstream: &mut U,
    done: &[(UpstreamMessage, Verdict)],
) -> Result<(), FetchError> {
    for verdict in [Verdict::Processed, Verdict::Rejected] {
        let messages: Vec<UpstreamMessage> = done
            .iter()
            .filter(|(_, v)| *v == verdict)
            .map(|(m, _)| m.clone())
            .collect();
        if !messages.is_empty() {
            upstream.mark_many(&messages, verdict).await?;
        }
    }
    Ok(())
}

fn verdict_of(earlier: Earlier) -> Verdict {
    match earlier {
        Earlier::Message(_) => Verdict::Processed,
        Earlier::Rejection(_) => Verdict::Rejected,
    }
}

fn oversize(
    ctx: &SyncContext,
    message: &UpstreamMessage,
    size: u64,
    head: Vec<u8>,
) -> OversizeNotice {
    OversizeNotice {
        origin: origin(ctx),
        size,
        head,
        mailboxes: vec![ctx.mailbox.clone()],
        limit: usize::try_from(ctx.max_message_size).unwrap_or(usize::MAX),
        upstream_key: Some(message.key.clone()),
    }
}

fn origin(ctx: &SyncContext) -> Origin {
    Origin {
        source: ctx.source.to_string(),
        envelope: EnvelopeInfo {
            mail_from: String::new(),
            rcpt_to: vec![ctx.account.clone()],
            client: ctx.origin_label.clone(),
            helo: String::new(),
        },
        received_at: crate::now_rfc3339(),
    }
}

/// The header block of a message (up to and including the blank line),
/// at most 64 KiB.
fn header_block(raw: &[u8]) -> &[u8] {
    const MAX: usize = 64 * 1024;
    let end = memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(raw, b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    &raw[..end.min(MAX)]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ingest::route::Router;
    use crate::store::commit::Committer;
    use crate::tickets::TicketSettings;
    use governor::{Quota, RateLimiter};
    use std::num::NonZeroU32;

    /// An upstream held in memory, to place failures exactly; the real
    /// protocols are tested against Dovecot.
    struct Memory {
        messages: Vec<(UpstreamMessage, Vec<u8>, Option<Verdict>)>,
        /// Fail the mark of this many more messages, then work again.
        fail_marks_after: Option<usize>,
        /// POP3 `keep`: marks change nothing, every message is listed again.
        keep: bool,
        /// Turned true once this many messages were downloaded (a shutdown
        /// arriving during a sync).
        stop_after_fetches: Option<(usize, watch::Sender<bool>)>,
        /// Each mark looks here whether its message is committed already.
        store: Option<Store>,
        /// Marks of messages that were not committed yet.
        marked_uncommitted: usize,
        /// Messages downloaded but not yet marked, at most (chunks in flight).
        unmarked: usize,
        most_unmarked: usize,
        finished: bool,
    }

    impl Upstream for &mut Memory {
        async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
            let keep = self.keep;
            Ok(self
                .messages
                .iter()
                .filter(|m| keep || m.2.is_none())
                .map(|m| m.0.clone())
                .collect())
        }
        async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
            self.unmarked += 1;
            self.most_unmarked = self.most_unmarked.max(self.unmarked);
            if let Some((n, stop)) = &mut self.stop_after_fetches {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    let _ = stop.send(true);
                }
            }
            Ok(self
                .messages
                .iter()
                .find(|m| m.0 == *message)
                .map(|m| m.1.clone())
                .unwrap_or_default())
        }
        async fn fetch_headers(
            &mut self,
            message: &UpstreamMessage,
        ) -> Result<Vec<u8>, FetchError> {
            let raw = self.fetch(message).await?;
            Ok(header_block(&raw).to_vec())
        }
        async fn mark(
            &mut self,
            message: &UpstreamMessage,
            verdict: Verdict,
        ) -> Result<(), FetchError> {
            if let Some(n) = self.fail_marks_after {
                if n == 0 {
                    return Err(FetchError::Io("connection lost".into()));
                }
                self.fail_marks_after = Some(n - 1);
            }
            if let Some(store) = &self.store
                && store
                    .upstream_seen("support", &message.key)
                    .unwrap()
                    .is_none()
            {
                self.marked_uncommitted += 1;
            }
            self.unmarked = self.unmarked.saturating_sub(1);
            if let Some(m) = self.messages.iter_mut().find(|m| m.0 == *message) {
                m.2 = Some(verdict);
            }
            Ok(())
        }
        async fn finish(self) -> Result<(), FetchError> {
            self.finished = true;
            Ok(())
        }
    }

    /// A context over a fresh store in `dir` (also used by the IMAP cut tests).
    pub(crate) fn context(dir: &std::path::Path, quota: Quota, max: u64) -> SyncContext {
        let config = Config::parse(
            "[server]\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\n",
        )
        .unwrap();
        let store = Store::open(&dir.join("db.redb")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let committer = Committer::start(
            &store,
            TicketSettings {
                tag: config.tickets.tag.clone(),
                first_number: 1,
                token: None,
                senders: Default::default(),
                composer: None,
                categories: Vec::new(),
                notify: None,
            },
            Arc::new(|_| {}),
        );
        SyncContext {
            mailbox: "support".into(),
            source: "imap",
            origin_label: "imap://u@h:993/INBOX".into(),
            account: "u".into(),
            keeps_messages: false,
            max_message_size: max,
            ingestor: Ingestor::new(committer, Arc::new(Router::new(&config)), metrics.clone()),
            store,
            limiter: Arc::new(RateLimiter::direct(quota)),
            metrics,
        }
    }

    fn memory(n: usize) -> Memory {
        Memory {
            messages: (1..=n)
                .map(|i| {
                    let raw = format!("From: c{i}@x.test\r\nMessage-ID: <{i}@x>\r\nSubject: n{i}\r\n\r\nbody {i}\r\n");
                    (
                        UpstreamMessage {
                            key: format!("imap:7:{i}"),
                            size: raw.len() as u64,
                            leftover: false,
                        },
                        raw.into_bytes(),
                        None,
                    )
                })
                .collect(),
            fail_marks_after: None,
            keep: false,
            stop_after_fetches: None,
            store: None,
            marked_uncommitted: 0,
            unmarked: 0,
            most_unmarked: 0,
            finished: false,
        }
    }

    #[tokio::test]
    async fn chunks_are_marked_only_after_their_commits_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(100_000).unwrap()),
            1 << 20,
        );
        let total = 3 * CHUNK + 7;
        let mut up = memory(total);
        up.store = Some(ctx.store.clone());
        let report = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!(report.imported, total, "{report:?}");
        assert_eq!(up.marked_uncommitted, 0, "a mark came before its commit");
        assert!(up.messages.iter().all(|m| m.2 == Some(Verdict::Processed)));
        assert!(
            up.most_unmarked > 1 && up.most_unmarked <= 2 * CHUNK,
            "messages held unmarked at once: {}",
            up.most_unmarked
        );
    }

    #[test]
    fn a_chunk_is_bounded_by_count_and_bytes() {
        let msg = |size| UpstreamMessage {
            key: "imap:1:1".into(),
            size,
            leftover: false,
        };
        let small: Vec<_> = (0..200).map(|_| msg(2048)).collect();
        assert_eq!(chunk_len(&small, 1 << 30), CHUNK);
        let big: Vec<_> = (0..10).map(|_| msg(CHUNK_BYTES / 3)).collect();
        assert_eq!(chunk_len(&big, 1 << 30), 3);
        let huge = vec![msg(CHUNK_BYTES * 4), msg(10)];
        assert_eq!(chunk_len(&huge, 1 << 30), 1, "a large message goes alone");
        // Too large to download: only its header block counts.
        let oversized: Vec<_> = (0..10).map(|_| msg(CHUNK_BYTES * 4)).collect();
        assert_eq!(chunk_len(&oversized, 1 << 20), 10);
    }

    #[tokio::test]
    async fn a_stop_lets_begun_messages_finish_and_starts_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(1000).unwrap()),
            1 << 20,
        );
        let (stop_tx, stop) = watch::channel(false);
        // The stop arrives during the download of the second chunk: that
        // chunk is committed and marked, the third is never started.
        let total = 2 * CHUNK + 5;
        let mut up = memory(total);
        up.stop_after_fetches = Some((CHUNK + 3, stop_tx));
        let report = sync_until(&ctx, &mut up, &stop).await.unwrap();
        assert_eq!(
            (report.listed, report.imported),
            (total, 2 * CHUNK),
            "{report:?}"
        );
        assert!(
            up.finished,
            "the session is finished (moves, deletions made final)"
        );
        let marked = up.messages.iter().filter(|m| m.2.is_some()).count();
        assert_eq!(marked, 2 * CHUNK, "every message committed was also marked");
        let stored = ctx
            .store
            .list_tickets(&Default::default(), None, 1000)
            .unwrap()
            .items
            .len();
        assert_eq!(stored, 2 * CHUNK, "nothing was committed without its mark");
        let rest = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!((rest.listed, rest.imported), (5, 5), "{rest:?}");
    }

    #[tokio::test]
    async fn a_lost_mark_is_redone_without_a_second_import() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(1000).unwrap()),
            1 << 20,
        );
        let mut up = memory(5);
        up.fail_marks_after = Some(2);
        let err = sync_once(&ctx, &mut up).await.unwrap_err();
        assert_eq!(err.kind(), "io");
        up.fail_marks_after = None;
        let report = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!(report.listed, 3, "two were marked before the failure");
        // Their commits were under way when the mark failed: they are only
        // marked now (resumed), or caught as duplicates if still in flight.
        assert_eq!(report.imported, 0, "{report:?}");
        assert_eq!(report.resumed + report.duplicates, 3, "{report:?}");
        assert!(up.messages.iter().all(|m| m.2 == Some(Verdict::Processed)));
        let tickets = ctx
            .store
            .list_tickets(&Default::default(), None, 100)
            .unwrap()
            .items;
        assert_eq!(tickets.len(), 5, "every message exactly once");
    }

    #[tokio::test]
    async fn kept_messages_are_skipped_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(1000).unwrap()),
            1 << 20,
        );
        ctx.keeps_messages = true;
        let mut up = memory(3);
        up.keep = true;
        assert_eq!(sync_once(&ctx, &mut up).await.unwrap().imported, 3);
        let again = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!(
            again,
            SyncReport {
                listed: 3,
                ..SyncReport::default()
            }
        );
    }

    #[tokio::test]
    async fn new_uidvalidity_does_not_import_again() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(1000).unwrap()),
            1 << 20,
        );
        let mut up = memory(3);
        sync_once(&ctx, &mut up).await.unwrap();
        // The server renumbered everything and forgot the flags.
        for m in &mut up.messages {
            m.0.key = m.0.key.replace("imap:7:", "imap:8:");
            m.2 = None;
        }
        let report = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!((report.imported, report.duplicates), (0, 3));
        assert!(up.messages.iter().all(|m| m.2 == Some(Verdict::Processed)));
        assert_eq!(
            ctx.store
                .list_tickets(&Default::default(), None, 100)
                .unwrap()
                .items
                .len(),
            3
        );
    }

    #[tokio::test]
    async fn bad_and_oversized_messages_are_recorded_and_marked_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(
            dir.path(),
            Quota::per_minute(NonZeroU32::new(1000).unwrap()),
            2048,
        );
        let mut up = memory(3);
        up.messages[0].1 = b"\r\n".to_vec();
        let big = format!(
            "From: b@x.test\r\nSubject: big\r\n\r\n{}\r\n",
            "x".repeat(4096)
        );
        up.messages[1].0.size = big.len() as u64;
        up.messages[1].1 = big.into_bytes();
        let report = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!((report.imported, report.rejected), (1, 2));
        let verdicts: Vec<_> = up.messages.iter().map(|m| m.2).collect();
        assert_eq!(
            verdicts,
            vec![
                Some(Verdict::Rejected),
                Some(Verdict::Rejected),
                Some(Verdict::Processed)
            ]
        );
        let mut reasons: Vec<String> = ctx
            .store
            .list_rejections(None, None, 10)
            .unwrap()
            .items
            .into_iter()
            .map(|r| r.reason.to_string())
            .collect();
        reasons.sort();
        assert_eq!(reasons, vec!["oversize", "unparseable"]);
    }

    #[tokio::test]
    async fn the_rate_limit_makes_a_sync_wait() {
        let dir = tempfile::tempdir().unwrap();
        let one_per_300ms = Quota::with_period(std::time::Duration::from_millis(300))
            .unwrap()
            .allow_burst(NonZeroU32::MIN);
        let ctx = context(dir.path(), one_per_300ms, 1 << 20);
        let mut up = memory(3);
        let report = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!(report.imported, 3);
        assert!(report.throttled >= 1, "{report:?}");
    }

    #[test]
    fn header_block_stops_at_the_blank_line() {
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_block(b"A: b\n\nbody"), b"A: b\n\n");
        assert_eq!(header_block(b"A: b"), b"A: b");
    }
}
