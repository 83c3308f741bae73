//! Ticket notifications, decided and queued in the same transaction as the
//! event that causes them (transactional outbox): who gets one (defaults,
//! per-mailbox overrides, the fallback chain assignee -> the mailbox's team
//! -> the default mailbox's team -> `notify.fallback`), and what stops one
//! (automatic mail, our own addresses, unusable addresses, the caps per
//! recipient and per ticket, counted in the store so a restart keeps them).
//! Every suppression is an event on the ticket; an inactive notification
//! is simply not sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::model::{Change, Direction, StoredMessage, SuppressReason, Ticket, TicketEvent};
use super::outgoing::{Kind, Mailbox, Outgoing, tagged_subject, valid_address};
use super::render::{Renderer, TemplateData};
use super::request::TicketSettings;
use super::send::{enqueue, new_message_id, next, reply_subject, thread};
use super::txn::{Counter, TicketTxn};
use crate::config::notify::{Notification, NotifyConfig, NotifyOverride, Recipient};
use crate::mail::{EnvelopeInfo, Person};

/// The longest message text handed to a template.
const MAX_MESSAGE_CHARS: usize = 20_000;

/// One mailbox's notification settings.
#[derive(Debug, Clone, Default)]
pub struct MailboxNotify {
    pub team: Vec<String>,
    pub overrides: BTreeMap<Notification, NotifyOverride>,
}

/// Everything the rules need to notify, fixed at start.
#[derive(Clone)]
pub struct NotifySettings {
    pub config: NotifyConfig,
    pub mailboxes: BTreeMap<String, MailboxNotify>,
    pub default_mailbox: Option<String>,
    /// Every configured mailbox address (lower case): never notified.
    pub own_addresses: BTreeSet<String>,
    pub renderer: Arc<dyn Renderer>,
}

impl std::fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifySettings")
            .field("config", &self.config)
            .field("mailboxes", &self.mailboxes)
            .field("default_mailbox", &self.default_mailbox)
            .field("own_addresses", &self.own_addresses)
            .finish_non_exhaustive()
    }
}

/// What happened that may warrant a notification.
#[derive(Debug, Clone)]
pub struct Cause<'a> {
    pub notification: Notification,
    /// Who did it: they are not notified of their own doing.
    pub by: Option<&'a str>,
    /// It was automatic mail: nothing goes to the requester.
    pub automatic: bool,
    /// Staff mail (an internal domain) caused it: nothing goes to the
    /// requester, who did not write it (no acknowledgement either).
    pub internal: bool,
    /// The message or note that caused it.
    pub message: &'a str,
    pub at: &'a str,
    pub at_ms: i64,
}

impl NotifySettings {
    /// The team chain: the mailbox's team, else the default mailbox's,
    /// else `notify.fallback`.
    fn team(&self, mailbox: &str) -> &[String] {
        let own = self.mailboxes.get(mailbox).map(|m| m.team.as_slice());
        if let Some(team) = own.filter(|t| !t.is_empty()) {
            return team;
        }
        let default = (self.default_mailbox.as_deref())
            .and_then(|d| self.mailboxes.get(d))
            .map(|m| m.team.as_slice());
        match default.filter(|t| !t.is_empty()) {
            Some(team) => team,
            None => &self.config.fallback,
        }
    }

    /// The addresses it goes to, each marked when it is the requester.
    fn recipients(&self, ticket: &Ticket, specs: &[Recipient]) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        let mut add = |a: &str, requester: bool| {
            let a = a.trim().to_lowercase();
            if !a.is_empty() && !out.iter().any(|(o, _)| *o == a) {
                out.push((a, requester));
            }
        };
        for spec in specs {
            match spec {
                Recipient::Requester => add(&ticket.requester.address, true),
                Recipient::Assignee => match &ticket.assignee {
                    Some(a) => add(a, false),
                    None => self
                        .team(&ticket.mailbox)
                        .iter()
                        .for_each(|a| add(a, false)),
                },
                Recipient::Team => self
                    .team(&ticket.mailbox)
                    .iter()
                    .for_each(|a| add(a, false)),
                Recipient::Address(a) => add(a, false),
            }
        }
        out
    }

    fn link(&self, ticket: &Ticket) -> String {
        self.config.link.as_deref().map_or(String::new(), |l| {
            l.replace("{id}", &ticket.id.to_string())
                .replace("{number}", &ticket.number.to_string())
        })
    }
}

fn suppressed<T: TicketTxn>(
    txn: &mut T,
    ticket: &Ticket,
    cause: &Cause<'_>,
    recipient: Option<&str>,
    reason: SuppressReason,
) -> Result<(), T::Error> {
    tracing::info!(
        ticket = ticket.number,
        notification = cause.notification.as_str(),
        reason = ?reason,
        "notification suppressed"
    );
    let seq = next(txn, Counter::Event)?;
    let event = TicketEvent {
        at: cause.at.to_string(),
        by: None,
        change: Change::NotificationSuppressed {
            notification: cause.notification.as_str().to_string(),
            recipient: recipient.map(str::to_string),
            reason,
        },
    };
    txn.insert_event(ticket.id, seq, &event)
}

/// Sends `cause.notification` for `ticket` (as it is now), or records why not.
pub fn notify<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    cause: &Cause<'_>,
) -> Result<(), T::Error> {
    let Some(ns) = settings.notify.as_deref() else {
        return Ok(());
    };
    let n = cause.notification;
    let over = ns
        .mailboxes
        .get(&ticket.mailbox)
        .and_then(|m| m.overrides.get(&n));
    if over.is_some_and(|o| !o.active) {
        return Ok(());
    }
    let specs = over
        .and_then(|o| o.recipients.clone())
        .unwrap_or_else(|| n.default_recipients());
    let mut recipients = ns.recipients(ticket, &specs);
    if recipients.is_empty() {
        return suppressed(txn, ticket, cause, None, SuppressReason::NoRecipient);
    }
    if let Some(by) = cause.by {
        recipients.retain(|(a, _)| !a.eq_ignore_ascii_case(by.trim()));
    }
    let window_ms = i64::try_from(ns.config.per_recipient_window.as_millis()).unwrap_or(i64::MAX);
    let since = cause.at_ms.saturating_sub(window_ms);
    let mut to = Vec::new();
    for (address, requester) in recipients {
        let reason = if requester && cause.automatic {
            Some(SuppressReason::AutomaticMail)
        } else if requester && cause.internal {
            Some(SuppressReason::InternalMail)
        } else if ns.own_addresses.contains(&address) {
            Some(SuppressReason::OwnAddress)
        } else if !valid_address(&address) {
            Some(SuppressReason::InvalidAddress)
        } else if ns.config.per_recipient_limit > 0
            && txn.notifications_to(&address, since)? >= ns.config.per_recipient_limit
        {
            Some(SuppressReason::RecipientLimit)
        } else {
            None
        };
        match reason {
            Some(r) => suppressed(txn, ticket, cause, Some(&address), r)?,
            None => to.push((address, requester)),
        }
    }
    if to.is_empty() {
        return Ok(());
    }
    if ns.config.per_ticket_limit > 0
        && txn.notifications_on(ticket.id, since)? >= ns.config.per_ticket_limit
    {
        return suppressed(txn, ticket, cause, None, SuppressReason::TicketLimit);
    }
    let (Some(sender), Some(composer)) =
        (settings.senders.get(&ticket.mailbox), &settings.composer)
    else {
        return suppressed(txn, ticket, cause, None, SuppressReason::ComposeError);
    };
    let data = TemplateData {
        number: ticket.number,
        tag: ticket.tag.clone(),
        subject: ticket.subject.clone(),
        requester_name: ticket.requester.name.clone(),
        requester_address: ticket.requester.address.clone(),
        status: ticket.status.as_str().to_string(),
        assignee: ticket.assignee.clone(),
        link: ns.link(ticket),
        message: cause.message.chars().take(MAX_MESSAGE_CHARS).collect(),
        categories: ticket.categories.clone(),
        mailbox: ticket.mailbox.clone(),
    };
    let rendered = match ns.renderer.render(n, &data) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(ticket = ticket.number, error = %e, "notification template failed");
            return suppressed(txn, ticket, cause, None, SuppressReason::TemplateError);
        }
    };
    let (in_reply_to, references) = thread(txn, ticket)?;
    let (id, message_id) = new_message_id(txn, settings, ticket, sender)?;
    let to: Vec<Mailbox> = to
        .into_iter()
        .map(|(address, requester)| Mailbox {
            name: requester.then(|| ticket.requester.name.clone()).flatten(),
            address,
        })
        .collect();
    let outgoing = Outgoing {
        kind: if n == Notification::Acknowledgement {
            Kind::Acknowledgement
        } else {
            Kind::Notification
        },
        from: sender.from.clone(),
        reply_to: sender.reply_to.clone(),
        to: to.clone(),
        cc: vec![],
        subject: rendered
            .subject
            .clone()
            .unwrap_or_else(|| reply_subject(&ticket.subject)),
        tag: ticket.tag.clone(),
        message_id: message_id.clone(),
        in_reply_to,
        references,
        ticket_number: ticket.number,
        record_id: id,
        date: cause.at_ms.div_euclid(1000),
        text: rendered.text.clone(),
        html: rendered.html.clone(),
        attachments: vec![],
    };
    let raw = match composer.compose(&outgoing) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(ticket = ticket.number, error = %e, "notification not composed");
            return suppressed(txn, ticket, cause, None, SuppressReason::ComposeError);
        }
    };
    let person = |m: &Mailbox| Person {
        address: m.address.clone(),
        name: m.name.clone(),
    };
    let rcpt_to: Vec<String> = to.iter().map(|m| m.address.clone()).collect();
    let stored = StoredMessage {
        id,
        ticket_id: ticket.id,
        direction: Direction::Outbound,
        message_id: message_id.clone(),
        in_reply_to: outgoing.in_reply_to.iter().cloned().collect(),
        references: outgoing.references.clone(),
        from: person(&sender.from),
        to: to.iter().map(person).collect(),
        cc: vec![],
        date: Some(cause.at.to_string()),
        subject: tagged_subject(&outgoing.subject, &outgoing.tag),
        text: rendered.text,
        html: rendered.html,
        attachments: vec![],
        auto_submitted: true,
        source: format!("notify:{}", n.as_str()),
        envelope: EnvelopeInfo {
            mail_from: sender.from.address.clone(),
            rcpt_to: rcpt_to.clone(),
            client: "notify".into(),
            helo: String::new(),
        },
        received_at: cause.at.to_string(),
        size: raw.len() as u64,
        body: super::model::BodyStore::Record,
        trace: Default::default(),
    };
    txn.insert_unlisted(&stored, &raw)?;
    for r in &rcpt_to {
        txn.record_notification(r, ticket.id, cause.at_ms, id)?;
    }
    let size = raw.len() as u64;
    enqueue(
        txn,
        ticket,
        sender,
        id,
        &message_id,
        rcpt_to,
        size,
        cause.at,
        cause.at_ms,
    )
}
