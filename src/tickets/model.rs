//! Records kept in the store; the same shapes are served by the JSON API,
//! so what an operator sees is exactly what was committed. States and
//! directions are enums serialized as the strings the API has always shown.

use serde::{Deserialize, Serialize};

use super::trace::DecisionTrace;
pub use crate::mail::TicketStatus;
use crate::mail::{AttachmentMeta, EnvelopeInfo, Person, RejectReason};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received from a customer (MX or upstream mailbox).
    Inbound,
    /// Sent by the gateway (replies, notifications).
    Outbound,
    /// An agent's internal note: stored on the ticket, never sent.
    Note,
    /// Mail a staff member (From in `server.internal_domains`) sent that
    /// threaded onto a ticket: an agent's message, received, not sent.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: u64,
    pub number: u64,
    pub tag: String,
    pub mailbox: String,
    pub queue: String,
    pub status: TicketStatus,
    pub subject: String,
    pub requester: Person,
    pub created_at: String,
    pub updated_at: String,
    pub message_count: u64,
    /// The agent working on it (an address), if any.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Category keys from the config.
    #[serde(default)]
    pub categories: Vec<String>,
}

/// One change to a ticket: who made it, when, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketEvent {
    pub at: String,
    /// Who made the change (an agent's address), when known.
    pub by: Option<String>,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Status {
        from: TicketStatus,
        to: TicketStatus,
    },
    Assignee {
        from: Option<String>,
        to: Option<String>,
    },
    Categories {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// A notification (or one of its recipients) was not sent.
    NotificationSuppressed {
        /// Its name (`acknowledgement`, `ticket_done`, ...).
        notification: String,
        /// The recipient left out; None when the whole notification was.
        recipient: Option<String>,
        reason: SuppressReason,
    },
    /// A mail rule forwarded the message or answered its sender.
    RuleMail {
        rule: String,
        action: RuleMailAction,
        to: Vec<String>,
        /// The record id of the message sent (see the outbox).
        message: u64,
    },
}

/// What a rule sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMailAction {
    Forward,
    Answer,
}

/// Why a notification was not sent (an inactive one is not recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// The message that caused it was automatic (auto-reply, bounce, list).
    AutomaticMail,
    /// The recipient is one of the gateway's own addresses.
    OwnAddress,
    /// The recipient is not a usable mail address.
    InvalidAddress,
    /// The recipient had `notify.per_recipient_limit` in the window.
    RecipientLimit,
    /// The ticket had `notify.per_ticket_limit` in the window.
    TicketLimit,
    /// Nobody to send it to: no assignee, no team, no fallback.
    NoRecipient,
    /// Its template did not render.
    TemplateError,
    /// The message could not be built.
    ComposeError,
    /// Staff mail caused it: the requester is not told as if they wrote.
    InternalMail,
    /// The sender had this rule's preset answer within its window.
    AlreadyAnswered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: u64,
    pub ticket_id: u64,
    pub direction: Direction,
    pub message_id: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Person,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub date: Option<String>,
    pub subject: String,
    /// Empty in the store when `body` is [`BodyStore::Raw`].
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
    pub auto_submitted: bool,
    pub source: String,
    pub envelope: EnvelopeInfo,
    pub received_at: String,
    pub size: u64,
    /// Where `text`, `html` and the attachments' bytes are kept. Absent in
    /// records written before it existed (which hold them), and in what
    /// the API serves (the body is filled in by then).
    #[serde(default, skip_serializing_if = "BodyStore::is_record")]
    pub body: BodyStore,
    /// How ingest decided (inbound mail; empty for the gateway's own).
    #[serde(default, skip_serializing_if = "DecisionTrace::is_empty")]
    pub trace: DecisionTrace,
}

/// Where a stored message's body lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyStore {
    /// In the record (`text`, `html`) and the attachments table: outbound
    /// messages, and every message stored before bodies were derived.
    #[default]
    Record,
    /// Only in the raw bytes: `text`, `html` and the attachments are what
    /// parsing the raw message gives (inbound mail, parsed at ingest).
    Raw,
}

impl BodyStore {
    pub fn is_record(&self) -> bool {
        *self == BodyStore::Record
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: u64,
    pub reason: RejectReason,
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
    /// How ingest decided to refuse it.
    #[serde(default)]
    pub trace: DecisionTrace,
    /// What replaying it gave, once it was replayed (it is replayed once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Replayed>,
}

/// The link from a replayed rejection to what the replay became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// RFC 3339, when it was replayed.
    pub at: String,
    /// Whether the classification was set aside (`{"as": "ticket"}`).
    #[serde(default)]
    pub as_ticket: bool,
    pub outcome: ReplayResult,
}

/// What the replay of a rejection became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplayResult {
    /// A ticket message.
    Message { message_id: u64, ticket_id: u64 },
    /// Refused again: a new rejection record.
    Rejection {
        rejection_id: u64,
        reason: RejectReason,
    },
    /// The same message is already recorded elsewhere (`m:ID` / `r:ID`).
    Duplicate { of: String },
}

/// What happened to one message for one mailbox once committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as a ticket message; `new_ticket` when it opened the ticket.
    /// `id_collision` when an earlier, different message of this mailbox
    /// carried the same Message-ID (a reused or planted id): this one was
    /// kept as its own message rather than dropped as a duplicate.
    Stored {
        message_id: u64,
        ticket_id: u64,
        ticket_number: u64,
        new_ticket: bool,
        id_collision: bool,
    },
    /// Recorded as a rejection.
    Rejected {
        rejection_id: u64,
        reason: RejectReason,
    },
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

impl Earlier {
    /// `m:ID` / `r:ID`, as kept in the dedup and upstream tables.
    pub fn encode(self) -> String {
        match self {
            Earlier::Message(id) => format!("m:{id}"),
            Earlier::Rejection(id) => format!("r:{id}"),
        }
    }

    pub fn decode(value: &str) -> Option<Earlier> {
        let (kind, id) = value.split_once(':')?;
        let id = id.parse::<u64>().ok()?;
        match kind {
            "m" => Some(Earlier::Message(id)),
            "r" => Some(Earlier::Rejection(id)),
            _ => None,
        }
    }
}

/// Where an outbound message is on its way to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Queued,
    /// Waiting again: a temporary failure, or a send limit.
    Deferred,
    /// The relay took it (its reply line is kept).
    Sent,
    /// Given up: a permanent refusal, or too old to retry.
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Queued,
        DeliveryState::Deferred,
        DeliveryState::Sent,
        DeliveryState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Deferred => "deferred",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Still to be sent.
    pub fn pending(self) -> bool {
        matches!(self, DeliveryState::Queued | DeliveryState::Deferred)
    }
}

/// One outbound message in the outbox: the message record it sends (same
/// id), its envelope, and its delivery state. The outbox is transactional:
/// an entry is written in the same transaction as the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The id of the outbound message record.
    pub id: u64,
    /// The ticket it belongs to; None for a submission that continues no
    /// ticket (kept in the outbound log only).
    pub ticket_id: Option<u64>,
    pub mailbox: String,
    /// The submission account that sent it (None for the gateway's own mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub size: u64,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: String,
    pub created_ms: i64,
    /// Not before this (ms since the epoch).
    pub next_attempt_ms: i64,
    /// Why it waits or failed: `rate_limit:<budget>`, a relay reply, a
    /// connection error.
    pub last_error: Option<String>,
    /// The relay's final reply, once sent.
    pub relay_reply: Option<String>,
    pub finished_at: Option<String>,
}
