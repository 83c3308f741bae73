//! The commit journal's backlog ingested again at start: mail that was
//! acknowledged, then a crash came before its checkpoint. Each message goes
//! where it was accepted for; if the config changed meanwhile and none of
//! those mailboxes exists any more, where its recipients route now, and
//! failing that it becomes a rejection with its raw bytes. It was
//! acknowledged: it must not vanish.

use crate::mail::RejectReason;
use crate::store::StoreError;
use crate::store::journal::Pending;
use crate::tickets::dedup::Digests;
use crate::tickets::trace::DecisionTrace;
use crate::tickets::{CommitRequest, Item, Journaling};

use super::{Inbound, Ingestor, header_summary, journal_entry};

impl Ingestor {
    /// Ingests again, in order and each durably, the commit journal's
    /// entries that the store did not hold at start; then lets the writer
    /// journal new batches. Returns how many were ingested.
    pub async fn replay_journal(&self, backlog: Vec<Pending>) -> Result<usize, StoreError> {
        let mut done = 0;
        for pending in backlog {
            match journal_entry::decode(&pending.entry) {
                Ok(inbound) => {
                    self.replay_entry(inbound, pending.seq).await?;
                    done += 1;
                }
                // Checksummed on disk, so only a different version's entry.
                Err(e) => {
                    tracing::error!(
                        seq = pending.seq,
                        error = %e,
                        "a commit journal entry cannot be read; it is not ingested"
                    );
                    self.metrics.journal.errors.inc();
                }
            }
        }
        self.committer.backlog_done();
        Ok(done)
    }

    async fn replay_entry(&self, mut inbound: Inbound, seq: u64) -> Result<(), StoreError> {
        let journal = Journaling::Replayed(seq);
        if inbound
            .mailboxes
            .iter()
            .any(|m| self.router.mailbox(m).is_some())
        {
            return self.ingest_as(inbound, journal).await.map(drop);
        }
        let gone = std::mem::take(&mut inbound.mailboxes);
        inbound.mailboxes = self.routed_now(&inbound);
        if inbound.mailboxes.is_empty() {
            tracing::error!(
                seq,
                mailboxes = ?gone,
                "a message of the commit journal was accepted for mailboxes that are not configured any more, and none takes it now; recorded as a rejection (mailbox_gone) with its raw bytes"
            );
            return self.record_gone(inbound, &gone, journal).await;
        }
        tracing::warn!(
            seq,
            was = ?gone,
            now = ?inbound.mailboxes,
            "a message of the commit journal was accepted for mailboxes that are not configured any more; filed where its recipients route now"
        );
        self.ingest_as(inbound, journal).await.map(drop)
    }

    /// Where the envelope's recipients route under the current config
    /// (SMTP mail only: pulled mail belongs to its upstream's mailbox).
    fn routed_now(&self, inbound: &Inbound) -> Vec<String> {
        if inbound.origin.source != "smtp" {
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        for rcpt in &inbound.origin.envelope.rcpt_to {
            if let Ok(name) = self.router.route(rcpt)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
        names
    }

    async fn record_gone(
        &self,
        inbound: Inbound,
        gone: &[String],
        journal: Journaling,
    ) -> Result<(), StoreError> {
        let (message_id, from, subject) = header_summary(&inbound.raw);
        let item = Item::Reject {
            mailbox: None,
            reason: RejectReason::MailboxGone,
            detail: format!(
                "accepted for mailbox {}, which is not configured any more",
                gone.join(", ")
            ),
            message_id,
            from,
            subject,
            keep_raw: true,
            trace: DecisionTrace::default(),
        };
        let request = CommitRequest {
            size: inbound.raw.len() as u64,
            origin: inbound.origin,
            raw: inbound.raw,
            upstream_key: inbound.upstream_key,
            items: vec![item],
            digests: Digests::default(),
            journal,
        };
        self.commit_and_report(request, &[]).await.map(drop)
    }
}
