//! The ticket rules: what committing one request means, decided inside the
//! backend's transaction so that two copies in one batch still make one
//! ticket message.
//!
//! - an upstream identity already recorded for the mailbox changes nothing;
//! - a message seen before (same dedup key and fingerprint) is a duplicate;
//! - a message threads onto the ticket of a Message-ID it references
//!   (In-Reply-To, then References newest first), else onto the ticket its
//!   subject tag names, within its mailbox; else it opens a ticket;
//! - automatic mail that threads nowhere becomes a rejection instead.

use super::dedup;
use super::model::{Direction, Earlier, Outcome, Rejection, StoredMessage, Ticket, TicketStatus};
use super::notify::{Cause, notify};
use super::request::{CommitRequest, Item, MailboxRef, OpOutcome, Operation, TicketSettings};
use super::trace::{DecisionTrace, Dedup, DedupOutcome, ThreadBy, Threading};
use super::txn::{Counter, DedupEntry, TicketTxn};
use crate::config::notify::Notification;
use crate::mail::{ParsedMail, RejectReason};

/// Applies one operation of a batch.
pub fn apply_op<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    op: &Operation,
) -> Result<OpOutcome, T::Error> {
    Ok(match op {
        Operation::Ingest(request) => OpOutcome::Ingested(apply(txn, settings, request)?),
        Operation::Reply(request) => {
            OpOutcome::Replied(super::reply::reply(txn, settings, request)?)
        }
        Operation::Delivery(update) => OpOutcome::Delivery(super::reply::delivery(txn, update)?),
        Operation::Update(update) => {
            OpOutcome::Updated(super::update::update(txn, settings, update)?)
        }
        Operation::Submit(request) => {
            OpOutcome::Submitted(super::submit::submit(txn, settings, request)?)
        }
        Operation::Replay(request) => {
            OpOutcome::Replayed(super::replay::replay(txn, settings, request)?)
        }
        Operation::PruneRejections { cutoff, max } => {
            OpOutcome::Pruned(super::replay::prune(txn, *cutoff, *max)?)
        }
    })
}

/// Records one request and returns one outcome per item, in order.
pub fn apply<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    request: &CommitRequest,
) -> Result<Vec<Outcome>, T::Error> {
    let Some(key) = &request.upstream_key else {
        return apply_items(txn, settings, request, None);
    };
    let scope = request.items.first().map(Item::mailbox).unwrap_or("");
    if let Some(earlier) = txn.upstream(scope, key)? {
        return Ok(vec![Outcome::Duplicate(earlier); request.items.len()]);
    }
    let outcomes = apply_items(txn, settings, request, None)?;
    if let Some(first) = outcomes.first() {
        txn.put_upstream(scope, key, first.earlier())?;
    }
    Ok(outcomes)
}

/// What a rejection record says beyond its origin.
pub(super) struct RejectFields<'a> {
    pub mailbox: Option<&'a str>,
    pub reason: RejectReason,
    pub detail: &'a str,
    pub message_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// How a new record relates to what the dedup table knows.
enum Seen {
    /// The same message again.
    Duplicate(Earlier),
    /// New: remember it under this key (the primary key, or the collision
    /// key when another message already holds the primary one).
    New { key: String, outcome: DedupOutcome },
}

fn seen<T: TicketTxn>(
    txn: &T,
    mailbox: &str,
    key: &str,
    fingerprint: &str,
    replay_of: Option<u64>,
) -> Result<Seen, T::Error> {
    let entry = match txn.dedup(mailbox, key)? {
        // The rejection being replayed holds the key: this record takes it.
        Some(e) if replay_of.is_some_and(|r| e.earlier == Earlier::Rejection(r)) => {
            return Ok(Seen::New {
                key: key.to_string(),
                outcome: DedupOutcome::Replayed,
            });
        }
        Some(e) => e,
        None => {
            return Ok(Seen::New {
                key: key.to_string(),
                outcome: DedupOutcome::New,
            });
        }
    };
    // Entries from before fingerprints existed compare equal, as they did.
    if entry
        .fingerprint
        .as_deref()
        .is_none_or(|f| f == fingerprint)
    {
        return Ok(Seen::Duplicate(entry.earlier));
    }
    let second = dedup::collision_key(key, fingerprint);
    Ok(match txn.dedup(mailbox, &second)? {
        Some(e) if replay_of.is_some_and(|r| e.earlier == Earlier::Rejection(r)) => Seen::New {
            key: second,
            outcome: DedupOutcome::Replayed,
        },
        Some(e) => Seen::Duplicate(e.earlier),
        None => Seen::New {
            key: second,
            outcome: DedupOutcome::IdCollision,
        },
    })
}

/// Records every item; `replay_of` is the rejection being replayed, whose
/// dedup entries the new records take over.
pub(super) fn apply_items<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    request: &CommitRequest,
    replay_of: Option<u64>,
) -> Result<Vec<Outcome>, T::Error> {
    let mut digests = request.digests.clone();
    digests.fill(&request.raw, &request.items);
    let mut outcomes = Vec::with_capacity(request.items.len());
    for item in &request.items {
        let outcome = match item {
            Item::Message {
                mailbox,
                mail,
                automatic,
                rules,
                internal,
                counterpart,
                trace,
            } => {
                let key = match &mail.message_id {
                    Some(id) => format!("id:{id}"),
                    None => digests.content.clone().unwrap_or_default(),
                };
                let fingerprint = digests.message.clone().unwrap_or_default();
                match seen(txn, &mailbox.name, &key, &fingerprint, replay_of)? {
                    Seen::Duplicate(e) => Outcome::Duplicate(e),
                    Seen::New { key, outcome } => {
                        let collision = outcome == DedupOutcome::IdCollision;
                        let trace = DecisionTrace {
                            dedup: Some(Dedup {
                                key: Some(key.clone()),
                                outcome,
                            }),
                            replay_of,
                            ..trace.clone()
                        };
                        let outcome = store_message(
                            txn,
                            settings,
                            request,
                            Incoming {
                                mailbox,
                                mail,
                                automatic: automatic.as_ref(),
                                rules: rules.as_deref(),
                                internal: *internal,
                                counterpart: counterpart.as_ref(),
                                trace,
                            },
                            collision,
                        )?;
                        remember(txn, &mailbox.name, &key, &outcome, fingerprint)?;
                        outcome
                    }
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
                trace,
            } => {
                // Oversize mail is not kept: without a Message-ID it cannot
                // be compared, so it is never deduplicated.
                let key = match (message_id, *keep_raw) {
                    (Some(id), _) => Some(format!("id:{id}")),
                    (None, true) => digests.content.clone(),
                    (None, false) => None,
                };
                let fingerprint = if *keep_raw {
                    digests.raw.clone().unwrap_or_default()
                } else {
                    dedup::fields_fingerprint(from.as_deref(), subject.as_deref(), request.size)
                };
                let scope = mailbox.as_deref().unwrap_or("");
                let seen = match &key {
                    Some(k) => seen(txn, scope, k, &fingerprint, replay_of)?,
                    None => Seen::New {
                        key: String::new(),
                        outcome: DedupOutcome::NotCompared,
                    },
                };
                match seen {
                    Seen::Duplicate(e) => Outcome::Duplicate(e),
                    Seen::New { key: k, outcome } => {
                        let trace = DecisionTrace {
                            dedup: Some(Dedup {
                                key: key.is_some().then(|| k.clone()),
                                outcome,
                            }),
                            replay_of,
                            ..trace.clone()
                        };
                        let fields = RejectFields {
                            mailbox: mailbox.as_deref(),
                            reason: *reason,
                            detail,
                            message_id: message_id.as_deref(),
                            from: from.as_deref(),
                            subject: subject.as_deref(),
                        };
                        let outcome = reject(txn, request, fields, *keep_raw, trace)?;
                        if key.is_some() {
                            remember(txn, scope, &k, &outcome, fingerprint)?;
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

fn remember<T: TicketTxn>(
    txn: &mut T,
    mailbox: &str,
    key: &str,
    outcome: &Outcome,
    fingerprint: String,
) -> Result<(), T::Error> {
    let entry = DedupEntry {
        earlier: outcome.earlier(),
        fingerprint: Some(fingerprint),
    };
    txn.put_dedup(mailbox, key, &entry)
}

pub(super) fn next<T: TicketTxn>(txn: &mut T, counter: Counter) -> Result<u64, T::Error> {
    let next = txn.counter(counter)?.unwrap_or(0) + 1;
    txn.set_counter(counter, next)?;
    Ok(next)
}

/// Ticket numbers start at `first_number` and never go back, even when the
/// configured start is lowered later.
pub(super) fn next_number<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
) -> Result<u64, T::Error> {
    let next = match txn.counter(Counter::Number)? {
        Some(n) => (n + 1).max(settings.first_number),
        None => settings.first_number,
    };
    txn.set_counter(Counter::Number, next)?;
    Ok(next)
}

/// The ticket this message continues: by In-Reply-To / References (the
/// newest reference first) naming a Message-ID stored in the mailbox or a
/// reply token this instance signed, then by a tag in the subject; same
/// mailbox only. A token that does not verify is just an unknown id.
pub fn find_ticket<T: TicketTxn>(
    txn: &T,
    settings: &TicketSettings,
    mailbox: &str,
    mail: &ParsedMail,
) -> Result<Option<Ticket>, T::Error> {
    Ok(find_thread(txn, settings, mailbox, mail)?.map(|(t, _)| t))
}

/// [`find_ticket`], and how it matched (for the decision trace).
pub fn find_thread<T: TicketTxn>(
    txn: &T,
    settings: &TicketSettings,
    mailbox: &str,
    mail: &ParsedMail,
) -> Result<Option<(Ticket, Threading)>, T::Error> {
    let found = |ticket: Ticket, by, value: String| {
        let threading = Threading {
            by,
            value: Some(value),
            ticket_id: Some(ticket.id),
        };
        Some((ticket, threading))
    };
    let referenced = (mail.in_reply_to.iter().map(|id| (ThreadBy::InReplyTo, id))).chain(
        mail.references
            .iter()
            .rev()
            .map(|id| (ThreadBy::References, id)),
    );
    for (by, id) in referenced {
        if let Some((_, ticket_id)) = txn.thread_lookup(mailbox, id)?
            && let Some(ticket) = txn.ticket(ticket_id)?
        {
            return Ok(found(ticket, by, id.clone()));
        }
        if let Some(token) = settings.token.as_ref().and_then(|k| k.verify(id))
            && let Some(ticket) = txn.ticket(token.ticket_id)?
            && ticket.mailbox == mailbox
        {
            return Ok(found(ticket, ThreadBy::ReplyToken, id.clone()));
        }
    }
    for number in settings.tag.find_all(&mail.subject) {
        if let Some(id) = txn.ticket_by_number(number)?
            && let Some(ticket) = txn.ticket(id)?
            && ticket.mailbox == mailbox
        {
            let tag = ticket.tag.clone();
            return Ok(found(ticket, ThreadBy::SubjectTag, tag));
        }
    }
    Ok(None)
}

/// One readable message for one mailbox, as classification and the mail
/// rules saw it.
struct Incoming<'a> {
    mailbox: &'a MailboxRef,
    mail: &'a ParsedMail,
    automatic: Option<&'a (RejectReason, String)>,
    rules: Option<&'a crate::rules::Decision>,
    /// From is in an internal domain (see [`super::internal`]).
    internal: bool,
    counterpart: Option<&'a crate::mail::Person>,
    trace: DecisionTrace,
}

fn store_message<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    request: &CommitRequest,
    incoming: Incoming<'_>,
    id_collision: bool,
) -> Result<Outcome, T::Error> {
    let Incoming {
        mailbox,
        mail,
        automatic,
        rules,
        internal,
        counterpart,
        mut trace,
    } = incoming;
    let now = &request.origin.received_at;
    // A rule that rejects wins over everything after classification.
    if let Some(rule) = rules.and_then(|d| d.rejected_by.as_deref()) {
        let detail = format!("rule:{rule}");
        let why = (RejectReason::Rule, detail.as_str());
        return reject_mail(txn, request, &mailbox.name, mail, why, trace);
    }
    if let Some(importer) = &mailbox.importer {
        let filing = super::importer::Filing {
            mailbox,
            importer,
            mail,
            automatic,
            rules,
            internal,
            counterpart,
            trace,
        };
        return super::importer::file(txn, settings, request, filing);
    }
    // A bounce of our own mail goes to that mail's ticket (and fails its
    // delivery) before any other rule; only reports and bounces count, not
    // a customer forwarding one of our messages as an attachment.
    let is_bounce = mail.markers.is_report
        || automatic.is_some_and(|(reason, _)| *reason == RejectReason::Bounce);
    let returned = if is_bounce {
        super::bounce::returned(txn, settings, &mailbox.name, mail, now)?
    } else {
        None
    };
    let existing = match returned {
        Some(t) => Some((t, ThreadBy::Bounce, None)),
        None => match (find_thread(txn, settings, &mailbox.name, mail)?, rules) {
            (Some((t, how)), _) => Some((t, how.by, how.value)),
            (None, Some(d)) => super::mail_rules::linked(txn, &mailbox.name, mail, d)?
                .map(|t| (t, ThreadBy::RuleLink, None)),
            (None, None) => None,
        },
    };
    trace.threading = Some(match &existing {
        Some((t, by, value)) => Threading {
            by: *by,
            value: value.clone().or_else(|| Some(t.tag.clone())),
            ticket_id: Some(t.id),
        },
        None => Threading::new_ticket(),
    });
    let existing = existing.map(|(t, _, _)| t);
    if existing.is_none()
        && let Some((reason, detail)) = automatic
    {
        return reject_mail(txn, request, &mailbox.name, mail, (*reason, detail), trace);
    }
    // Staff mail never opens a ticket with the staff member as requester.
    let requester = match (&existing, internal) {
        (None, true) => {
            match super::internal::unthreaded_requester(mailbox.internal_unthreaded, counterpart) {
                Ok(p) => p,
                Err(detail) => {
                    let why = (RejectReason::InternalUnthreaded, detail.as_str());
                    return reject_mail(txn, request, &mailbox.name, mail, why, trace);
                }
            }
        }
        _ => mail.from.clone(),
    };
    let new_ticket = existing.is_none();
    let mut ticket = match existing {
        Some(t) => t,
        None => {
            let place = (mailbox.name.as_str(), mailbox.queue.as_str());
            open_ticket(
                txn,
                settings,
                place,
                TicketStatus::Open,
                mail,
                requester,
                now,
            )?
        }
    };
    let filed = Filed {
        direction: if internal {
            Direction::Internal
        } else {
            Direction::Inbound
        },
        auto_submitted: automatic.is_some(),
        source: request.origin.source.clone(),
        trace,
    };
    let id = file_on(txn, request, mail, (&mut ticket, new_ticket), filed, rules)?;
    let at_ms = super::send::ms_of(now);
    let cause = |notification, by| Cause {
        notification,
        by,
        automatic: automatic.is_some(),
        internal,
        message: &mail.text,
        at: now,
        at_ms,
    };
    let sender = Some(mail.from.address.as_str());
    if new_ticket {
        notify(
            txn,
            settings,
            &ticket,
            &cause(Notification::Acknowledgement, None),
        )?;
        notify(
            txn,
            settings,
            &ticket,
            &cause(Notification::NewTicket, sender),
        )?;
    } else {
        notify(
            txn,
            settings,
            &ticket,
            &cause(Notification::NewMessage, sender),
        )?;
    }
    if let Some(d) = rules.filter(|d| !d.forwards.is_empty() || !d.answers.is_empty()) {
        let matched = super::rule_mail::Matched {
            mail,
            raw: &request.raw,
            automatic: automatic.is_some(),
            internal,
            at: now,
            at_ms,
        };
        super::rule_mail::send(txn, settings, &ticket, d, &matched)?;
    }
    Ok(Outcome::Stored {
        message_id: id,
        ticket_id: ticket.id,
        ticket_number: ticket.number,
        new_ticket,
        id_collision,
    })
}

/// A new ticket of `mailbox` (numbered and tagged), not yet written.
pub(super) fn open_ticket<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    (mailbox, queue): (&str, &str),
    status: TicketStatus,
    mail: &ParsedMail,
    requester: crate::mail::Person,
    now: &str,
) -> Result<Ticket, T::Error> {
    let id = next(txn, Counter::Ticket)?;
    let number = next_number(txn, settings)?;
    Ok(Ticket {
        id,
        number,
        tag: settings.tag.format(number),
        mailbox: mailbox.to_string(),
        queue: queue.to_string(),
        status,
        subject: mail.subject.clone(),
        requester,
        created_at: now.to_string(),
        updated_at: now.to_string(),
        message_count: 0,
        assignee: None,
        categories: Vec::new(),
    })
}

/// Stores `mail` on `ticket` (new or not), indexes its Message-ID for
/// threading in the ticket's mailbox, applies what the rules set and
/// writes the ticket with its history; returns the message's record id.
pub(super) fn file_on<T: TicketTxn>(
    txn: &mut T,
    request: &CommitRequest,
    mail: &ParsedMail,
    (ticket, new_ticket): (&mut Ticket, bool),
    filed: Filed,
    rules: Option<&crate::rules::Decision>,
) -> Result<u64, T::Error> {
    let now = &request.origin.received_at;
    let id = next(txn, Counter::Message)?;
    // Every message gets a Message-ID to thread on; ours when it had none.
    let message_id = mail
        .message_id
        .clone()
        .unwrap_or_else(|| format!("mailgate-{id}@local.invalid"));
    let stored = mail_record(request, mail, (id, ticket.id), &message_id, filed);
    txn.insert_message(&stored, request.raw.as_ref())?;
    // The first message with an id keeps it for threading: a later message
    // reusing the id (a collision) must not redirect replies to its ticket.
    if txn.thread_lookup(&ticket.mailbox, &message_id)?.is_none() {
        txn.index_message_id(&ticket.mailbox, &message_id, id, ticket.id)?;
    }
    ticket.message_count += 1;
    ticket.updated_at = now.clone();
    let changes = rules
        .map(|d| super::mail_rules::set_fields(ticket, d))
        .unwrap_or_default();
    if new_ticket {
        txn.insert_ticket(ticket)?;
    } else {
        txn.update_ticket(ticket)?;
    }
    super::mail_rules::record(txn, ticket.id, changes, now)?;
    Ok(id)
}

/// Rejects a readable message of `mailbox` (raw bytes kept).
pub(super) fn reject_mail<T: TicketTxn>(
    txn: &mut T,
    request: &CommitRequest,
    mailbox: &str,
    mail: &ParsedMail,
    (reason, detail): (RejectReason, &str),
    trace: DecisionTrace,
) -> Result<Outcome, T::Error> {
    let fields = RejectFields {
        mailbox: Some(mailbox),
        reason,
        detail,
        message_id: mail.message_id.as_deref(),
        from: Some(&mail.from.address),
        subject: Some(&mail.subject),
    };
    reject(txn, request, fields, true, trace)
}

/// How a parsed message is filed: which way it went, who says so.
pub(super) struct Filed {
    pub direction: Direction,
    pub auto_submitted: bool,
    pub source: String,
    pub trace: DecisionTrace,
}

/// The record of a parsed message on `ticket_id`: its fields, not its
/// body (derived from the raw bytes when read), and `message_id` (the
/// message's own, or ours when it had none).
pub(super) fn mail_record(
    request: &CommitRequest,
    mail: &ParsedMail,
    (id, ticket_id): (u64, u64),
    message_id: &str,
    filed: Filed,
) -> StoredMessage {
    StoredMessage {
        id,
        ticket_id,
        direction: filed.direction,
        message_id: message_id.to_string(),
        in_reply_to: mail.in_reply_to.clone(),
        references: mail.references.clone(),
        from: mail.from.clone(),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
        date: mail.date.clone(),
        subject: mail.subject.clone(),
        text: String::new(),
        html: None,
        attachments: mail.attachments.clone(),
        auto_submitted: filed.auto_submitted,
        source: filed.source,
        envelope: request.origin.envelope.clone(),
        received_at: request.origin.received_at.clone(),
        size: request.size,
        body: super::model::BodyStore::Raw,
        trace: filed.trace,
    }
}

/// Records a rejection, with the raw bytes when `keep_raw`.
pub(super) fn reject<T: TicketTxn>(
    txn: &mut T,
    request: &CommitRequest,
    fields: RejectFields<'_>,
    keep_raw: bool,
    trace: DecisionTrace,
) -> Result<Outcome, T::Error> {
    let rejection = Rejection {
        id: next(txn, Counter::Rejection)?,
        reason: fields.reason,
        detail: fields.detail.to_string(),
        source: request.origin.source.clone(),
        mailbox: fields.mailbox.map(str::to_string),
        envelope: request.origin.envelope.clone(),
        message_id: fields.message_id.map(str::to_string),
        from: fields.from.map(str::to_string),
        subject: fields.subject.map(str::to_string),
        size: request.size,
        received_at: request.origin.received_at.clone(),
        raw_available: keep_raw,
        trace,
        replayed: None,
    };
    txn.insert_rejection(&rejection, keep_raw.then_some(request.raw.as_ref()))?;
    Ok(Outcome::Rejected {
        rejection_id: rejection.id,
        reason: rejection.reason,
    })
}
