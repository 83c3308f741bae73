//! `[notify]` and the notification keys of `[[mailbox]]`: which ticket
//! notifications go to whom, the caps that stop mail loops, where the
//! templates are. Names are the template file names (`ticket_done.txt`), so
//! one word means the same thing in the config, on disk and on the ticket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Quantity, duration};

/// The notifications the ticket system sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Notification {
    /// To the requester: their message opened a ticket.
    Acknowledgement,
    /// To the assignee (or team): a new ticket.
    NewTicket,
    /// To the assignee (or team): a new message on an existing ticket.
    NewMessage,
    /// To the assignee: someone else added an internal note.
    InternalNote,
    /// To the new assignee: the ticket was given to them.
    AssigneeChanged,
    /// To the requester: the ticket is done.
    TicketDone,
    /// To the last assignee: the ticket was rejected.
    TicketRejected,
    /// To the last assignee: the ticket was accepted.
    TicketAccepted,
}

impl Notification {
    pub const ALL: [Notification; 8] = [
        Notification::Acknowledgement,
        Notification::NewTicket,
        Notification::NewMessage,
        Notification::InternalNote,
        Notification::AssigneeChanged,
        Notification::TicketDone,
        Notification::TicketRejected,
        Notification::TicketAccepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Notification::Acknowledgement => "acknowledgement",
            Notification::NewTicket => "new_ticket",
            Notification::NewMessage => "new_message",
            Notification::InternalNote => "internal_note",
            Notification::AssigneeChanged => "assignee_changed",
            Notification::TicketDone => "ticket_done",
            Notification::TicketRejected => "ticket_rejected",
            Notification::TicketAccepted => "ticket_accepted",
        }
    }

    pub fn parse(s: &str) -> Option<Notification> {
        Notification::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// Who gets it when the mailbox does not say otherwise.
    pub fn default_recipients(self) -> Vec<Recipient> {
        match self {
            Notification::Acknowledgement | Notification::TicketDone => vec![Recipient::Requester],
            _ => vec![Recipient::Assignee],
        }
    }
}

/// One entry of a `recipients` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Whoever opened the ticket.
    Requester,
    /// The ticket's assignee; without one, the team (see the fallback chain).
    Assignee,
    /// The mailbox's team; without one, the default mailbox's team, then
    /// `notify.fallback`.
    Team,
    /// A fixed address (lower-cased).
    Address(String),
}

/// A mailbox's setting for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOverride {
    pub active: bool,
    /// None: the notification's default recipients.
    pub recipients: Option<Vec<Recipient>>,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The last link of the fallback chain.
    pub fallback: Vec<String>,
    /// 0: no limit.
    pub per_recipient_limit: u64,
    pub per_recipient_window: Duration,
    /// 0: no limit; counted over `per_recipient_window`.
    pub per_ticket_limit: u64,
    pub templates_dir: PathBuf,
    /// Whether another directory than the default was configured (then it
    /// must exist).
    pub templates_dir_set: bool,
    /// `{id}` and `{number}` are replaced; empty when unset.
    pub link: Option<String>,
}

/// Where templates are looked for unless `notify.templates_dir` says.
pub const DEFAULT_TEMPLATES_DIR: &str = "config/templates";

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawNotify {
    fallback: Vec<String>,
    per_recipient_limit: i64,
    per_recipient_window: Quantity,
    per_ticket_limit: i64,
    templates_dir: Option<String>,
    link: Option<String>,
}

impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            fallback: Vec::new(),
            per_recipient_limit: 10,
            per_recipient_window: Quantity::Text("1h".into()),
            per_ticket_limit: 20,
            templates_dir: None,
            link: None,
        }
    }
}

/// `[mailbox.notify.<name>]`.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawOverride {
    active: bool,
    recipients: Option<Vec<String>>,
}

impl Default for RawOverride {
    fn default() -> Self {
        RawOverride {
            active: true,
            recipients: None,
        }
    }
}

/// `local@domain`, lower-cased, or None.
pub(super) fn address(a: &str) -> Option<String> {
    let a = a.trim().to_lowercase();
    let ok = a.len() <= 254
        && a.rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && super::valid_domain(d) && !l.contains('@'))
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c));
    ok.then_some(a)
}

/// A list of addresses; each bad one is named with its index.
pub(super) fn addresses(
    key: &str,
    list: &[String],
    err: &mut impl FnMut(&str, String),
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        match address(a) {
            Some(a) if !out.contains(&a) => out.push(a),
            Some(_) => {}
            None => err(&format!("{key}[{i}]"), format!("invalid address {a:?}")),
        }
    }
    out
}

fn count(key: &str, value: i64, err: &mut impl FnMut(&str, String)) -> u64 {
    u64::try_from(value).unwrap_or_else(|_| {
        err(key, format!("must be 0 (no limit) or more, not {value}"));
        0
    })
}

pub(super) fn validate(raw: &RawNotify, err: &mut impl FnMut(&str, String)) -> NotifyConfig {
    let link = raw.link.as_deref().map(str::trim).filter(|l| !l.is_empty());
    if let Some(l) = link
        && (l.chars().any(char::is_control) || !l.contains("{id}") && !l.contains("{number}"))
    {
        err(
            "notify.link",
            format!("{l:?} must contain {{id}} or {{number}} and no control characters"),
        );
    }
    // The default may be missing (the embedded templates are used); a
    // directory named otherwise must exist.
    let dir = (raw.templates_dir.as_deref().map(str::trim))
        .filter(|d| !d.is_empty() && *d != DEFAULT_TEMPLATES_DIR);
    let templates_dir = PathBuf::from(dir.unwrap_or(DEFAULT_TEMPLATES_DIR));
    if dir.is_some() && !templates_dir.is_dir() {
        err(
            "notify.templates_dir",
            format!("not a directory: {}", templates_dir.display()),
        );
    }
    NotifyConfig {
        fallback: addresses("notify.fallback", &raw.fallback, err),
        per_recipient_limit: count("notify.per_recipient_limit", raw.per_recipient_limit, err),
        per_recipient_window: duration(
            "notify.per_recipient_window",
            &raw.per_recipient_window,
            err,
        ),
        per_ticket_limit: count("notify.per_ticket_limit", raw.per_ticket_limit, err),
        templates_dir,
        templates_dir_set: dir.is_some(),
        link: link.map(str::to_string),
    }
}

/// `mailbox[i].notify`: one table per notification name.
pub(super) fn validate_mailbox(
    key: &str,
    raw: &BTreeMap<String, RawOverride>,
    err: &mut impl FnMut(&str, String),
) -> BTreeMap<Notification, NotifyOverride> {
    let mut out = BTreeMap::new();
    for (name, o) in raw {
        let nkey = format!("{key}.notify.{name}");
        let Some(n) = Notification::parse(name) else {
            let known: Vec<&str> = Notification::ALL.iter().map(|n| n.as_str()).collect();
            err(
                &nkey,
                format!("unknown notification (known: {})", known.join(", ")),
            );
            continue;
        };
        let recipients = o.recipients.as_ref().map(|list| {
            let mut rs = Vec::new();
            for (i, r) in list.iter().enumerate() {
                let r = match r.trim() {
                    "requester" => Recipient::Requester,
                    "assignee" => Recipient::Assignee,
                    "team" => Recipient::Team,
                    other => match address(other) {
                        Some(a) => Recipient::Address(a),
                        None => {
                            err(
                                &format!("{nkey}.recipients[{i}]"),
                                format!(
                                    "{other:?} is not \"requester\", \"assignee\", \"team\" or an address"
                                ),
                            );
                            continue;
                        }
                    },
                };
                if !rs.contains(&r) {
                    rs.push(r);
                }
            }
            rs
        });
        out.insert(
            n,
            NotifyOverride {
                active: o.active,
                recipients,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[server]\ndomains=[\"a.test\"]\n";

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse(&format!(
            "{BASE}[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\nteam=[\"Ann@a.test\"]\n\
             [mailbox.notify.ticket_done]\nactive=false\n\
             [mailbox.notify.new_ticket]\nrecipients=[\"team\", \"requester\", \"boss@b.test\"]\n"
        ))
        .unwrap();
        assert_eq!(c.notify.per_recipient_limit, 10);
        assert_eq!(c.notify.per_ticket_limit, 20);
        assert_eq!(c.notify.per_recipient_window, Duration::from_secs(3600));
        assert_eq!(c.notify.templates_dir, PathBuf::from("config/templates"));
        assert!(c.notify.fallback.is_empty() && c.notify.link.is_none());
        let m = &c.mailboxes[0];
        assert_eq!(m.team, vec!["ann@a.test".to_string()]);
        assert!(!m.notify[&Notification::TicketDone].active);
        assert_eq!(
            m.notify[&Notification::NewTicket].recipients,
            Some(vec![
                Recipient::Team,
                Recipient::Requester,
                Recipient::Address("boss@b.test".into())
            ])
        );
    }

    #[test]
    fn every_bad_key_is_named() {
        let problems = Config::parse(&format!(
            "{BASE}[notify]\nfallback=[\"nope\"]\nper_recipient_limit=-1\nper_recipient_window=\"soon\"\n\
             per_ticket_limit=-2\ntemplates_dir=\"/nonexistent/t\"\nlink=\"https://x/\"\ncolour=1\n\
             [[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\nteam=[\"x y\"]\n\
             [mailbox.notify.ticket_lost]\nactive=true\n\
             [mailbox.notify.ticket_done]\nrecipients=[\"boss\"]\nwho=1\n"
        ))
        .unwrap_err()
        .problems()
        .join("\n");
        for expected in [
            "notify.fallback[0]: invalid address \"nope\"",
            "notify.per_recipient_limit: must be 0 (no limit) or more, not -1",
            "notify.per_recipient_window: invalid duration",
            "notify.per_ticket_limit: must be 0",
            "notify.templates_dir: not a directory: /nonexistent/t",
            "notify.link: \"https://x/\" must contain {id}",
            "unknown key: notify.colour",
            "mailbox[0].team[0]: invalid address \"x y\"",
            "mailbox[0].notify.ticket_lost: unknown notification (known: acknowledgement,",
            "mailbox[0].notify.ticket_done.recipients[0]: \"boss\" is not",
            "unknown key: mailbox[0].notify.ticket_done.who",
        ] {
            assert!(
                problems.contains(expected),
                "missing {expected:?} in:\n{problems}"
            );
        }
    }
}
