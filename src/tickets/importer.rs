//! The BCC importer (`role = "importer"`): staff put its address in BCC of
//! mail they send a customer, and the gateway files that mail on the
//! customer's ticket in `import_into` as an outbound message. Nothing is
//! sent and nobody is notified: the mail already went out.
//!
//! Matching, first hit wins, always within the `import_into` mailbox: the
//! subject tag, a signed reply token, In-Reply-To / References (see
//! [`super::apply::find_ticket`]); the importer's `ticket_number_pattern`
//! in the subject, then the text; a mail rule's link; the recipient (the
//! first To, then Cc, address outside the internal domains) being the
//! requester of an open ticket; else a new ticket for that recipient with
//! status `done`. Only staff (From in `server.internal_domains`) may use it.
//!
//! The requester match reads at most [`REQUESTER_SCAN`] of the mailbox's
//! newest tickets (there is no requester index yet): an open ticket older
//! than that is not found and the mail opens a new, done ticket instead.

use super::apply::{Filed, file_on, find_ticket, open_ticket, reject_mail};
use super::model::{Direction, Outcome, Ticket, TicketStatus};
use super::request::{CommitRequest, MailboxRef, TicketSettings};
use super::txn::TicketTxn;
use crate::mail::{ParsedMail, Person, RejectReason};
use crate::rules::{Decision, ticket_number};

/// The `source` of every message the importer files.
pub const SOURCE: &str = "bcc_import";
/// How many of a mailbox's newest tickets the requester match reads.
pub const REQUESTER_SCAN: usize = 2_000;

/// Where an importer files mail, fixed at start.
#[derive(Debug, Clone)]
pub struct Importer {
    /// The `import_into` mailbox.
    pub into: String,
    /// Its queue, for the tickets the importer opens.
    pub queue: String,
    pub ticket_number_pattern: Option<regex::Regex>,
}

/// One message for an importer, as ingest saw it.
pub struct Filing<'a> {
    pub mailbox: &'a MailboxRef,
    pub importer: &'a Importer,
    pub mail: &'a ParsedMail,
    pub automatic: Option<&'a (RejectReason, String)>,
    pub rules: Option<&'a Decision>,
    pub internal: bool,
    pub counterpart: Option<&'a Person>,
    /// What ingest and the commit know of the decision so far.
    pub trace: super::trace::DecisionTrace,
}

/// Files one message (or records why not).
pub fn file<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    request: &CommitRequest,
    f: Filing<'_>,
) -> Result<Outcome, T::Error> {
    let mail = f.mail;
    let refuse = |txn: &mut T, reason, detail: &str| {
        let why = (reason, detail);
        reject_mail(txn, request, &f.mailbox.name, mail, why, f.trace.clone())
    };
    if !f.internal {
        let detail = format!(
            "the importer takes mail from the internal domains only, not from {}",
            mail.from.address
        );
        return refuse(txn, RejectReason::ImporterExternalSender, &detail);
    }
    // An out-of-office or a bounce is nothing a staff member sent.
    if let Some((reason, detail)) = f.automatic {
        return refuse(txn, *reason, detail);
    }
    let into = f.importer.into.as_str();
    let existing = match matched(txn, settings, &f)? {
        Some(t) => Some(t),
        None => match f.counterpart {
            Some(p) => open_for(txn, into, &p.address)?,
            None => None,
        },
    };
    let now = &request.origin.received_at;
    let new_ticket = existing.is_none();
    let mut ticket = match existing {
        Some(t) => t,
        None => {
            let Some(requester) = f.counterpart else {
                return refuse(
                    txn,
                    RejectReason::InternalUnthreaded,
                    "importer: continues no ticket and names no recipient outside the internal domains to open one for",
                );
            };
            // The CRM's "mail out, done": the answer has been given.
            let place = (into, f.importer.queue.as_str());
            let requester = requester.clone();
            open_ticket(
                txn,
                settings,
                place,
                TicketStatus::Done,
                mail,
                requester,
                now,
            )?
        }
    };
    let filed = Filed {
        direction: Direction::Outbound,
        auto_submitted: false,
        source: SOURCE.to_string(),
        trace: f.trace.clone(),
    };
    // Indexed in `into`: the customer's answer to this mail threads onto
    // the ticket.
    let id = file_on(
        txn,
        request,
        mail,
        (&mut ticket, new_ticket),
        filed,
        f.rules,
    )?;
    Ok(Outcome::Stored {
        message_id: id,
        ticket_id: ticket.id,
        ticket_number: ticket.number,
        new_ticket,
        id_collision: false,
    })
}

/// The ticket of `import_into` the mail names: tag, token, references,
/// the number pattern, a rule's link.
fn matched<T: TicketTxn>(
    txn: &T,
    settings: &TicketSettings,
    f: &Filing<'_>,
) -> Result<Option<Ticket>, T::Error> {
    let into = f.importer.into.as_str();
    let mail = f.mail;
    if let Some(t) = find_ticket(txn, settings, into, mail)? {
        return Ok(Some(t));
    }
    if let Some(pattern) = &f.importer.ticket_number_pattern {
        let number =
            ticket_number(pattern, &mail.subject).or_else(|| ticket_number(pattern, &mail.text));
        if let Some(n) = number
            && let Some(id) = txn.ticket_by_number(n)?
            && let Some(ticket) = txn.ticket(id)?
            && ticket.mailbox == into
        {
            return Ok(Some(ticket));
        }
    }
    match f.rules {
        Some(d) => super::mail_rules::linked(txn, into, mail, d),
        None => Ok(None),
    }
}

/// The newest open ticket (status neither done nor rejected) of `mailbox`
/// whose requester is `address`, among its newest [`REQUESTER_SCAN`].
fn open_for<T: TicketTxn>(
    txn: &T,
    mailbox: &str,
    address: &str,
) -> Result<Option<Ticket>, T::Error> {
    for id in txn.mailbox_ticket_ids(mailbox, REQUESTER_SCAN)? {
        let Some(t) = txn.ticket(id)? else { continue };
        if !matches!(t.status, TicketStatus::Done | TicketStatus::Rejected)
            && t.requester.address.eq_ignore_ascii_case(address)
        {
            return Ok(Some(t));
        }
    }
    Ok(None)
}
