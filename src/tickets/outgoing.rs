//! A message the gateway is about to send, as the ticket rules decide it:
//! who, what, which thread. Turning it into bytes (the header policy) is the
//! outbound layer's [`Composer`], handed to the rules at start, so that a
//! reply or notification is composed and queued inside the same
//! transaction as the event that caused it.

use crate::proto::smtp::address::{PathKind, parse_path};

/// An address we are willing to write into a header: what an SMTP server
/// would accept as a forward path, without any whitespace or control.
pub fn valid_address(address: &str) -> bool {
    if address.is_empty()
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;\\\"".contains(c))
    {
        return false;
    }
    let path = format!("<{address}>");
    matches!(parse_path(path.as_bytes(), PathKind::Forward), Ok((p, rest)) if rest.is_empty() && p.address.contains('@'))
}

/// What kind of message this is, for `Auto-Submitted` (RFC 3834).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written by an agent: no `Auto-Submitted`.
    Reply,
    /// An acknowledgement of a customer's message: `auto-replied`.
    Acknowledgement,
    /// Any other notice the ticket system sends: `auto-generated`.
    Notification,
}

impl Kind {
    pub fn auto_submitted(self) -> Option<&'static str> {
        match self {
            Kind::Reply => None,
            Kind::Acknowledgement => Some("auto-replied"),
            Kind::Notification => Some("auto-generated"),
        }
    }
}

/// A mailbox with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// One attachment as the agent sent it.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Everything an outgoing message says.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: Kind,
    pub from: Mailbox,
    pub reply_to: String,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Without the tag; [`compose`] puts the tag in front when missing.
    pub subject: String,
    pub tag: String,
    /// Our Message-ID (with the reply token), without `<>`.
    pub message_id: String,
    /// The message answered, and the thread's references, without `<>`.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub ticket_number: u64,
    /// The gateway's id of this outbound message (`X-Mailgate-Message-Id`).
    pub record_id: u64,
    /// Seconds since the epoch.
    pub date: i64,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// The received message a rule forwards (None for every other message).
    pub original: Option<Original>,
}

/// The message a forward carries, as received.
#[derive(Debug, Clone)]
pub struct Original {
    pub mode: crate::rules::ForwardMode,
    /// Its bytes, unchanged.
    pub raw: bytes::Bytes,
    /// Inline: its attachments, re-attached from `raw` by the composer.
    pub attachments: Vec<crate::mail::AttachmentMeta>,
}

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("{field}: not a usable mail address")]
    Address { field: &'static str },
    #[error("{field}: not a usable Message-ID")]
    MessageId { field: &'static str },
    #[error("the message has no recipient")]
    NoRecipient,
}

/// Header text with every control character (CR, LF, TAB, C0, DEL, C1) and
/// line or paragraph separator turned into a space, runs of space folded,
/// and the length capped.
pub fn header_text(value: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars * 4));
    let mut space = false;
    for c in value.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if space {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push(c);
    }
    out.trim().chars().take(max_chars).collect()
}

/// The subject as sent: cleaned, with the ticket tag in front unless the
/// subject carries it already.
pub fn tagged_subject(subject: &str, tag: &str) -> String {
    let subject = header_text(subject, 900);
    if tag.is_empty() || subject.contains(tag) {
        subject
    } else if subject.is_empty() {
        tag.to_string()
    } else {
        format!("{tag} {subject}")
    }
}

/// The RFC 5322 bytes of one outgoing message.
/// Builds the bytes of an outgoing message.
pub trait Composer: Send + Sync {
    fn compose(&self, message: &Outgoing) -> Result<Vec<u8>, ComposeError>;
}
