//! Quarantine retention: a periodic task removes rejections older than
//! `tickets.rejection_retention`, with their raw bytes and index rows,
//! through the group-commit writer like every other write, and counts them
//! in `mailgate_rejections_pruned_total`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::commit::Committer;
use crate::tickets::{OpOutcome, Operation};

/// Rejections removed per transaction (a backlog takes several).
const BATCH: usize = 5000;

/// How often to look: a quarter of the retention, between 1 s and 1 h.
fn period(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Runs until `stopped` turns true.
pub async fn run(
    store: Store,
    committer: Committer,
    metrics: Arc<Metrics>,
    retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period(retention));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        let Ok(retention) = time::Duration::try_from(retention) else {
            return;
        };
        let cutoff = time::OffsetDateTime::now_utc() - retention;
        // Nothing old enough (read-only, cheap): no write transaction at all.
        if !due(&store, cutoff) {
            continue;
        }
        loop {
            let op = Operation::PruneRejections { cutoff, max: BATCH };
            match committer.apply(op).await {
                Ok(OpOutcome::Pruned(n)) => {
                    if n > 0 {
                        metrics.rejections_pruned.inc_by(n);
                        tracing::info!(
                            count = n,
                            "pruned rejections past tickets.rejection_retention"
                        );
                    }
                    if n < BATCH as u64 {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old rejections failed; trying again later");
                    break;
                }
            }
        }
    }
}

/// Whether the oldest rejection (by id, i.e. commit order) is past the
/// cutoff; a record whose time cannot be read lets the prune decide.
fn due(store: &Store, cutoff: time::OffsetDateTime) -> bool {
    match store.oldest_rejection() {
        Ok(Some(r)) => crate::parse_rfc3339(&r.received_at).is_none_or(|at| at < cutoff),
        Ok(None) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_period_follows_the_retention_within_bounds() {
        use std::time::Duration;
        assert_eq!(
            super::period(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            super::period(Duration::from_secs(400)),
            Duration::from_secs(100)
        );
        assert_eq!(
            super::period(Duration::from_secs(30 * 86400)),
            Duration::from_secs(3600)
        );
    }
}
