//! The decision trace: how one message became what it is (a ticket message
//! or a rejection), step by step — routing, classification, mail rules,
//! threading, dedup — as short structured JSON kept on the record, so an
//! operator sees the decision that was taken, not log text. Ingest fills in
//! what it knows before the commit; threading and dedup are completed in
//! the commit transaction. Every part is optional so old records read.

use serde::{Deserialize, Serialize};

use crate::mail::RejectReason;
pub use crate::rules::{RuleTrace, Scope as RuleScope};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionTrace {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Every rule evaluated, in order (empty: no rules ran).
    pub rules: Vec<RuleTrace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threading: Option<Threading>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Dedup>,
    /// The rejection this record is the replay of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<u64>,
}

impl DecisionTrace {
    pub fn is_empty(&self) -> bool {
        *self == DecisionTrace::default()
    }
}

/// Which address brought the message to which mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    /// The envelope recipient that routed here (None for pulled mail: the
    /// upstream mailbox is the route).
    pub address: Option<String>,
    pub mailbox: String,
    /// No mailbox has the address: the default mailbox took it.
    pub default_used: bool,
}

/// What classification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Classification {
    /// Why the message counts as automatic (None: written by a person).
    pub automatic: Option<Automatic>,
    /// Every marker of automatic mail present, e.g. `Precedence: bulk`,
    /// `null sender`, `Auto-Submitted: auto-replied`.
    pub signals: Vec<String>,
    /// A replay with `{"as": "ticket"}` set the classification aside.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Automatic {
    pub reason: RejectReason,
    pub detail: String,
}

/// How the ticket was found (or that a new one was opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadBy {
    /// A Message-ID in In-Reply-To.
    InReplyTo,
    /// A Message-ID in References.
    References,
    /// A reply token this instance signed (in In-Reply-To or References).
    ReplyToken,
    /// The ticket tag in the subject.
    SubjectTag,
    /// A mail rule's ticket-number pattern.
    RuleLink,
    /// A bounce of our own mail, to that mail's ticket.
    Bounce,
    /// Nothing matched: a new ticket (or, for automatic mail, a rejection).
    NewTicket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threading {
    pub by: ThreadBy,
    /// The Message-ID, token or tag that matched (None for a new ticket).
    pub value: Option<String>,
    /// The ticket it matched.
    pub ticket_id: Option<u64>,
}

impl Threading {
    pub fn new_ticket() -> Threading {
        Threading {
            by: ThreadBy::NewTicket,
            value: None,
            ticket_id: None,
        }
    }
}

/// What dedup made of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// `id:<Message-ID>` or `sha256:<content hash>`; None when the message
    /// could not be compared (oversize without a Message-ID).
    pub key: Option<String>,
    pub outcome: DedupOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupOutcome {
    /// Not seen before.
    New,
    /// Another, different message of the mailbox had the same Message-ID:
    /// kept as its own message.
    IdCollision,
    /// Not compared (no key).
    NotCompared,
    /// The rejection it replays held the key: replaced by this record.
    Replayed,
}
