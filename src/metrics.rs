//! Prometheus metrics: what operators graph and alert on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceMailbox {
    pub source: String,
    pub mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceReason {
    pub source: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxLabel {
    pub mailbox: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxKind {
    pub mailbox: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxOutcome {
    pub mailbox: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxStatusLabel {
    pub mailbox: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub received: Family<SourceMailbox, Counter>,
    pub rejected: Family<SourceReason, Counter>,
    pub duplicates: Family<SourceMailbox, Counter>,
    /// Same Message-ID as an earlier, different message: stored as its own.
    pub id_collisions: Family<SourceMailbox, Counter>,
    pub tickets_created: Family<MailboxLabel, Counter>,
    pub smtp_sessions_active: Gauge,
    pub smtp_connections: Family<OutcomeLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_batch_size: Histogram,
    pub fetch_last_success: Family<MailboxLabel, Gauge<f64, AtomicU64>>,
    pub fetch_errors: Family<MailboxKind, Counter>,
    pub fetch_messages: Family<MailboxOutcome, Counter>,
    pub fetch_throttled: Family<MailboxLabel, Counter>,
    pub mailbox_status: Family<MailboxStatusLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let received = Family::<SourceMailbox, Counter>::default();
        registry.register(
            "mailgate_messages_received",
            "Messages received, per source and target mailbox",
            received.clone(),
        );
        let rejected = Family::<SourceReason, Counter>::default();
        registry.register(
            "mailgate_messages_rejected",
            "Messages recorded as rejections (or refused at SMTP time), per reason",
            rejected.clone(),
        );
        let duplicates = Family::<SourceMailbox, Counter>::default();
        registry.register(
            "mailgate_messages_duplicate",
            "Messages seen before for the same mailbox; nothing new stored",
            duplicates.clone(),
        );
        let id_collisions = Family::<SourceMailbox, Counter>::default();
        registry.register(
            "mailgate_messages_message_id_collision",
            "Messages whose Message-ID an earlier, different message of the mailbox carried; stored as their own message",
            id_collisions.clone(),
        );
        let tickets_created = Family::<MailboxLabel, Counter>::default();
        registry.register(
            "mailgate_tickets_created",
            "Tickets opened",
            tickets_created.clone(),
        );
        let smtp_sessions_active = Gauge::default();
        registry.register(
            "mailgate_smtp_sessions_active",
            "SMTP sessions currently open",
            smtp_sessions_active.clone(),
        );
        let smtp_connections = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "mailgate_smtp_connections",
            "SMTP connections by outcome (accepted, refused_limit, refused_per_ip, refused_rate)",
            smtp_connections.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "mailgate_store_commit_seconds",
            "Duration of one durable store transaction (group commit)",
            commit_seconds.clone(),
        );
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "mailgate_store_commit_batch_size",
            "Requests committed together in one transaction",
            commit_batch_size.clone(),
        );
        let fetch_last_success = Family::<MailboxLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "mailgate_fetch_last_success_timestamp_seconds",
            "Unix time of the last upstream sync that completed",
            fetch_last_success.clone(),
        );
        let fetch_errors = Family::<MailboxKind, Counter>::default();
        registry.register(
            "mailgate_fetch_errors",
            "Upstream sync failures by kind (dns, connect, tls, auth, folder, protocol, timeout, io, store)",
            fetch_errors.clone(),
        );
        let fetch_messages = Family::<MailboxOutcome, Counter>::default();
        registry.register(
            "mailgate_fetch_messages",
            "Upstream messages handled, by outcome (imported, rejected, duplicate)",
            fetch_messages.clone(),
        );
        let fetch_throttled = Family::<MailboxLabel, Counter>::default();
        registry.register(
            "mailgate_fetch_throttled",
            "Times the per-mailbox fetch rate limit made a sync wait",
            fetch_throttled.clone(),
        );
        let mailbox_status = Family::<MailboxStatusLabel, Gauge>::default();
        registry.register(
            "mailgate_mailbox_status",
            "1 for the current sync status of each upstream mailbox (ok, paused, auth_failed, error)",
            mailbox_status.clone(),
        );
        Metrics {
            registry,
            fetch_last_success,
            fetch_errors,
            fetch_messages,
            fetch_throttled,
            mailbox_status,
            received,
            rejected,
            duplicates,
            id_collisions,
            tickets_created,
            smtp_sessions_active,
            smtp_connections,
            commit_seconds,
            commit_batch_size,
        }
    }

    /// Makes the per-mailbox and per-reason series exist at zero, so that
    /// dashboards and alerts see them before the first message.
    pub fn init_series(&self, source: &str, mailboxes: &[String], reasons: &[&str]) {
        for m in mailboxes {
            let labels = SourceMailbox {
                source: source.into(),
                mailbox: m.clone(),
            };
            let _ = self.received.get_or_create(&labels);
            let _ = self.duplicates.get_or_create(&labels);
            let _ = self.id_collisions.get_or_create(&labels);
            let _ = self
                .tickets_created
                .get_or_create(&MailboxLabel { mailbox: m.clone() });
        }
        for r in reasons {
            let _ = self.rejected.get_or_create(&SourceReason {
                source: source.into(),
                reason: (*r).into(),
            });
        }
    }

    /// Sets the status gauge of a mailbox: 1 on `status`, 0 on the others.
    pub fn set_mailbox_status(&self, mailbox: &str, status: &str) {
        for s in ["ok", "paused", "auth_failed", "error"] {
            self.mailbox_status
                .get_or_create(&MailboxStatusLabel {
                    mailbox: mailbox.into(),
                    status: s.into(),
                })
                .set(i64::from(s == status));
        }
    }

    pub fn count_fetch(&self, mailbox: &str, outcome: &str) {
        self.fetch_messages
            .get_or_create(&MailboxOutcome {
                mailbox: mailbox.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn count_fetch_error(&self, mailbox: &str, kind: &str) {
        self.fetch_errors
            .get_or_create(&MailboxKind {
                mailbox: mailbox.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Prometheus/OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_received(&self, source: &str, mailbox: &str) {
        self.received
            .get_or_create(&SourceMailbox {
                source: source.into(),
                mailbox: mailbox.into(),
            })
            .inc();
    }

    pub fn count_rejected(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&SourceReason {
                source: source.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn count_connection(&self, outcome: &str) {
        self.smtp_connections
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }
}
