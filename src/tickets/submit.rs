//! Mail the organisation's own systems submit through the relay endpoint:
//! what it becomes in the writer's transaction.
//!
//! The message is relayed as submitted, with the header policy every
//! outgoing message gets: our `Received` trace field on top, `Bcc` taken out, the mailbox's Reply-To per the
//! account's policy, a Message-ID and Date when missing (RFC 6409 section
//! 8), `X-Mailer` when missing, and our `X-Mailgate-*` fields (any the
//! submitter wrote are dropped: they are ours to set). Every other byte is
//! the submitter's.
//!
//! A submission that names a ticket of its mailbox (In-Reply-To or
//! References, a reply token we signed, or the subject tag) is stored on
//! that ticket as an outbound message; any other is kept in the outbound
//! log only. Either way it is queued in the same transaction, so the 250
//! the client gets means it is both recorded and due for delivery.

use std::sync::Arc;

use bytes::Bytes;

use super::TicketSettings;
use super::apply::find_ticket;
use super::model::{Direction, StoredMessage};
use super::send::{next, queued};
use super::txn::{Counter, TicketTxn};
use crate::mail::header_edit::Headers;
use crate::mail::{EnvelopeInfo, ParsedMail, ReplyToPolicy};

/// One submitted message, authenticated and checked by the listener.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The submission account's user name.
    pub account: String,
    /// The mailbox the envelope sender belongs to: its send limits apply
    /// and its tickets are the ones a reply can continue.
    pub mailbox: String,
    pub reply_to: ReplyToPolicy,
    pub envelope: EnvelopeInfo,
    /// Our trace field's value (RFC 5321 4.4), written on top.
    pub received: String,
    /// The bytes as submitted (dot-unstuffed, line ends as the session left them).
    pub raw: Bytes,
    pub mail: Arc<ParsedMail>,
    /// RFC 3339 and milliseconds since the epoch: the same instant.
    pub at: String,
    pub at_ms: i64,
}

/// What a submission became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Queued as outbound message `id`; on a ticket when it continues one.
    Queued { id: u64, ticket: Option<(u64, u64)> },
}

/// The `X-Mailer` we add when the submitter set none.
const MAILER: &str = concat!("mailgate/", env!("CARGO_PKG_VERSION"));

fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("localhost", |(_, d)| d)
}

fn rfc2822(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

/// Stores and queues one submission.
pub fn submit<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    r: &SubmitRequest,
) -> Result<SubmitOutcome, T::Error> {
    let ticket = find_ticket(txn, settings, &r.mailbox, &r.mail)?;
    let id = next(txn, Counter::Message)?;
    let reply_to = settings.senders.get(&r.mailbox).map(|s| s.reply_to.clone());

    // One read of the header block serves every check and the edit (this
    // runs on the store writer thread).
    let headers = Headers::parse(&r.raw);
    let mut remove: Vec<&str> = vec![
        "Bcc",
        "X-Mailgate-Account",
        "X-Mailgate-Message-Id",
        "X-Mailgate-Ticket",
    ];
    let mut prepend: Vec<(&str, String)> = vec![("Received", r.received.clone())];
    prepend.push(("X-Mailgate-Account", r.account.clone()));
    prepend.push(("X-Mailgate-Message-Id", id.to_string()));
    if let Some(t) = &ticket {
        prepend.push(("X-Mailgate-Ticket", t.tag.clone()));
    }
    if !headers.has("X-Mailer") {
        prepend.push(("X-Mailer", MAILER.into()));
    }
    if let Some(address) = reply_to {
        match r.reply_to {
            ReplyToPolicy::SetWhenAbsent if !headers.has("Reply-To") => {
                prepend.push(("Reply-To", address));
            }
            ReplyToPolicy::Force => {
                remove.push("Reply-To");
                prepend.push(("Reply-To", address));
            }
            _ => {}
        }
    }
    let message_id = match &r.mail.message_id {
        Some(m) => m.clone(),
        None => {
            let at = domain(&r.envelope.mail_from);
            let m = match (&settings.token, &ticket) {
                (Some(key), Some(t)) => key.message_id(t.id, id, at),
                _ => format!("mailgate-{id}@{at}"),
            };
            prepend.push(("Message-ID", format!("<{m}>")));
            m
        }
    };
    if !headers.has("Date") {
        prepend.push(("Date", rfc2822(r.at_ms)));
    }
    let raw = headers.edit(&remove, &prepend);

    let mail = &r.mail;
    let stored = StoredMessage {
        id,
        ticket_id: ticket.as_ref().map_or(0, |t| t.id),
        direction: Direction::Outbound,
        message_id: message_id.clone(),
        in_reply_to: mail.in_reply_to.clone(),
        references: mail.references.clone(),
        from: mail.from.clone(),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
        date: mail.date.clone().or_else(|| Some(r.at.clone())),
        subject: mail.subject.clone(),
        text: mail.text.clone(),
        html: mail.html.clone(),
        attachments: mail.attachments.clone(),
        auto_submitted: mail.markers.auto_submitted.is_some(),
        source: "submission".into(),
        envelope: r.envelope.clone(),
        received_at: r.at.clone(),
        size: raw.len() as u64,
        body: super::model::BodyStore::Record,
        trace: Default::default(),
    };
    let mut entry = queued(
        id,
        ticket.as_ref().map(|t| t.id),
        &r.mailbox,
        &r.envelope.mail_from,
        r.envelope.rcpt_to.clone(),
        raw.len() as u64,
        (&r.at, r.at_ms),
    );
    entry.account = Some(r.account.clone());
    // The attachments' bytes stay in the raw message; the API decodes them.
    match ticket {
        Some(mut t) => {
            txn.insert_message(&stored, &raw)?;
            // Answers to it thread onto the ticket (the first holder of an
            // id keeps it, as for every stored message).
            if txn.thread_lookup(&r.mailbox, &message_id)?.is_none() {
                txn.index_message_id(&r.mailbox, &message_id, id, t.id)?;
            }
            t.message_count += 1;
            t.updated_at = r.at.clone();
            txn.update_ticket(&t)?;
            txn.put_outbox(&entry)?;
            Ok(SubmitOutcome::Queued {
                id,
                ticket: Some((t.id, t.number)),
            })
        }
        None => {
            txn.insert_unlisted(&stored, &raw)?;
            txn.put_outbox(&entry)?;
            Ok(SubmitOutcome::Queued { id, ticket: None })
        }
    }
}
