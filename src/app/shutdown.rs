//! Joinable shutdown, in the order that keeps "nothing acknowledged is
//! lost": the listeners stop accepting; open SMTP sessions get `421 4.3.2`
//! and are joined (a session in DATA still waits for its commit and gets
//! its 250); fetch workers start no new message, complete the commits and
//! upstream marks under way and are joined; then the store writer commits
//! everything still queued and its thread is joined. Each step is bounded
//! and logged.

use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::time::Instant;

use super::root::{Core, Front};
use crate::store::commit::WriterReport;

/// How long open SMTP sessions get to end after their 421.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long fetch workers get to finish the messages they have begun.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the writer gets for what is still queued.
pub const WRITER_TIMEOUT: Duration = Duration::from_secs(120);

/// Takes down everything `serve` built, in order.
pub async fn shutdown(front: Front, core: Core) -> Result<WriterReport> {
    tracing::info!("shutting down: listeners closed, open SMTP sessions get 421");
    // Workers stop starting messages now; they are joined after the sessions.
    core.fetch.stop();
    front.close(DRAIN_TIMEOUT).await;
    core.close(WORKER_TIMEOUT, WRITER_TIMEOUT).await
}

impl Front {
    /// Stops accepting (SMTP and HTTP) and joins the open SMTP sessions;
    /// those still open after `drain` are cancelled (none of them has a
    /// 250 it was not given: the reply comes only after the commit, and a
    /// commit already queued is still written). Returns (joined, cancelled).
    pub async fn close(self, drain: Duration) -> (usize, usize) {
        let _ = self.stop.send(true);
        let mut sets = Vec::new();
        for listener in self.smtp {
            match listener.await {
                Ok(set) => sets.push(set),
                Err(e) => tracing::error!(error = %e, "an SMTP listener task failed"),
            }
        }
        // HTTP connections in progress are not waited for: they only read
        // the store, or queue through the writer, which is still open.
        let _ = self.http.await;
        // The send worker ends its attempt in progress and records it.
        match tokio::time::timeout(drain, self.outbound).await {
            Ok(_) => tracing::info!("send worker stopped"),
            Err(_) => tracing::warn!(timeout = ?drain, "the send worker did not stop in time"),
        }
        let open: usize = sets.iter().map(|s| s.len()).sum();
        let deadline = Instant::now() + drain;
        let (mut joined, mut cancelled) = (0, 0);
        for mut set in sets {
            loop {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(_)) => joined += 1,
                    Ok(None) => break,
                    Err(_) => {
                        cancelled += set.len();
                        set.shutdown().await;
                        break;
                    }
                }
            }
        }
        if cancelled > 0 {
            tracing::warn!(
                open,
                joined,
                cancelled,
                timeout = ?drain,
                "SMTP sessions still open after the drain timeout were cancelled"
            );
        } else {
            tracing::info!(joined, "SMTP sessions drained");
        }
        (joined, cancelled)
    }
}

impl Core {
    /// Joins the fetch workers (they finish what they began), then closes
    /// the writer's queue, lets it commit what is queued and joins it.
    pub async fn close(self, workers: Duration, writer: Duration) -> Result<WriterReport> {
        let Core {
            fetch,
            writer: handle,
            ..
        } = self;
        if !fetch.is_empty() {
            let (joined, cancelled) = fetch.join(workers).await;
            if cancelled > 0 {
                tracing::warn!(joined, cancelled, timeout = ?workers, "fetch workers still busy after the timeout were cancelled");
            } else {
                tracing::info!(joined, "fetch workers stopped");
            }
        }
        let join = tokio::task::spawn_blocking(move || handle.join());
        let report = match tokio::time::timeout(writer, join).await {
            Ok(Ok(Ok(report))) => report,
            Ok(Ok(Err(e))) => return Err(anyhow!("store writer: {e}")),
            Ok(Err(e)) => return Err(anyhow!("store writer: {e}")),
            Err(_) => {
                // What it still held was never acknowledged: senders retry.
                return Err(anyhow!("the store writer did not finish within {writer:?}"));
            }
        };
        tracing::info!(
            transactions = report.transactions,
            requests = report.requests,
            after_close = report.after_close,
            "store writer drained, {} transactions",
            report.transactions
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::config::Config;
    use crate::ingest::Inbound;
    use crate::mail::{EnvelopeInfo, Origin};
    use crate::store::{Store, StoreError};
    use crate::tickets::model::Outcome;

    fn inbound(i: usize) -> Inbound {
        let raw = format!(
            "From: c{i}@client.test\r\nTo: support@example.test\r\nMessage-ID: <{i}@client.test>\r\nSubject: n{i}\r\n\r\nbody {i}\r\n"
        );
        Inbound {
            origin: Origin {
                source: "smtp".into(),
                envelope: EnvelopeInfo {
                    mail_from: format!("c{i}@client.test"),
                    rcpt_to: vec!["support@example.test".into()],
                    client: "127.0.0.1:1".into(),
                    helo: "client.test".into(),
                },
                received_at: crate::now_rfc3339(),
            },
            raw: raw.into_bytes().into(),
            return_path: Some(format!("c{i}@client.test")),
            mailboxes: vec!["support".into()],
            upstream_key: None,
        }
    }

    /// Commits racing the close either were written (and then are in the
    /// store after a reopen) or were refused with `Closed`; none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_the_core_commits_what_was_queued_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(&format!(
            "[server]\ndata_dir={:?}\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        let app = App::new(config);
        let core = app.core(app.open_store().unwrap()).unwrap();
        let ingestor = core.ingestor.clone();
        let first = ingestor.ingest(inbound(0)).await.unwrap();
        let tasks: Vec<_> = (1..200)
            .map(|i| {
                let ingestor = ingestor.clone();
                tokio::spawn(async move { ingestor.ingest(inbound(i)).await })
            })
            .collect();
        let report = core.close(WORKER_TIMEOUT, WRITER_TIMEOUT).await.unwrap();
        assert!(report.transactions >= 1, "{report:?}");
        let mut acked = vec![first];
        for t in tasks {
            match t.await.unwrap() {
                Ok(outcomes) => acked.push(outcomes),
                Err(StoreError::Closed) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(
            matches!(ingestor.ingest(inbound(500)).await, Err(StoreError::Closed)),
            "after the close, nothing new is accepted"
        );
        assert_eq!(report.requests, acked.len() as u64, "{report:?}");
        drop((ingestor, app));
        let store = Store::open(&dir.path().join("mailgate.redb")).unwrap();
        for outcomes in acked {
            let Some(Outcome::Stored { message_id, .. }) = outcomes.first() else {
                panic!("not stored: {outcomes:?}");
            };
            assert!(store.message(*message_id).unwrap().is_some());
        }
    }
}
