//! Agent replies, internal notes and delivery results: what they do to a
//! ticket and its outbox, decided in the writer's transaction like ingest.
//!
//! A reply is composed (header policy, reply token) and queued in the same
//! transaction that stores it on the ticket, so it is either both on the
//! ticket and in the outbox, or neither.

use super::model::{DeliveryState, Direction, StoredMessage};
use super::notify::{Cause, notify};
use super::outgoing::{Kind, Mailbox, Outgoing, tagged_subject};
use super::request::{
    Attempt, DeliveryOutcome, DeliveryUpdate, ReplyOutcome, ReplyRequest, TicketSettings,
};
use super::send::{enqueue, new_message_id, reply_subject, thread};
use super::txn::TicketTxn;
use crate::config::notify::Notification;
use crate::mail::{AttachmentMeta, EnvelopeInfo, Person};

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
    let (in_reply_to, references) = thread(txn, &ticket)?;
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
    let (id, message_id) = new_message_id(txn, settings, &ticket, sender)?;
    let outgoing = Outgoing {
        kind: Kind::Reply,
        from: sender.from.clone(),
        reply_to: sender.reply_to.clone(),
        to: to.clone(),
        cc: cc.clone(),
        subject: reply_subject(&ticket.subject),
        tag: ticket.tag.clone(),
        message_id: message_id.clone(),
        in_reply_to,
        references,
        ticket_number: ticket.number,
        record_id: id,
        date: r.at_ms.div_euclid(1000),
        text: r.text.clone(),
        html: r.html.clone(),
        attachments: r.attachments.clone(),
        original: None,
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
        body: super::model::BodyStore::Record,
        trace: Default::default(),
    };
    txn.insert_message(&stored, &raw)?;
    for (i, a) in r.attachments.iter().enumerate() {
        txn.insert_attachment(id, i as u32, &a.bytes)?;
    }
    if !r.internal {
        let size = raw.len() as u64;
        enqueue(
            txn,
            &ticket,
            sender,
            id,
            &message_id,
            rcpt_to,
            size,
            &r.at,
            r.at_ms,
        )?;
    }
    ticket.message_count += 1;
    ticket.updated_at = r.at.clone();
    txn.update_ticket(&ticket)?;
    if r.internal {
        let cause = Cause {
            notification: Notification::InternalNote,
            by: r.author.as_deref(),
            automatic: false,
            internal: false,
            message: &r.text,
            at: &r.at,
            at_ms: r.at_ms,
        };
        notify(txn, settings, &ticket, &cause)?;
    }
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
