//! The sent side of the mail rules: forwards and preset answers. Like a
//! notification they are decided, composed and queued in the transaction
//! that files the message that matched (so a crash sends both or
//! neither), and held by the same protections: never our own addresses,
//! the per-recipient and per-ticket caps, `Auto-Submitted` on what we send
//! (so a forward that comes back is automatic mail and is not forwarded
//! again). Automatic mail is neither forwarded nor answered; internal mail
//! is not answered; a sender gets one answer of a rule per window. Each
//! message sent, and each one left out, is an event on the ticket.

use bytes::Bytes;

use super::model::{Change, RuleMailAction, SuppressReason, Ticket, TicketEvent};
use super::notify::{Automatic, queue, screen, suppressed, ticket_capped};
use super::outgoing::{Kind, Mailbox, Original};
use super::render::Rendered;
use super::request::TicketSettings;
use super::send::{next, reply_subject};
use super::txn::{Counter, TicketTxn};
use crate::mail::ParsedMail;
use crate::rules::{Answer, Decision, ForwardMode, ForwardTo};

/// The message the rules matched, as filed.
pub(super) struct Matched<'a> {
    pub mail: &'a ParsedMail,
    pub raw: &'a Bytes,
    pub automatic: bool,
    pub internal: bool,
    pub at: &'a str,
    pub at_ms: i64,
}

/// Sends what `decision` forwards and answers, or records why not.
pub(super) fn send<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    decision: &Decision,
    m: &Matched<'_>,
) -> Result<(), T::Error> {
    for (rule, to, mode) in &decision.forwards {
        forward(txn, settings, ticket, (rule, to, *mode), m)?;
    }
    for a in &decision.answers {
        answer(txn, settings, ticket, a, m)?;
    }
    Ok(())
}

fn forward<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    (rule, to, mode): (&str, &ForwardTo, ForwardMode),
    m: &Matched<'_>,
) -> Result<(), T::Error> {
    let Some(ns) = settings.notify.as_deref() else {
        return Ok(());
    };
    let what = format!("forward:{rule}");
    let what = (what.as_str(), m.at);
    if m.automatic {
        return suppressed(txn, ticket, what, None, SuppressReason::AutomaticMail);
    }
    let listed: Vec<String> = match to {
        ForwardTo::Addresses(a) => a.clone(),
        ForwardTo::Team => ns.team(&ticket.mailbox).to_vec(),
    };
    let mut addresses: Vec<String> = Vec::new();
    for a in listed {
        let a = a.trim().to_lowercase();
        // The sender has the message already.
        if !a.is_empty() && !addresses.contains(&a) && !a.eq_ignore_ascii_case(&m.mail.from.address)
        {
            addresses.push(a);
        }
    }
    if addresses.is_empty() {
        return suppressed(txn, ticket, what, None, SuppressReason::NoRecipient);
    }
    let mut recipients = Vec::new();
    for address in addresses {
        match screen(txn, ns, &address, m.at_ms)? {
            Some(r) => suppressed(txn, ticket, what, Some(&address), r)?,
            None => recipients.push(Mailbox {
                name: None,
                address,
            }),
        }
    }
    if recipients.is_empty() {
        return Ok(());
    }
    if ticket_capped(txn, ns, ticket, m.at_ms)? {
        return suppressed(txn, ticket, what, None, SuppressReason::TicketLimit);
    }
    let addresses: Vec<String> = recipients.iter().map(|r| r.address.clone()).collect();
    let automatic = Automatic {
        kind: Kind::Notification,
        to: recipients,
        subject: format!("Fwd: {}", m.mail.subject.trim()),
        rendered: Rendered {
            subject: None,
            text: forward_text(rule, ticket, m.mail, mode),
            html: None,
        },
        original: Some(Original {
            mode,
            raw: m.raw.clone(),
            attachments: match mode {
                ForwardMode::Inline => m.mail.attachments.clone(),
                ForwardMode::Attached => Vec::new(),
            },
        }),
        source: format!("rule:{rule}"),
    };
    match queue(txn, settings, ticket, automatic, (m.at, m.at_ms))? {
        Some(id) => sent(
            txn,
            ticket,
            (rule, RuleMailAction::Forward),
            addresses,
            id,
            m.at,
        ),
        None => suppressed(txn, ticket, what, None, SuppressReason::ComposeError),
    }
}

/// The forward's body: who forwarded it and why, then the original's
/// headers and (inline) its text.
fn forward_text(rule: &str, ticket: &Ticket, mail: &ParsedMail, mode: ForwardMode) -> String {
    let person = |p: &crate::mail::Person| match &p.name {
        Some(n) => format!("{n} <{}>", p.address),
        None => p.address.clone(),
    };
    let list = |l: &[crate::mail::Person]| l.iter().map(person).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "Forwarded by the mail rule \"{rule}\" (ticket {}).\n\n\
         ---------- Forwarded message ----------\n\
         From: {}\n",
        ticket.tag,
        person(&mail.from)
    );
    if let Some(d) = &mail.date {
        text.push_str(&format!("Date: {d}\n"));
    }
    text.push_str(&format!("Subject: {}\n", mail.subject));
    if !mail.to.is_empty() {
        text.push_str(&format!("To: {}\n", list(&mail.to)));
    }
    if !mail.cc.is_empty() {
        text.push_str(&format!("Cc: {}\n", list(&mail.cc)));
    }
    text.push('\n');
    match mode {
        ForwardMode::Inline => text.push_str(&mail.text),
        ForwardMode::Attached => text.push_str("The original message is attached.\n"),
    }
    text
}

/// The key under which a rule's answers to one sender are logged, next to
/// the per-recipient log (one answer per sender per window).
fn answered_key(rule: &str, address: &str) -> String {
    format!("answer\u{0}{rule}\u{0}{address}")
}

fn answer<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    a: &Answer,
    m: &Matched<'_>,
) -> Result<(), T::Error> {
    let Some(ns) = settings.notify.as_deref() else {
        return Ok(());
    };
    let what = format!("answer:{}", a.rule);
    let what = (what.as_str(), m.at);
    let address = m.mail.from.address.trim().to_lowercase();
    let recipient = Some(address.as_str());
    if m.automatic {
        return suppressed(txn, ticket, what, recipient, SuppressReason::AutomaticMail);
    }
    if m.internal {
        return suppressed(txn, ticket, what, recipient, SuppressReason::InternalMail);
    }
    if let Some(r) = screen(txn, ns, &address, m.at_ms)? {
        return suppressed(txn, ticket, what, recipient, r);
    }
    let key = answered_key(&a.rule, &address);
    let window = i64::try_from(a.window.as_millis()).unwrap_or(i64::MAX);
    if txn.notifications_to(&key, m.at_ms.saturating_sub(window))? > 0 {
        return suppressed(
            txn,
            ticket,
            what,
            recipient,
            SuppressReason::AlreadyAnswered,
        );
    }
    if ticket_capped(txn, ns, ticket, m.at_ms)? {
        return suppressed(txn, ticket, what, None, SuppressReason::TicketLimit);
    }
    let data = ns.template_data(ticket, &m.mail.text);
    let rendered = match ns.renderer.render_answer(&a.template, &data) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(ticket = ticket.number, rule = %a.rule, error = %e, "preset answer template failed");
            return suppressed(txn, ticket, what, None, SuppressReason::TemplateError);
        }
    };
    let automatic = Automatic {
        kind: Kind::Acknowledgement,
        to: vec![Mailbox {
            name: m.mail.from.name.clone(),
            address: address.clone(),
        }],
        subject: (rendered.subject.clone()).unwrap_or_else(|| reply_subject(&m.mail.subject)),
        rendered,
        original: None,
        source: format!("rule:{}", a.rule),
    };
    match queue(txn, settings, ticket, automatic, (m.at, m.at_ms))? {
        Some(id) => {
            txn.record_notification(&key, ticket.id, m.at_ms, id)?;
            let rule = (a.rule.as_str(), RuleMailAction::Answer);
            sent(txn, ticket, rule, vec![address], id, m.at)
        }
        None => suppressed(txn, ticket, what, None, SuppressReason::ComposeError),
    }
}

fn sent<T: TicketTxn>(
    txn: &mut T,
    ticket: &Ticket,
    (rule, action): (&str, RuleMailAction),
    to: Vec<String>,
    message: u64,
    at: &str,
) -> Result<(), T::Error> {
    tracing::info!(ticket = ticket.number, rule, action = ?action, recipients = to.len(), "mail rule queued a message");
    let seq = next(txn, Counter::Event)?;
    let event = TicketEvent {
        at: at.to_string(),
        by: Some(super::mail_rules::BY_RULES.to_string()),
        change: Change::RuleMail {
            rule: rule.to_string(),
            action,
            to,
            message,
        },
    };
    txn.insert_event(ticket.id, seq, &event)
}
