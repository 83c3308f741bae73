//! What ingest asks the ticket rules to record: one request per received
//! message, one item per target mailbox, committed together.

use std::sync::Arc;

use bytes::Bytes;

use super::token::TokenKey;
use crate::mail::{Origin, ParsedMail, RejectReason, TagFormat};

/// The mailbox an item is for.
#[derive(Debug, Clone)]
pub struct MailboxRef {
    pub name: String,
    pub queue: String,
}

/// What to record for one mailbox.
#[derive(Debug, Clone)]
pub enum Item {
    /// A readable message: becomes a ticket message, unless it is automatic
    /// and threads nowhere, then a rejection with that reason.
    Message {
        mailbox: MailboxRef,
        mail: Arc<ParsedMail>,
        automatic: Option<(RejectReason, String)>,
    },
    /// A message refused before routing (unparseable, no sender, oversize).
    Reject {
        mailbox: Option<String>,
        reason: RejectReason,
        detail: String,
        message_id: Option<String>,
        from: Option<String>,
        subject: Option<String>,
        /// Keep the raw bytes with the record (false for oversize).
        keep_raw: bool,
    },
}

impl Item {
    /// The mailbox name that scopes dedup and threading ("" when none).
    pub fn mailbox(&self) -> &str {
        match self {
            Item::Message { mailbox, .. } => &mailbox.name,
            Item::Reject { mailbox, .. } => mailbox.as_deref().unwrap_or(""),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub origin: Origin,
    /// The original bytes (empty when not kept, e.g. oversize).
    pub raw: Bytes,
    /// Size of the message as received (may exceed raw.len() for oversize).
    pub size: u64,
    /// Upstream identity of pulled mail (`imap:V:U`, `pop3:UIDL`): a
    /// request whose identity is already recorded for its mailbox changes
    /// nothing and answers Duplicate.
    pub upstream_key: Option<String>,
    pub items: Vec<Item>,
}

/// Ticket numbering, tags and reply tokens, fixed at start.
#[derive(Debug, Clone)]
pub struct TicketSettings {
    pub tag: TagFormat,
    pub first_number: u64,
    /// Verifies the reply tokens in our own Message-IDs (None: threading by
    /// token is off, as for a store opened without the instance key).
    pub token: Option<TokenKey>,
}
