//! One sync of one upstream mailbox: list -> (skip known) -> fetch ->
//! ingest/commit -> mark, message by message, whatever the protocol.
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

/// Commits in flight at once during a sync: they share fsyncs (group
/// commit) while the next messages download. Each mark still waits for its
/// own commit.
const IN_FLIGHT: usize = 16;

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

/// [`sync_once`], but once `stop` turns true no further message is
/// started: the commits under way complete and are marked, and the session
/// is finished (moves and deletions made final). The rest waits for the
/// next sync.
pub async fn sync_until<U: Upstream>(
    ctx: &SyncContext,
    mut upstream: U,
    stop: &watch::Receiver<bool>,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let listed = upstream.list_new().await?;
    report.listed = listed.len();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    for message in &listed {
        if *stop.borrow() {
            tracing::info!(mailbox = %ctx.mailbox, in_flight = pending.len(), "stopping: finishing the commits and marks under way");
            break;
        }
        if let Some(commit) = start(ctx, &mut upstream, message, &mut report, stop).await? {
            pending.push_back((message.clone(), commit));
        }
        while pending.len() >= IN_FLIGHT {
            if let Some(p) = pending.pop_front() {
                settle(ctx, &mut upstream, p, &mut report).await?;
            }
        }
    }
    // On an error above, commits still in flight complete without their
    // mark; the next sync finds their upstream identity and marks them.
    while let Some(p) = pending.pop_front() {
        settle(ctx, &mut upstream, p, &mut report).await?;
    }
    upstream.finish().await?;
    Ok(report)
}

/// Downloads one message and starts its commit; None when it was already
/// committed by an earlier sync (then it is only marked).
async fn start<U: Upstream>(
    ctx: &SyncContext,
    upstream: &mut U,
    message: &UpstreamMessage,
    report: &mut SyncReport,
    stop: &watch::Receiver<bool>,
) -> Result<Option<JoinHandle<Result<Vec<Outcome>, StoreError>>>, SyncError> {
    let store = ctx.store.clone();
    let (mailbox, key) = (ctx.mailbox.clone(), message.key.clone());
    let known = tokio::task::spawn_blocking(move || store.upstream_seen(&mailbox, &key))
        .await
        .map_err(|e| StoreError::Failed(e.to_string()))??;
    if (known.is_some() && ctx.keeps_messages) || (known.is_none() && message.leftover) {
        // Kept and already committed; or flagged by someone else, not by us.
        return Ok(None);
    }
    if let Some(earlier) = known {
        // Committed before a crash or a failed mark: finish the job only.
        upstream.mark(message, verdict_of(earlier)).await?;
        report.resumed += 1;
        tracing::info!(mailbox = %ctx.mailbox, upstream = %message.key, "already committed; marked upstream");
        return Ok(None);
    }
    if ctx.limiter.check().is_err() {
        report.throttled += 1;
        ctx.metrics
            .fetch_throttled
            .get_or_create(&MailboxLabel {
                mailbox: ctx.mailbox.clone(),
            })
            .inc();
        let mut stop = stop.clone();
        tokio::select! {
            _ = ctx.limiter.until_ready() => {}
            // Stopping: this message waits for the next sync.
            Ok(_) = stop.wait_for(|s| *s) => return Ok(None),
        }
    }
    let ingestor = ctx.ingestor.clone();
    if message.size > ctx.max_message_size {
        let head = upstream.fetch_headers(message).await?;
        let notice = oversize(ctx, message, message.size, head);
        return Ok(Some(tokio::spawn(async move {
            ingestor.record_oversize(notice).await
        })));
    }
    let raw = upstream.fetch(message).await?;
    if raw.len() as u64 > ctx.max_message_size {
        // The server announced less than it sent.
        let notice = oversize(ctx, message, raw.len() as u64, header_block(&raw).to_vec());
        return Ok(Some(tokio::spawn(async move {
            ingestor.record_oversize(notice).await
        })));
    }
    let inbound = Inbound {
        origin: origin(ctx),
        raw: Bytes::from(raw),
        return_path: None,
        mailboxes: vec![ctx.mailbox.clone()],
        upstream_key: Some(message.key.clone()),
    };
    Ok(Some(tokio::spawn(
        async move { ingestor.ingest(inbound).await },
    )))
}

/// Waits for a commit, then marks its message upstream.
async fn settle<U: Upstream>(
    ctx: &SyncContext,
    upstream: &mut U,
    (message, commit): Pending,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let outcomes = commit
        .await
        .map_err(|e| StoreError::Failed(format!("commit task failed: {e}")))??;
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
    upstream.mark(&message, verdict).await?;
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
            Arc::new(|_, _| {}),
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
            finished: false,
        }
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
        let mut up = memory(10);
        up.stop_after_fetches = Some((3, stop_tx));
        let report = sync_until(&ctx, &mut up, &stop).await.unwrap();
        assert_eq!((report.listed, report.imported), (10, 3), "{report:?}");
        assert!(
            up.finished,
            "the session is finished (moves, deletions made final)"
        );
        let marked = up.messages.iter().filter(|m| m.2.is_some()).count();
        assert_eq!(marked, 3, "every message committed was also marked");
        let stored = ctx
            .store
            .list_tickets(&Default::default(), None, 100)
            .unwrap()
            .items
            .len();
        assert_eq!(stored, 3, "nothing was committed without its mark");
        let rest = sync_once(&ctx, &mut up).await.unwrap();
        assert_eq!((rest.listed, rest.imported), (7, 7), "{rest:?}");
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
