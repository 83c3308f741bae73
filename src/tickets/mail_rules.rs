//! What the mail rules decided, applied inside the commit transaction: a
//! ticket-number link when nothing else threads the message, and the
//! queue, status, assignee and categories of the ticket it opens or joins,
//! each change recorded in the ticket's history as made by the rules.
//! (Rejection by rule is decided before threading, in `apply`.)

use super::model::{Change, Ticket, TicketEvent};
use super::txn::{Counter, TicketTxn};
use crate::mail::ParsedMail;
use crate::rules::{Decision, ticket_number};

/// Who the history names for a change a rule made.
pub const BY_RULES: &str = "mail rules";

/// The ticket of this mailbox whose number a link pattern finds in the
/// subject, else in the text body; the first pattern that finds one wins.
pub fn linked<T: TicketTxn>(
    txn: &T,
    mailbox: &str,
    mail: &ParsedMail,
    decision: &Decision,
) -> Result<Option<Ticket>, T::Error> {
    for (_, pattern) in &decision.links {
        let number =
            ticket_number(pattern, &mail.subject).or_else(|| ticket_number(pattern, &mail.text));
        if let Some(n) = number
            && let Some(id) = txn.ticket_by_number(n)?
            && let Some(ticket) = txn.ticket(id)?
            && ticket.mailbox == mailbox
        {
            return Ok(Some(ticket));
        }
    }
    Ok(None)
}

/// Sets what the rules decided on `ticket` (not yet written) and returns
/// the changes, for [`record`] once the ticket is stored.
pub fn set_fields(ticket: &mut Ticket, decision: &Decision) -> Vec<Change> {
    let mut changes = Vec::new();
    if let Some(q) = &decision.queue {
        ticket.queue = q.clone();
    }
    if let Some(s) = decision.status
        && s != ticket.status
    {
        changes.push(Change::Status {
            from: ticket.status,
            to: s,
        });
        ticket.status = s;
    }
    if let Some(a) = &decision.assignee
        && ticket.assignee.as_ref() != Some(a)
    {
        changes.push(Change::Assignee {
            from: ticket.assignee.clone(),
            to: Some(a.clone()),
        });
        ticket.assignee = Some(a.clone());
    }
    let added: Vec<String> = (decision.categories.iter())
        .filter(|c| !ticket.categories.contains(c))
        .cloned()
        .collect();
    if !added.is_empty() {
        ticket.categories.extend(added.iter().cloned());
        changes.push(Change::Categories {
            added,
            removed: Vec::new(),
        });
    }
    changes
}

/// Writes the changes into the ticket's history.
pub fn record<T: TicketTxn>(
    txn: &mut T,
    ticket_id: u64,
    changes: Vec<Change>,
    at: &str,
) -> Result<(), T::Error> {
    for change in changes {
        let seq = txn.counter(Counter::Event)?.unwrap_or(0) + 1;
        txn.set_counter(Counter::Event, seq)?;
        let event = TicketEvent {
            at: at.to_string(),
            by: Some(BY_RULES.to_string()),
            change,
        };
        txn.insert_event(ticket_id, seq, &event)?;
    }
    Ok(())
}
