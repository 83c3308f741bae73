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
use super::outgoing::{Kind, Mailbox, Original, Outgoing, tagged_subject, valid_address};
use super::render::{Rendered, Renderer, TemplateData};
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
    pub(super) fn team(&self, mailbox: &str) -> &[String] {
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

/// Records on `ticket` that `what` (a notification's name, or
/// `forward:<rule>` / `answer:<rule>`) was not sent, to `recipient` or at all.
pub(super) fn suppressed<T: TicketTxn>(
    txn: &mut T,
    ticket: &Ticket,
    (what, at): (&str, &str),
    recipient: Option<&str>,
    reason: SuppressReason,
) -> Result<(), T::Error> {
    tracing::info!(
        ticket = ticket.number,
        notification = what,
        reason = ?reason,
        "automatic message suppressed"
    );
    let seq = next(txn, Counter::Event)?;
    let event = TicketEvent {
        at: at.to_string(),
        by: None,
        change: Change::NotificationSuppressed {
            notification: what.to_string(),
            recipient: recipient.map(str::to_string),
            reason,
        },
    };
    txn.insert_event(ticket.id, seq, &event)
}

/// What keeps an automatic message from one recipient whoever caused it:
/// our own addresses (a loop through the gateway), unusable addresses,
/// and the per-recipient cap over `notify.per_recipient_window`.
pub(super) fn screen<T: TicketTxn>(
    txn: &T,
    ns: &NotifySettings,
    address: &str,
    at_ms: i64,
) -> Result<Option<SuppressReason>, T::Error> {
    Ok(if ns.own_addresses.contains(address) {
        Some(SuppressReason::OwnAddress)
    } else if !valid_address(address) {
        Some(SuppressReason::InvalidAddress)
    } else if ns.config.per_recipient_limit > 0
        && txn.notifications_to(address, ns.window_start(at_ms))? >= ns.config.per_recipient_limit
    {
        Some(SuppressReason::RecipientLimit)
    } else {
        None
    })
}

/// The ticket had `notify.per_ticket_limit` automatic messages in the window.
pub(super) fn ticket_capped<T: TicketTxn>(
    txn: &T,
    ns: &NotifySettings,
    ticket: &Ticket,
    at_ms: i64,
) -> Result<bool, T::Error> {
    Ok(ns.config.per_ticket_limit > 0
        && txn.notifications_on(ticket.id, ns.window_start(at_ms))? >= ns.config.per_ticket_limit)
}

impl NotifySettings {
    fn window_start(&self, at_ms: i64) -> i64 {
        let window =
            i64::try_from(self.config.per_recipient_window.as_millis()).unwrap_or(i64::MAX);
        at_ms.saturating_sub(window)
    }

    /// What a template is given about `ticket`.
    pub(super) fn template_data(&self, ticket: &Ticket, message: &str) -> TemplateData {
        TemplateData {
            number: ticket.number,
            tag: ticket.tag.clone(),
            subject: ticket.subject.clone(),
            requester_name: ticket.requester.name.clone(),
            requester_address: ticket.requester.address.clone(),
            status: ticket.status.as_str().to_string(),
            assignee: ticket.assignee.clone(),
            link: self.link(ticket),
            message: message.chars().take(MAX_MESSAGE_CHARS).collect(),
            categories: ticket.categories.clone(),
            mailbox: ticket.mailbox.clone(),
        }
    }
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
    let what = (n.as_str(), cause.at);
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
        return suppressed(txn, ticket, what, None, SuppressReason::NoRecipient);
    }
    if let Some(by) = cause.by {
        recipients.retain(|(a, _)| !a.eq_ignore_ascii_case(by.trim()));
    }
    let mut to = Vec::new();
    for (address, requester) in recipients {
        let reason = if requester && cause.automatic {
            Some(SuppressReason::AutomaticMail)
        } else if requester && cause.internal {
            Some(SuppressReason::InternalMail)
        } else {
            screen(txn, ns, &address, cause.at_ms)?
        };
        match reason {
            Some(r) => suppressed(txn, ticket, what, Some(&address), r)?,
            None => to.push(Mailbox {
                name: requester.then(|| ticket.requester.name.clone()).flatten(),
                address,
            }),
        }
    }
    if to.is_empty() {
        return Ok(());
    }
    if ticket_capped(txn, ns, ticket, cause.at_ms)? {
        return suppressed(txn, ticket, what, None, SuppressReason::TicketLimit);
    }
    let rendered = match ns
        .renderer
        .render(n, &ns.template_data(ticket, cause.message))
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(ticket = ticket.number, error = %e, "notification template failed");
            return suppressed(txn, ticket, what, None, SuppressReason::TemplateError);
        }
    };
    let automatic = Automatic {
        kind: if n == Notification::Acknowledgement {
            Kind::Acknowledgement
        } else {
            Kind::Notification
        },
        to,
        subject: rendered
            .subject
            .clone()
            .unwrap_or_else(|| reply_subject(&ticket.subject)),
        rendered,
        original: None,
        source: format!("notify:{}", n.as_str()),
    };
    match queue(txn, settings, ticket, automatic, (cause.at, cause.at_ms))? {
        Some(_) => Ok(()),
        None => suppressed(txn, ticket, what, None, SuppressReason::ComposeError),
    }
}

/// One automatic message about a ticket, ready to be composed.
pub(super) struct Automatic {
    pub kind: Kind,
    pub to: Vec<Mailbox>,
    pub subject: String,
    /// Its text and HTML (the subject is `subject`).
    pub rendered: Rendered,
    pub original: Option<Original>,
    /// What the record says made it: `notify:<name>`, `rule:<name>`.
    pub source: String,
}

/// Threads, composes, stores (unlisted), logs for the caps and queues an
/// automatic message on `ticket`; returns its record id, or None when it
/// could not be built (then nothing but counters was written).
pub(super) fn queue<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    ticket: &Ticket,
    a: Automatic,
    (at, at_ms): (&str, i64),
) -> Result<Option<u64>, T::Error> {
    let (Some(sender), Some(composer)) =
        (settings.senders.get(&ticket.mailbox), &settings.composer)
    else {
        return Ok(None);
    };
    let (in_reply_to, references) = thread(txn, ticket)?;
    let (id, message_id) = new_message_id(txn, settings, ticket, sender)?;
    let outgoing = Outgoing {
        kind: a.kind,
        from: sender.from.clone(),
        reply_to: sender.reply_to.clone(),
        to: a.to.clone(),
        cc: vec![],
        subject: a.subject,
        tag: ticket.tag.clone(),
        message_id: message_id.clone(),
        in_reply_to,
        references,
        ticket_number: ticket.number,
        record_id: id,
        date: at_ms.div_euclid(1000),
        text: a.rendered.text,
        html: a.rendered.html,
        attachments: vec![],
        original: a.original,
    };
    let raw = match composer.compose(&outgoing) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(ticket = ticket.number, error = %e, source = %a.source, "automatic message not composed");
            return Ok(None);
        }
    };
    let person = |m: &Mailbox| Person {
        address: m.address.clone(),
        name: m.name.clone(),
    };
    let rcpt_to: Vec<String> = a.to.iter().map(|m| m.address.clone()).collect();
    let stored = StoredMessage {
        id,
        ticket_id: ticket.id,
        direction: Direction::Outbound,
        message_id: message_id.clone(),
        in_reply_to: outgoing.in_reply_to.iter().cloned().collect(),
        references: outgoing.references.clone(),
        from: person(&sender.from),
        to: a.to.iter().map(person).collect(),
        cc: vec![],
        date: Some(at.to_string()),
        subject: tagged_subject(&outgoing.subject, &outgoing.tag),
        text: outgoing.text,
        html: outgoing.html,
        attachments: vec![],
        auto_submitted: outgoing.kind.auto_submitted().is_some(),
        source: a.source,
        envelope: EnvelopeInfo {
            mail_from: sender.from.address.clone(),
            rcpt_to: rcpt_to.clone(),
            client: "notify".into(),
            helo: String::new(),
        },
        received_at: at.to_string(),
        size: raw.len() as u64,
        body: super::model::BodyStore::Record,
        trace: Default::default(),
    };
    txn.insert_unlisted(&stored, &raw)?;
    for r in &rcpt_to {
        txn.record_notification(r, ticket.id, at_ms, id)?;
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
        at,
        at_ms,
    )?;
    Ok(Some(id))
}
