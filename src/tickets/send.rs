//! What every message the ticket rules send has in common, agent reply or
//! notification: a record id and our Message-ID (with the reply token), the
//! thread it continues, and its outbox entry written in the caller's
//! transaction.

use super::model::{DeliveryState, Direction, OutboxEntry, StoredMessage, Ticket};
use super::request::{Sender, TicketSettings};
use super::txn::{Counter, TicketTxn};

/// How many of a ticket's newest messages are looked at to find the one
/// a message answers.
const THREAD_LOOKBACK: usize = 50;
/// References kept in an outgoing message (the oldest and the newest).
const MAX_REFERENCES: usize = 20;

pub(super) fn next<T: TicketTxn>(txn: &mut T, counter: Counter) -> Result<u64, T::Error> {
    let next = txn.counter(counter)?.unwrap_or(0) + 1;
    txn.set_counter(counter, next)?;
    Ok(next)
}

/// The domain part of an address, for our Message-IDs.
fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("localhost", |(_, d)| d)
}

/// "Re: subject", unless it already is one.
pub(super) fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.len() >= 3 && s.is_char_boundary(3) && s[..3].eq_ignore_ascii_case("re:") {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// A new message record id and the Message-ID it goes out with.
pub(super) fn new_message_id<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    sender: &Sender,
) -> Result<(u64, String), T::Error> {
    let id = next(txn, Counter::Message)?;
    let message_id = match &settings.token {
        Some(key) => key.message_id(ticket.id, id, domain(&sender.from.address)),
        None => format!("mailgate-{id}@{}", domain(&sender.from.address)),
    };
    Ok((id, message_id))
}

/// The newest message of the ticket that came from outside (else the
/// newest sent one): what an outgoing message continues.
fn thread_parent<T: TicketTxn>(
    txn: &T,
    ticket: &Ticket,
) -> Result<Option<StoredMessage>, T::Error> {
    let mut fallback = None;
    for id in txn.latest_message_ids(ticket.id, THREAD_LOOKBACK)? {
        let Some(m) = txn.message(id)? else { continue };
        match m.direction {
            Direction::Inbound => return Ok(Some(m)),
            Direction::Outbound if fallback.is_none() => fallback = Some(m),
            _ => {}
        }
    }
    Ok(fallback)
}

fn references_for(parent: &StoredMessage) -> Vec<String> {
    let mut refs = parent.references.clone();
    refs.push(parent.message_id.clone());
    if refs.len() > MAX_REFERENCES {
        // Keep the thread's root and the newest ones (RFC 5322 3.6.4).
        let tail = refs.split_off(refs.len() - (MAX_REFERENCES - 1));
        refs.truncate(1);
        refs.extend(tail);
    }
    refs
}

/// In-Reply-To and References for a new message on the ticket.
pub(super) fn thread<T: TicketTxn>(
    txn: &T,
    ticket: &Ticket,
) -> Result<(Option<String>, Vec<String>), T::Error> {
    let parent = thread_parent(txn, ticket)?;
    Ok((
        parent.as_ref().map(|p| p.message_id.clone()),
        parent.as_ref().map(references_for).unwrap_or_default(),
    ))
}

/// Indexes our Message-ID for threading and queues the stored message.
#[allow(clippy::too_many_arguments)]
pub(super) fn enqueue<T: TicketTxn>(
    txn: &mut T,
    ticket: &Ticket,
    sender: &Sender,
    id: u64,
    message_id: &str,
    rcpt_to: Vec<String>,
    size: u64,
    at: &str,
    at_ms: i64,
) -> Result<(), T::Error> {
    txn.index_message_id(&ticket.mailbox, message_id, id, ticket.id)?;
    txn.put_outbox(&queued(
        id,
        Some(ticket.id),
        &ticket.mailbox,
        &sender.from.address,
        rcpt_to,
        size,
        (at, at_ms),
    ))
}

/// A new outbox entry, due now.
pub(super) fn queued(
    id: u64,
    ticket_id: Option<u64>,
    mailbox: &str,
    mail_from: &str,
    rcpt_to: Vec<String>,
    size: u64,
    (at, at_ms): (&str, i64),
) -> OutboxEntry {
    OutboxEntry {
        id,
        ticket_id,
        mailbox: mailbox.to_string(),
        account: None,
        mail_from: mail_from.to_string(),
        rcpt_to,
        size,
        state: DeliveryState::Queued,
        attempts: 0,
        created_at: at.to_string(),
        created_ms: at_ms,
        next_attempt_ms: at_ms,
        last_error: None,
        relay_reply: None,
        finished_at: None,
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (0 when unreadable).
pub(super) fn ms_of(at: &str) -> i64 {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}
