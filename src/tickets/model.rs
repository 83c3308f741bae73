//! Records kept in the store; the same shapes are served by the JSON API,
//! so what an operator sees is exactly what was committed.

use serde::{Deserialize, Serialize};

use crate::mail::{AttachmentMeta, EnvelopeInfo, Person};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    pub id: u64,
    pub number: u64,
    pub tag: String,
    pub mailbox: String,
    pub queue: String,
    pub status: String,
    pub subject: String,
    pub requester: Person,
    pub created_at: String,
    pub updated_at: String,
    pub message_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: u64,
    pub ticket_id: u64,
    pub direction: String,
    pub message_id: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Person,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub date: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
    pub auto_submitted: bool,
    pub source: String,
    pub envelope: EnvelopeInfo,
    pub received_at: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejection {
    pub id: u64,
    pub reason: String,
    pub detail: String,
    pub source: String,
    pub mailbox: Option<String>,
    pub envelope: EnvelopeInfo,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub received_at: String,
    pub raw_available: bool,
}

/// What happened to one message for one mailbox once committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as a ticket message; `new_ticket` when it opened the ticket.
    Stored {
        message_id: u64,
        ticket_id: u64,
        ticket_number: u64,
        new_ticket: bool,
    },
    /// Recorded as a rejection.
    Rejected { rejection_id: u64, reason: String },
    /// Seen before for this mailbox; nothing new was written.
    Duplicate(Earlier),
}

impl Outcome {
    /// The record this outcome points at.
    pub fn earlier(&self) -> Earlier {
        match self {
            Outcome::Stored { message_id, .. } => Earlier::Message(*message_id),
            Outcome::Rejected { rejection_id, .. } => Earlier::Rejection(*rejection_id),
            Outcome::Duplicate(e) => *e,
        }
    }
}

/// The record a duplicate repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Earlier {
    Message(u64),
    Rejection(u64),
}
