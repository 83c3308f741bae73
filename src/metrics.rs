//! Prometheus metrics: what operators graph and alert on.
//!
//! Two expositions of the same registry: OpenMetrics 1.0 (what
//! prometheus-client encodes) for scrapers that ask for it, and the classic
//! Prometheus text format 0.0.4 for everyone else (promtool, older scrapers).

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
    /// Rejections removed by `tickets.rejection_retention`.
    pub rejections_pruned: Counter,
    /// Log lines dropped because the log reader fell behind (app::log_output).
    pub log_lines_dropped: Counter,
    pub tickets_created: Family<MailboxLabel, Counter>,
    pub smtp_sessions_active: Gauge,
    pub smtp_connections: Family<OutcomeLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_batch_size: Histogram,
    pub journal: JournalMetrics,
    pub fetch_last_success: Family<MailboxLabel, Gauge<f64, AtomicU64>>,
    pub fetch_errors: Family<MailboxKind, Counter>,
    pub fetch_messages: Family<MailboxOutcome, Counter>,
    pub fetch_throttled: Family<MailboxLabel, Counter>,
    pub mailbox_status: Family<MailboxStatusLabel, Gauge>,
    pub outbound: OutboundMetrics,
    pub submission: SubmissionMetrics,
    pub oauth: OAuthMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountOutcome {
    pub account: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurabilityLabel {
    pub durability: String,
}

/// How batches became durable: the commit journal and its checkpoints.
pub struct JournalMetrics {
    /// Store transactions by how they ended: journal, store, failed.
    pub commits: Family<DurabilityLabel, Counter>,
    pub checkpoints: Counter,
    pub checkpoint_seconds: Histogram,
    /// Journal writes, syncs and checkpoints that failed, and entries
    /// that could not be read back.
    pub errors: Counter,
    /// Messages ingested again from the journal at start.
    pub replayed: Counter,
}

impl JournalMetrics {
    fn register(registry: &mut Registry) -> JournalMetrics {
        let m = JournalMetrics {
            commits: Family::default(),
            checkpoints: Counter::default(),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            errors: Counter::default(),
            replayed: Counter::default(),
        };
        registry.register(
            "mailgate_store_commits",
            "Store transactions by how their batch ended (journal: redb without fsync plus the commit journal's fdatasync; store: a durable redb commit; failed)",
            m.commits.clone(),
        );
        registry.register(
            "mailgate_store_checkpoints",
            "Durable redb commits that made the commit journal's batches redundant",
            m.checkpoints.clone(),
        );
        registry.register(
            "mailgate_store_checkpoint_seconds",
            "Duration of one checkpoint",
            m.checkpoint_seconds.clone(),
        );
        registry.register(
            "mailgate_store_journal_errors",
            "Commit journal writes, syncs or checkpoints that failed and journal entries that could not be read back (each is logged)",
            m.errors.clone(),
        );
        registry.register(
            "mailgate_store_journal_replayed",
            "Messages ingested again from the commit journal at start (acknowledged before a crash, not yet checkpointed)",
            m.replayed.clone(),
        );
        for durability in ["journal", "store", "failed"] {
            let _ = m.commits.get_or_create(&DurabilityLabel {
                durability: durability.into(),
            });
        }
        m
    }

    pub fn count_commit(&self, durability: &str) {
        self.commits
            .get_or_create(&DurabilityLabel {
                durability: durability.into(),
            })
            .inc();
    }
}

/// The submission (relay) endpoint.
pub struct SubmissionMetrics {
    pub sessions_active: Gauge,
    /// accepted, rejected, blocked (a client locked out), error.
    pub auth: Family<OutcomeLabel, Counter>,
    /// queued, refused_sender, refused_from, error.
    pub messages: Family<AccountOutcome, Counter>,
}

impl SubmissionMetrics {
    fn register(registry: &mut Registry) -> SubmissionMetrics {
        let m = SubmissionMetrics {
            sessions_active: Gauge::default(),
            auth: Family::default(),
            messages: Family::default(),
        };
        registry.register(
            "mailgate_submission_sessions_active",
            "Submission (relay endpoint) sessions currently open",
            m.sessions_active.clone(),
        );
        registry.register(
            "mailgate_submission_auth",
            "SMTP AUTH attempts on the submission listeners by outcome (accepted, rejected, blocked, error)",
            m.auth.clone(),
        );
        registry.register(
            "mailgate_submission_messages",
            "Submitted messages by account and outcome (queued, refused_sender, refused_from, error)",
            m.messages.clone(),
        );
        for outcome in ["accepted", "rejected", "blocked"] {
            let _ = m.auth.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
        m
    }

    pub fn count_auth(&self, outcome: &str) {
        self.auth
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn count_message(&self, account: &str, outcome: &str) {
        self.messages
            .get_or_create(&AccountOutcome {
                account: account.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailboxReason {
    pub mailbox: String,
    pub reason: String,
}

/// The outbox and the send worker.
pub struct OutboundMetrics {
    pub queue_depth: Family<MailboxLabel, Gauge>,
    pub oldest_queued_seconds: Family<MailboxLabel, Gauge<f64, AtomicU64>>,
    pub sent: Family<MailboxLabel, Counter>,
    pub deferred: Family<MailboxReason, Counter>,
    pub failed: Family<MailboxLabel, Counter>,
}

impl OutboundMetrics {
    fn register(registry: &mut Registry) -> OutboundMetrics {
        let m = OutboundMetrics {
            queue_depth: Family::default(),
            oldest_queued_seconds: Family::default(),
            sent: Family::default(),
            deferred: Family::default(),
            failed: Family::default(),
        };
        registry.register(
            "mailgate_outbound_queue_depth",
            "Outbound messages waiting to be sent (queued or deferred)",
            m.queue_depth.clone(),
        );
        registry.register(
            "mailgate_outbound_oldest_queued_seconds",
            "Age of the oldest outbound message still waiting",
            m.oldest_queued_seconds.clone(),
        );
        registry.register(
            "mailgate_outbound_sent",
            "Outbound messages the relay accepted",
            m.sent.clone(),
        );
        registry.register(
            "mailgate_outbound_deferred",
            "Delivery attempts put off, by reason (rate_limit, temporary, no_relay)",
            m.deferred.clone(),
        );
        registry.register(
            "mailgate_outbound_failed",
            "Outbound messages given up (permanent refusal or too old)",
            m.failed.clone(),
        );
        m
    }

    /// Makes a mailbox's series exist at zero.
    pub fn init(&self, mailbox: &str) {
        let label = MailboxLabel {
            mailbox: mailbox.into(),
        };
        let _ = self.queue_depth.get_or_create(&label);
        let _ = self.oldest_queued_seconds.get_or_create(&label);
        let _ = self.sent.get_or_create(&label);
        let _ = self.failed.get_or_create(&label);
    }
}

/// OAuth2 token health per mailbox.
pub struct OAuthMetrics {
    pub token_expiry: Family<MailboxLabel, Gauge<f64, AtomicU64>>,
    /// ok, revoked, unavailable, not_configured.
    pub refresh: Family<MailboxOutcome, Counter>,
    pub refresh_token_age: Family<MailboxLabel, Gauge<f64, AtomicU64>>,
    /// When each mailbox's refresh token was obtained (unix seconds): the
    /// age gauge is brought up to date at every scrape.
    obtained: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl OAuthMetrics {
    pub const OUTCOMES: [&'static str; 4] = ["ok", "revoked", "unavailable", "not_configured"];

    fn register(registry: &mut Registry) -> OAuthMetrics {
        let m = OAuthMetrics {
            token_expiry: Family::default(),
            refresh: Family::default(),
            refresh_token_age: Family::default(),
            obtained: Default::default(),
        };
        registry.register(
            "mailgate_oauth_token_expiry_timestamp_seconds",
            "Unix time the mailbox's current OAuth2 access token expires",
            m.token_expiry.clone(),
        );
        registry.register(
            "mailgate_oauth_refresh",
            "OAuth2 token refreshes by outcome (ok, revoked, unavailable, not_configured)",
            m.refresh.clone(),
        );
        registry.register(
            "mailgate_oauth_refresh_token_age_seconds",
            "Age of the mailbox's OAuth2 refresh token (since it was configured, rotated or authorized)",
            m.refresh_token_age.clone(),
        );
        m
    }

    /// Makes a mailbox's refresh counters exist at zero.
    pub fn init(&self, mailbox: &str) {
        for outcome in Self::OUTCOMES {
            let _ = self.refresh.get_or_create(&MailboxOutcome {
                mailbox: mailbox.into(),
                outcome: outcome.into(),
            });
        }
    }

    pub fn count_refresh(&self, mailbox: &str, outcome: &str) {
        self.refresh
            .get_or_create(&MailboxOutcome {
                mailbox: mailbox.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn set_expiry(&self, mailbox: &str, unix: i64) {
        self.token_expiry
            .get_or_create(&MailboxLabel {
                mailbox: mailbox.into(),
            })
            .set(unix as f64);
    }

    /// The refresh token in use was obtained at `unix`.
    pub fn set_refresh_token_obtained(&self, mailbox: &str, unix: i64) {
        self.obtained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(mailbox.to_string(), unix);
        self.update_ages();
    }

    fn update_ages(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let obtained = self
            .obtained
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (mailbox, at) in obtained.iter() {
            self.refresh_token_age
                .get_or_create(&MailboxLabel {
                    mailbox: mailbox.clone(),
                })
                .set((now - at).max(0) as f64);
        }
    }
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
        let rejections_pruned = Counter::default();
        registry.register(
            "mailgate_rejections_pruned",
            "Rejections (with their raw bytes) removed after tickets.rejection_retention",
            rejections_pruned.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "mailgate_log_lines_dropped",
            "Log lines dropped because whatever reads the log (stderr) fell behind",
            log_lines_dropped.clone(),
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
        // 100 µs (an fsync on a fast disk) to ~13 s; batch sizes 1 to 1024
        // (the writer takes at most 512 at once).
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "mailgate_store_commit_seconds",
            "Duration of one store transaction (group commit), until its batch was durable",
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
        let outbound = OutboundMetrics::register(&mut registry);
        let submission = SubmissionMetrics::register(&mut registry);
        let oauth = OAuthMetrics::register(&mut registry);
        let journal = JournalMetrics::register(&mut registry);
        Metrics {
            journal,
            outbound,
            submission,
            oauth,
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
            rejections_pruned,
            log_lines_dropped,
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

    /// OpenMetrics 1.0 text exposition (ends with `# EOF`).
    pub fn render(&self) -> String {
        self.oauth.update_ages();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the format asked for.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Classic => to_classic(&self.render()),
        }
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

/// An exposition format of /metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// `text/plain; version=0.0.4`, the classic Prometheus text format.
    Classic,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics when the Accept header asks for it (version 1.0.0 or no
    /// version) at least as much as for text/plain; the classic format
    /// otherwise, including without an Accept header and for `*/*`.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let (mut openmetrics, mut classic) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0),
                    "version" => version = Some(v.to_string()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => {
                    classic = classic.max(q);
                }
                "text/*" | "*/*" => classic = classic.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text as the classic text format:
/// a counter's HELP and TYPE lines name its sample (`x_total`, not `x`), and
/// there are no `# UNIT` lines, no `_created` samples and no `# EOF`.
fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus-client writes HELP, then TYPE, then samples, per family.
    let mut help: Option<(&str, &str)> = None;
    let mut family: (&str, &str) = ("", "");
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            family = (name, kind);
            let (shown, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                // info, stateset, gaugehistogram, unknown: no classic type.
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {shown} {text}\n"));
            }
            out.push_str(&format!("# TYPE {shown} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" || line.is_empty() {
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample
            .strip_prefix(family.0)
            .is_some_and(|suffix| suffix == "_created")
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Classic);
        assert_eq!(Format::negotiate(Some("text/plain")), Classic);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Classic);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            OpenMetrics
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text; version=1.0.0; q=0.2, text/plain; q=0.9"
            )),
            Classic
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Classic
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Classic
        );
    }

    #[test]
    fn classic_names_counters_by_their_sample() {
        let m = Metrics::new();
        m.count_received("smtp", "support");
        m.commit_seconds.observe(0.01);
        let text = m.render_as(Format::Classic);
        assert!(text.contains("# HELP mailgate_messages_received_total Messages received"));
        assert!(text.contains("# TYPE mailgate_messages_received_total counter\n"));
        assert!(
            text.contains(
                "mailgate_messages_received_total{source=\"smtp\",mailbox=\"support\"} 1\n"
            )
        );
        assert!(text.contains("# TYPE mailgate_store_commit_seconds histogram\n"));
        assert!(text.contains("# TYPE mailgate_smtp_sessions_active gauge\n"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("_created"));
        let om = m.render_as(Format::OpenMetrics);
        assert!(om.contains("# TYPE mailgate_messages_received counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }
}
