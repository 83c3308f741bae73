//! What a matching rule does. Setting actions change the ticket the
//! message opens or joins; forward and answer become outbox entries
//! (loop-protected like every automatic message); reject and stop end
//! the evaluation.

use std::fmt;

use crate::mail::TicketStatus;

/// How a forwarded message carries the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// As a `message/rfc822` attachment, byte for byte.
    Attached,
    /// Quoted in the body of the forward.
    Inline,
}

impl ForwardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::Attached => "attached",
            ForwardMode::Inline => "inline",
        }
    }
}

/// Where a forward goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTo {
    Addresses(Vec<String>),
    /// The mailbox's `team` addresses.
    Team,
}

impl fmt::Display for ForwardTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTo::Addresses(a) => f.write_str(&a.join(", ")),
            ForwardTo::Team => f.write_str("the mailbox's team"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    SetQueue(String),
    /// Adds a category key.
    AddCategory(String),
    SetAssignee(String),
    SetStatus(TicketStatus),
    Forward {
        to: ForwardTo,
        mode: ForwardMode,
    },
    /// Answers the sender with the named template, at most once per
    /// sender per `window`, never automatic mail.
    Answer {
        template: String,
        window: std::time::Duration,
    },
    /// Links the message to the ticket whose number the pattern's first
    /// capture group finds in the subject or body.
    Link(regex::Regex),
    /// Refuses the message with reason `rule:<name>`.
    Reject,
    /// No later rule is evaluated.
    Stop,
}

impl PartialEq for Action {
    fn eq(&self, other: &Action) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SetQueue(q) => write!(f, "set queue {q:?}"),
            Action::AddCategory(c) => write!(f, "add category {c:?}"),
            Action::SetAssignee(a) => write!(f, "assign to {a}"),
            Action::SetStatus(s) => write!(f, "set status {}", s.as_str()),
            Action::Forward { to, mode } => {
                write!(f, "forward to {to} (original {})", mode.as_str())
            }
            Action::Answer { template, window } => write!(
                f,
                "answer with template {template:?} (once per sender per {})",
                humantime::format_duration(*window)
            ),
            Action::Link(r) => write!(f, "link by ticket number /{}/", r.as_str()),
            Action::Reject => f.write_str("reject"),
            Action::Stop => f.write_str("stop"),
        }
    }
}
