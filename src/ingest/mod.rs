//! Ingest: cap -> parse -> classify -> route -> thread -> commit, one way.
//!
//! Every input ends as a ticket message, a rejection record, or an error the
//! caller turns into a 4xx (so the sender retries): nothing is dropped.
//! Threading and dedup run inside the commit transaction (see
//! [`crate::store::commit`]); this module prepares what to commit and reports
//! what happened (metrics, one log line per outcome).

pub mod charset;
pub mod classify;
pub mod journal_entry;
pub mod offload;
pub mod parse;
mod replay_journal;
pub mod route;
pub mod rules;

use std::sync::Arc;

use bytes::Bytes;

use crate::mail::printable::Printable;
use crate::mail::{Origin, RejectReason};
use crate::metrics::{MailboxLabel, Metrics, SourceMailbox};
use crate::store::StoreError;
use crate::store::commit::Committer;
use crate::tickets::dedup::Digests;
use crate::tickets::model::{Earlier, Outcome};
use crate::tickets::trace::{Automatic, Classification, DecisionTrace};
use crate::tickets::{
    CommitRequest, Item, Journaling, MailboxRef, OpOutcome, Operation, ReplayOutcome, ReplayRequest,
};
use route::Router;

/// One received message, before parsing.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub origin: Origin,
    pub raw: Bytes,
    /// The SMTP reverse-path ("" for `<>`); None when not known (pulled mail
    /// without a Return-Path).
    pub return_path: Option<String>,
    /// Target mailboxes by name, duplicates allowed (they are merged).
    pub mailboxes: Vec<String>,
    /// Upstream identity of pulled mail (see [`CommitRequest::upstream_key`]).
    pub upstream_key: Option<String>,
}

/// What an oversize message left behind: enough to tell the operator.
#[derive(Debug, Clone)]
pub struct OversizeNotice {
    pub origin: Origin,
    pub size: u64,
    /// The header block as received (bounded), parsed for Message-ID/From/Subject.
    pub head: Vec<u8>,
    pub mailboxes: Vec<String>,
    pub limit: usize,
    pub upstream_key: Option<String>,
}

#[derive(Clone)]
pub struct Ingestor {
    committer: Committer,
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    rules: Arc<rules::MailRules>,
}

impl Ingestor {
    pub fn new(committer: Committer, router: Arc<Router>, metrics: Arc<Metrics>) -> Ingestor {
        Ingestor {
            committer,
            router,
            metrics,
            rules: Arc::default(),
        }
    }

    /// The mail rules run on every readable message (none by default).
    pub fn with_rules(mut self, rules: rules::MailRules) -> Ingestor {
        self.rules = Arc::new(rules);
        self
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Parses, classifies and durably commits one message for its mailboxes.
    pub async fn ingest(&self, inbound: Inbound) -> Result<Vec<Outcome>, StoreError> {
        let journal = match self.committer.journals() {
            true => journal_entry::encode(&inbound).map_or(Journaling::Off, Journaling::Entry),
            false => Journaling::Off,
        };
        self.ingest_as(inbound, journal).await
    }

    async fn ingest_as(
        &self,
        inbound: Inbound,
        journal: Journaling,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mailboxes = self.resolve(&inbound.mailboxes);
        let mut request = self.prepare(inbound, &mailboxes, false).await;
        request.journal = journal;
        self.commit_and_report(request, &mailboxes).await
    }

    /// Runs a rejection's kept bytes through the pipeline again, as
    /// `inbound` (its original origin and mailbox); `as_ticket` sets the
    /// classification aside. The rejection is replayed once: a second
    /// replay answers the first result (decided in the commit).
    pub async fn replay(
        &self,
        rejection_id: u64,
        inbound: Inbound,
        as_ticket: bool,
        at: String,
    ) -> Result<ReplayOutcome, StoreError> {
        let mailboxes = self.resolve(&inbound.mailboxes);
        if mailboxes.is_empty() {
            return Ok(ReplayOutcome::NoMailbox);
        }
        let mut request = self.prepare(inbound, &mailboxes, as_ticket).await;
        request.upstream_key = None;
        let (source, origin) = (request.origin.source.clone(), request.origin.clone());
        let op = Operation::Replay(ReplayRequest {
            rejection_id,
            request,
            as_ticket,
            at,
        });
        let outcome = match self.committer.apply(op).await? {
            OpOutcome::Replayed(o) => o,
            other => return Err(StoreError::Failed(format!("unexpected outcome {other:?}"))),
        };
        if let ReplayOutcome::Done {
            first: Some(done), ..
        } = &outcome
        {
            tracing::info!(rejection = rejection_id, "rejection replayed");
            self.report(&source, &mailboxes[0].name, &origin, done);
        }
        Ok(outcome)
    }

    /// What to commit for one message: parse, classify, rules, trace.
    async fn prepare(
        &self,
        inbound: Inbound,
        mailboxes: &[MailboxRef],
        as_ticket: bool,
    ) -> CommitRequest {
        let raw = inbound.raw.clone();
        // Parsing a large message takes a while: keep it off the I/O threads.
        // A panic inside the parser becomes an "unparseable" record, not a crash.
        let parsed = offload::run(raw.len(), move || parse::parse(&raw))
            .await
            .unwrap_or_else(|_| {
                Err(parse::Unusable {
                    reason: RejectReason::Unparseable,
                    detail: "the MIME parser failed on this message".into(),
                    message_id: None,
                    from: None,
                    subject: None,
                })
            });
        let routing = |m: &str| {
            self.router
                .routing(m, &inbound.origin.envelope.rcpt_to, &inbound.origin.source)
        };
        let items: Vec<Item> = match parsed {
            Ok(mail) => {
                let router = &self.router;
                let return_path = inbound.return_path.as_deref();
                let automatic =
                    classify::classify(&mail, return_path, &|a| router.is_own_address(a));
                let classification = Classification {
                    automatic: automatic.as_ref().map(|(reason, detail)| Automatic {
                        reason: *reason,
                        detail: detail.clone(),
                    }),
                    signals: classify::signals(&mail, return_path),
                    overridden: as_ticket && automatic.is_some(),
                };
                let trace_for = |m: &str, rules: Vec<crate::rules::RuleTrace>| DecisionTrace {
                    routing: Some(routing(m)),
                    classification: Some(classification.clone()),
                    rules,
                    ..DecisionTrace::default()
                };
                // A replay "as ticket": written by a person, whatever it looks like.
                let automatic = if as_ticket { None } else { automatic };
                match automatic {
                    // Our own mail coming back never joins a ticket: that
                    // is how notification loops start.
                    Some((RejectReason::Loop, detail)) => mailboxes
                        .iter()
                        .map(|m| Item::Reject {
                            mailbox: Some(m.name.clone()),
                            reason: RejectReason::Loop,
                            detail: detail.clone(),
                            message_id: mail.message_id.clone(),
                            from: Some(mail.from.address.clone()),
                            subject: Some(mail.subject.clone()),
                            keep_raw: true,
                            trace: trace_for(&m.name, Vec::new()),
                        })
                        .collect(),
                    automatic => {
                        let internal = self.rules.is_internal(&mail.from.address);
                        let counterpart = internal
                            .then(|| self.rules.counterpart(&mail, &|a| router.is_own_address(a)))
                            .flatten();
                        let mail = Arc::new(mail);
                        mailboxes
                            .iter()
                            .map(|m| {
                                let evaluation = self.rules.any_for(&m.name).then(|| {
                                    self.rules
                                        .evaluate(&m.name, &mail, &inbound.raw, return_path)
                                });
                                let (rules, trace) = match evaluation {
                                    Some(e) => (Some(Arc::new(e.decision)), e.trace),
                                    None => (None, Vec::new()),
                                };
                                Item::Message {
                                    mailbox: m.clone(),
                                    rules,
                                    mail: mail.clone(),
                                    automatic: automatic.clone(),
                                    trace: trace_for(&m.name, trace),
                                    internal,
                                    counterpart: counterpart.clone(),
                                }
                            })
                            .collect()
                    }
                }
            }
            Err(mut unusable) => {
                // A bounce often has no usable From; its null sender says what it is.
                if unusable.reason == RejectReason::NoSender
                    && inbound.return_path.as_deref() == Some("")
                {
                    unusable.reason = RejectReason::Bounce;
                    unusable.detail =
                        format!("empty return path (MAIL FROM:<>) and {}", unusable.detail);
                }
                mailboxes
                    .iter()
                    .map(|m| Item::Reject {
                        mailbox: Some(m.name.clone()),
                        reason: unusable.reason,
                        detail: unusable.detail.clone(),
                        message_id: unusable.message_id.clone(),
                        from: unusable.from.clone(),
                        subject: unusable.subject.clone(),
                        keep_raw: true,
                        trace: DecisionTrace {
                            routing: Some(routing(&m.name)),
                            ..DecisionTrace::default()
                        },
                    })
                    .collect()
            }
        };
        let size = inbound.raw.len() as u64;
        // Dedup's hashes of a large message: here, not on the writer thread.
        let (raw, for_digests) = (inbound.raw.clone(), items.clone());
        let digests = offload::run(raw.len(), move || Digests::for_request(&raw, &for_digests))
            .await
            .unwrap_or_default();
        CommitRequest {
            origin: inbound.origin,
            raw: inbound.raw,
            size,
            upstream_key: inbound.upstream_key,
            items,
            digests,
            journal: Default::default(),
        }
    }

    /// Records a message refused for its size (metadata and headers only).
    pub async fn record_oversize(
        &self,
        notice: OversizeNotice,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mailboxes = self.resolve(&notice.mailboxes);
        let (message_id, from, subject) = header_summary(&notice.head);
        let detail = format!(
            "message of at least {} bytes exceeds the limit of {} bytes; not kept",
            notice.size, notice.limit
        );
        let targets: Vec<Option<String>> = if mailboxes.is_empty() {
            vec![None]
        } else {
            mailboxes.iter().map(|m| Some(m.name.clone())).collect()
        };
        let items = targets
            .into_iter()
            .map(|mailbox| Item::Reject {
                trace: DecisionTrace {
                    routing: mailbox.as_deref().map(|m| {
                        self.router.routing(
                            m,
                            &notice.origin.envelope.rcpt_to,
                            &notice.origin.source,
                        )
                    }),
                    ..DecisionTrace::default()
                },
                mailbox,
                reason: RejectReason::Oversize,
                detail: detail.clone(),
                message_id: message_id.clone(),
                from: from.clone(),
                subject: subject.clone(),
                keep_raw: false,
            })
            .collect();
        let request = CommitRequest {
            origin: notice.origin,
            raw: Bytes::new(),
            size: notice.size,
            upstream_key: notice.upstream_key,
            items,
            digests: Digests::default(),
            journal: Default::default(),
        };
        self.commit_and_report(request, &mailboxes).await
    }

    fn resolve(&self, names: &[String]) -> Vec<MailboxRef> {
        let mut out: Vec<MailboxRef> = Vec::new();
        for name in names {
            if out.iter().any(|m| &m.name == name) {
                continue;
            }
            match self.router.mailbox(name) {
                Some(m) => out.push(m.clone()),
                None => {
                    tracing::error!(mailbox = %name, "message routed to a mailbox that is not configured")
                }
            }
        }
        out
    }

    async fn commit_and_report(
        &self,
        request: CommitRequest,
        mailboxes: &[MailboxRef],
    ) -> Result<Vec<Outcome>, StoreError> {
        let source = request.origin.source.clone();
        let origin = request.origin.clone();
        let result = self.committer.commit(request).await;
        let outcomes = match result {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(source = %source, from = %Printable(&origin.envelope.mail_from), error = %e, "message not stored");
                return Err(e);
            }
        };
        for (i, outcome) in outcomes.iter().enumerate() {
            let mailbox = mailboxes.get(i).map(|m| m.name.as_str()).unwrap_or("");
            self.report(&source, mailbox, &origin, outcome);
        }
        Ok(outcomes)
    }

    fn report(&self, source: &str, mailbox: &str, origin: &Origin, outcome: &Outcome) {
        let m = &self.metrics;
        m.count_received(source, mailbox);
        match outcome {
            Outcome::Stored {
                message_id,
                ticket_number,
                new_ticket,
                id_collision,
                ..
            } => {
                if *id_collision {
                    m.id_collisions
                        .get_or_create(&SourceMailbox {
                            source: source.into(),
                            mailbox: mailbox.into(),
                        })
                        .inc();
                    tracing::warn!(
                        mailbox,
                        source,
                        "an earlier, different message of this mailbox has the same Message-ID; kept as its own message={message_id}"
                    );
                }
                if *new_ticket {
                    m.tickets_created
                        .get_or_create(&MailboxLabel {
                            mailbox: mailbox.into(),
                        })
                        .inc();
                }
                // `message` is tracing's name for the text itself, so the id goes there.
                tracing::info!(
                    ticket = ticket_number,
                    new_ticket,
                    mailbox,
                    source,
                    from = %Printable(&origin.envelope.mail_from),
                    client = %Printable(&origin.envelope.client),
                    "message accepted message={message_id}"
                );
            }
            Outcome::Rejected {
                rejection_id,
                reason,
            } => {
                m.count_rejected(source, reason.as_str());
                tracing::warn!(
                    rejection = rejection_id,
                    reason = %reason,
                    mailbox,
                    source,
                    from = %Printable(&origin.envelope.mail_from),
                    client = %Printable(&origin.envelope.client),
                    "message rejected"
                );
            }
            Outcome::Duplicate(earlier) => {
                m.duplicates
                    .get_or_create(&SourceMailbox {
                        source: source.into(),
                        mailbox: mailbox.into(),
                    })
                    .inc();
                tracing::info!(of = %describe_earlier(earlier), mailbox, source, "message duplicate, nothing stored");
            }
        }
    }
}

fn describe_earlier(earlier: &Earlier) -> String {
    match earlier {
        Earlier::Message(id) => format!("message {id}"),
        Earlier::Rejection(id) => format!("rejection {id}"),
    }
}

/// The text after "250 2.0.0 Ok: " telling the client what became of its message.
/// Message-ID, From address and Subject from a message's header block,
/// for a rejection record of mail that is not parsed whole.
fn header_summary(head: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let head = mail_parser::MessageParser::default().parse_headers(head);
    let field = |f: fn(&mail_parser::Message<'_>) -> Option<String>| head.as_ref().and_then(f);
    let message_id = field(parse::message_id);
    let from = field(|m| {
        m.from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string)
    });
    let subject = field(|m| m.subject().map(str::to_string));
    (message_id, from, subject)
}

pub fn describe_outcomes(outcomes: &[Outcome]) -> String {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Stored {
                message_id,
                ticket_number,
                ..
            } => format!("message {message_id} in ticket {ticket_number}"),
            Outcome::Rejected {
                rejection_id,
                reason,
            } => format!("recorded as rejection {rejection_id} ({reason})"),
            // Which record it repeats is the operator's business (the log
            // says it), not the sender's: naming it would confirm that a
            // Message-ID was seen.
            Outcome::Duplicate(_) => "duplicate, already recorded".to_string(),
        })
        .collect();
    parts.join("; ")
}
