//! Agent replies, internal notes and delivery results: what they do to a
//! ticket and its outbox, decided in the writer's transaction like ingest.
//!
//! A reply is composed (header policy, reply token) and queued in the same
//! transaction that stores it on the ticket, so it is either both on the
//! ticket and in the outbox, or neither.

use super::model::{DeliveryState, Direction, OutboxEntry, StoredMessage, Ticket};
use super::outgoing::{Kind, Mailbox, Outgoing, tagged_subject};
use super::request::{
    Attempt, DeliveryOutcome, DeliveryUpdate, ReplyOutcome, ReplyRequest, TicketSettings,
};
use super::txn::{Counter, TicketTxn};
use crate::mail::{AttachmentMeta, EnvelopeInfo, Person};

/// How many of a ticket's newest messages are looked at to find the one
/// a reply answers.
const THREAD_LOOKBACK: usize = 50;
/// References kept in an outgoing message (the oldest and the newest).
const MAX_REFERENCES: usize = 20;

fn next<T: TicketTxn>(txn: &mut T, counter: Counter) -> Result<u64, T::Error> {
    let next = txn.counter(counter)?.unwrap_or(0) + 1;
    txn.set_counter(counter, next)?;
    Ok(next)
}

/// The domain part of an address, for our Message-IDs.
fn domain(address: &str) -> &str {
    address.rsplit_once('@').map_or("localhost", |(_, d)| d)
}

/// "Re: subject", unless it already is one.
fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// The newest message of the ticket that came from outside (else the
/// newest sent one): what a reply continues.
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

/// Stores an agent's reply on its ticket and queues it, or stores a note.
pub fn reply<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    r: &ReplyRequest,
) -> Result<ReplyOutcome, T::Error> {
    let Some(mut ticket) = txn.ticket(r.ticket_id)? else {
        return Ok(ReplyOutcome::NoTicket);
    };
    let Some(sender) = settings.senders.get(&ticket.mailbox) else {
        return Ok(ReplyOutcome::Invalid(format!(
            "mailbox {:?} has no address to send from (and there is no default mailbox with one)",
            ticket.mailbox
        )));
    };
    let parent = thread_parent(txn, &ticket)?;
    let to = vec![Mailbox {
        name: ticket.requester.name.clone(),
        address: ticket.requester.address.clone(),
    }];
    let cc: Vec<Mailbox> =
        r.cc.iter()
            .map(|a| Mailbox {
                name: None,
                address: a.trim().to_string(),
            })
            .collect();
    let id = next(txn, Counter::Message)?;
    let message_id = match &settings.token {
        Some(key) => key.message_id(ticket.id, id, domain(&sender.from.address)),
        None => format!("mailgate-{id}@{}", domain(&sender.from.address)),
    };
    let outgoing = Outgoing {
        kind: Kind::Reply,
        from: sender.from.clone(),
        reply_to: sender.reply_to.clone(),
        to: to.clone(),
        cc: cc.clone(),
        subject: reply_subject(&ticket.subject),
        tag: ticket.tag.clone(),
        message_id: message_id.clone(),
        in_reply_to: parent.as_ref().map(|p| p.message_id.clone()),
        references: parent.as_ref().map(references_for).unwrap_or_default(),
        ticket_number: ticket.number,
        record_id: id,
        date: r.at_ms.div_euclid(1000),
        text: r.text.clone(),
        html: r.html.clone(),
        attachments: r.attachments.clone(),
    };
    let raw = if r.internal {
        Vec::new()
    } else {
        let Some(composer) = &settings.composer else {
            return Ok(ReplyOutcome::Invalid("outbound mail is not set up".into()));
        };
        match composer.compose(&outgoing) {
            Ok(raw) => raw,
            // Nothing was written yet but the counter: the transaction of
            // the batch still commits, the id stays unused.
            Err(e) => return Ok(ReplyOutcome::Invalid(e.to_string())),
        }
    };
    let person = |m: &Mailbox| Person {
        address: m.address.clone(),
        name: m.name.clone(),
    };
    let rcpt_to: Vec<String> = to
        .iter()
        .chain(cc.iter())
        .map(|m| m.address.clone())
        .collect();
    let stored = StoredMessage {
        id,
        ticket_id: ticket.id,
        direction: if r.internal {
            Direction::Note
        } else {
            Direction::Outbound
        },
        message_id: message_id.clone(),
        in_reply_to: outgoing.in_reply_to.iter().cloned().collect(),
        references: outgoing.references.clone(),
        from: match (&r.author, r.internal) {
            (Some(author), true) => Person {
                address: author.clone(),
                name: None,
            },
            _ => person(&sender.from),
        },
        to: if r.internal {
            vec![]
        } else {
            to.iter().map(person).collect()
        },
        cc: if r.internal {
            vec![]
        } else {
            cc.iter().map(person).collect()
        },
        date: Some(r.at.clone()),
        subject: tagged_subject(&outgoing.subject, &outgoing.tag),
        text: r.text.clone(),
        html: r.html.clone(),
        attachments: r
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| AttachmentMeta {
                index: i as u32,
                name: Some(a.name.clone()),
                content_type: a.content_type.clone(),
                size: a.bytes.len() as u64,
            })
            .collect(),
        auto_submitted: false,
        source: "api".into(),
        envelope: EnvelopeInfo {
            mail_from: if r.internal {
                String::new()
            } else {
                sender.from.address.clone()
            },
            rcpt_to: if r.internal { vec![] } else { rcpt_to.clone() },
            client: r.author.clone().unwrap_or_else(|| "api".into()),
            helo: String::new(),
        },
        received_at: r.at.clone(),
        size: raw.len() as u64,
    };
    txn.insert_message(&stored, &raw)?;
    for (i, a) in r.attachments.iter().enumerate() {
        txn.insert_attachment(id, i as u32, &a.bytes)?;
    }
    if !r.internal {
        txn.index_message_id(&ticket.mailbox, &message_id, id, ticket.id)?;
        txn.put_outbox(&OutboxEntry {
            id,
            ticket_id: ticket.id,
            mailbox: ticket.mailbox.clone(),
            mail_from: sender.from.address.clone(),
            rcpt_to,
            size: raw.len() as u64,
            state: DeliveryState::Queued,
            attempts: 0,
            created_at: r.at.clone(),
            created_ms: r.at_ms,
            next_attempt_ms: r.at_ms,
            last_error: None,
            relay_reply: None,
            finished_at: None,
        })?;
    }
    ticket.message_count += 1;
    ticket.updated_at = r.at.clone();
    txn.update_ticket(&ticket)?;
    Ok(ReplyOutcome::Stored {
        message_id: id,
        queued: !r.internal,
    })
}

/// Records what a delivery attempt did; a final entry is never changed.
pub fn delivery<T: TicketTxn>(
    txn: &mut T,
    u: &DeliveryUpdate,
) -> Result<DeliveryOutcome, T::Error> {
    let Some(mut entry) = txn.outbox(u.id)? else {
        return Ok(DeliveryOutcome::NotFound);
    };
    if u.attempt == Attempt::Retry {
        if entry.state == DeliveryState::Sent {
            return Ok(DeliveryOutcome::Unchanged);
        }
        entry.state = DeliveryState::Queued;
        entry.next_attempt_ms = u.at_ms;
        entry.finished_at = None;
        txn.put_outbox(&entry)?;
        return Ok(DeliveryOutcome::Updated(entry.state));
    }
    if !entry.state.pending() {
        return Ok(DeliveryOutcome::Unchanged);
    }
    match &u.attempt {
        Attempt::Sent { reply } => {
            entry.state = DeliveryState::Sent;
            entry.attempts += 1;
            entry.relay_reply = Some(reply.clone());
            entry.finished_at = Some(u.at.clone());
            txn.record_send(
                &entry.mailbox,
                u.at_ms,
                entry.id,
                entry.size,
                entry.rcpt_to.len() as u64,
            )?;
        }
        Attempt::Deferred {
            next_attempt_ms,
            error,
            rate_limited,
        } => {
            entry.state = DeliveryState::Deferred;
            if !rate_limited {
                entry.attempts += 1;
            }
            entry.next_attempt_ms = *next_attempt_ms;
            entry.last_error = Some(error.clone());
        }
        Attempt::Failed { error } => {
            entry.state = DeliveryState::Failed;
            entry.attempts += 1;
            entry.last_error = Some(error.clone());
            entry.finished_at = Some(u.at.clone());
        }
        Attempt::Retry => {}
    }
    txn.put_outbox(&entry)?;
    Ok(DeliveryOutcome::Updated(entry.state))
}
