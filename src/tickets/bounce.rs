//! Bounces of our own mail: a delivery report that carries back one of the
//! messages we sent (its Message-ID in a `message/rfc822` or
//! `text/rfc822-headers` part) threads onto that message's ticket and marks
//! that delivery `failed` with the report's diagnostic, even when the relay
//! had taken it (`sent`): the relay's 250 only meant "queued".

use super::model::{DeliveryState, Direction, Ticket};
use super::request::TicketSettings;
use super::txn::TicketTxn;
use crate::mail::ParsedMail;

/// The ticket of the first of our messages the report returns, after
/// marking every such delivery failed; None when it returns none of ours.
pub fn returned<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    mailbox: &str,
    mail: &ParsedMail,
    at: &str,
) -> Result<Option<Ticket>, T::Error> {
    let mut ticket = None;
    for id in &mail.markers.reported_ids {
        // Ours by the index (what we stored), or by a token we signed.
        let record = match txn.thread_lookup(mailbox, id)? {
            Some((message, _)) => Some(message),
            None => settings
                .token
                .as_ref()
                .and_then(|k| k.verify(id))
                .map(|t| t.message_id),
        };
        let Some(record) = record else { continue };
        let Some(message) = txn.message(record)? else {
            continue;
        };
        if message.direction != Direction::Outbound {
            continue;
        }
        let Some(found) = txn.ticket(message.ticket_id)? else {
            continue;
        };
        if found.mailbox != mailbox {
            continue;
        }
        if let Some(mut entry) = txn.outbox(record)?
            && entry.state != DeliveryState::Failed
        {
            entry.state = DeliveryState::Failed;
            entry.last_error = Some(match &mail.markers.reported_status {
                Some(status) => format!("bounced: {status}"),
                None => format!("bounced (report from {})", mail.from.address),
            });
            entry.finished_at = Some(at.to_string());
            txn.put_outbox(&entry)?;
        }
        if ticket.is_none() {
            ticket = Some(found);
        }
    }
    Ok(ticket)
}
