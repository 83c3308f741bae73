//! An agent's changes to a ticket (status, assignee, categories): applied
//! in the writer's transaction, each change recorded as an event (who,
//! what, when) that the ticket shows.

use super::model::{Change, TicketEvent, TicketStatus};
use super::notify::{Cause, notify};
use super::request::{TicketSettings, TicketUpdate, UpdateOutcome};
use super::txn::{Counter, TicketTxn};
use crate::config::notify::Notification;

/// An address as an assignee: `local@domain`, no spaces or controls.
fn valid_assignee(a: &str) -> bool {
    a.len() <= 254
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

pub fn update<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    u: &TicketUpdate,
) -> Result<UpdateOutcome, T::Error> {
    let Some(mut ticket) = txn.ticket(u.ticket_id)? else {
        return Ok(UpdateOutcome::NoTicket);
    };
    let mut changes = Vec::new();
    if let Some(status) = u.status
        && status != ticket.status
    {
        changes.push(Change::Status {
            from: ticket.status,
            to: status,
        });
        ticket.status = status;
    }
    if let Some(assignee) = &u.assignee {
        let assignee = assignee
            .as_deref()
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty());
        if let Some(a) = &assignee
            && !valid_assignee(a)
        {
            return Ok(UpdateOutcome::Invalid(
                "assignee must be an address (local@domain)".into(),
            ));
        }
        if assignee != ticket.assignee {
            changes.push(Change::Assignee {
                from: ticket.assignee.clone(),
                to: assignee.clone(),
            });
            ticket.assignee = assignee;
        }
    }
    if let Some(categories) = &u.categories {
        let mut wanted: Vec<String> = Vec::new();
        for c in categories {
            let c = c.trim();
            if !settings.categories.iter().any(|k| k == c) {
                return Ok(UpdateOutcome::Invalid(format!(
                    "unknown category {c:?} (configured: {})",
                    settings.categories.join(", ")
                )));
            }
            if !wanted.iter().any(|w| w == c) {
                wanted.push(c.to_string());
            }
        }
        wanted.sort();
        let added: Vec<String> = wanted
            .iter()
            .filter(|c| !ticket.categories.contains(c))
            .cloned()
            .collect();
        let removed: Vec<String> = ticket
            .categories
            .iter()
            .filter(|c| !wanted.contains(c))
            .cloned()
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            changes.push(Change::Categories { added, removed });
            ticket.categories = wanted;
        }
    }
    let mut events = Vec::with_capacity(changes.len());
    for change in changes {
        let event = TicketEvent {
            at: u.at.clone(),
            by: u.by.clone(),
            change,
        };
        let seq = txn.counter(Counter::Event)?.unwrap_or(0) + 1;
        txn.set_counter(Counter::Event, seq)?;
        txn.insert_event(ticket.id, seq, &event)?;
        events.push(event);
    }
    if !events.is_empty() {
        ticket.updated_at = u.at.clone();
        txn.update_ticket(&ticket)?;
    }
    let at_ms = super::send::ms_of(&u.at);
    for event in &events {
        let notification = match &event.change {
            Change::Assignee { to: Some(_), .. } => Notification::AssigneeChanged,
            Change::Status { to, .. } => match to {
                TicketStatus::Done => Notification::TicketDone,
                TicketStatus::Rejected => Notification::TicketRejected,
                TicketStatus::Accepted => Notification::TicketAccepted,
                _ => continue,
            },
            _ => continue,
        };
        let cause = Cause {
            notification,
            by: u.by.as_deref(),
            automatic: false,
            internal: false,
            message: "",
            at: &u.at,
            at_ms,
        };
        notify(txn, settings, &ticket, &cause)?;
    }
    Ok(UpdateOutcome::Updated {
        ticket: Box::new(ticket),
        events,
    })
}
