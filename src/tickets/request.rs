//! What ingest asks the ticket rules to record: one request per received
//! message, one item per target mailbox, committed together.

use std::sync::Arc;

use bytes::Bytes;

use std::collections::BTreeMap;

use super::outgoing::{Attachment, Composer, Mailbox};
use super::token::TokenKey;
use crate::mail::{Origin, ParsedMail, RejectReason, TagFormat};

/// The mailbox an item is for.
#[derive(Debug, Clone, Default)]
pub struct MailboxRef {
    pub name: String,
    pub queue: String,
    /// What internal mail that threads nowhere becomes here.
    pub internal_unthreaded: crate::config::role::InternalUnthreaded,
    /// Set for a `role = "importer"` mailbox: where it files mail.
    pub importer: Option<Arc<super::importer::Importer>>,
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
        /// What the mail rules of this mailbox decided (None: no rules).
        rules: Option<Arc<crate::rules::Decision>>,
        /// From is in `server.internal_domains`: a staff member wrote it.
        internal: bool,
        /// Whom a staff member wrote to: the first To, then Cc, address
        /// outside the internal domains and not one of the gateway's own
        /// (None for external mail).
        counterpart: Option<crate::mail::Person>,
        /// What ingest knows of the decision (routing, classification,
        /// rules); threading and dedup are added at commit.
        trace: super::trace::DecisionTrace,
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
        trace: super::trace::DecisionTrace,
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
    /// Hashes of the message for dedup, when the caller computed them (see
    /// [`super::dedup::Digests`]); what is missing is computed at commit.
    pub digests: super::dedup::Digests,
    /// How the commit journal sees this request (see `store::journal`).
    pub journal: Journaling,
}

/// A request's part in the commit journal.
#[derive(Debug, Clone, Default)]
pub enum Journaling {
    /// Committed to the store durably, as it is.
    #[default]
    Off,
    /// What ingest would need to make this request again (its encoded
    /// input): the writer may commit it without durability and journal
    /// this instead.
    Entry(Bytes),
    /// This request remakes journal entry `seq` after a crash; the store
    /// records that number with it.
    Replayed(u64),
}

/// Who a mailbox sends as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub from: Mailbox,
    /// The ticket's mailbox address, or the default mailbox's when the
    /// ticket's mailbox has none.
    pub reply_to: String,
}

/// Ticket numbering, tags, reply tokens and senders, fixed at start.
#[derive(Clone)]
pub struct TicketSettings {
    pub tag: TagFormat,
    pub first_number: u64,
    /// Verifies the reply tokens in our own Message-IDs (None: threading by
    /// token is off, as for a store opened without the instance key).
    pub token: Option<TokenKey>,
    /// Per mailbox name: who its outgoing mail is from.
    pub senders: BTreeMap<String, Sender>,
    /// Builds outgoing messages (None: nothing can be sent, as in tests of
    /// inbound rules only).
    pub composer: Option<Arc<dyn Composer>>,
    /// The category keys a ticket may carry.
    pub categories: Vec<String>,
    /// Ticket notifications (None: none are sent).
    pub notify: Option<Arc<super::notify::NotifySettings>>,
}

impl std::fmt::Debug for TicketSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSettings")
            .field("tag", &self.tag)
            .field("first_number", &self.first_number)
            .field("token", &self.token)
            .field("senders", &self.senders)
            .field("composer", &self.composer.is_some())
            .field("categories", &self.categories)
            .field("notify", &self.notify)
            .finish()
    }
}

/// An agent's answer (or internal note) on a ticket.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub ticket_id: u64,
    /// Who wrote it (an agent's address), when known.
    pub author: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub cc: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// Stored on the ticket, never sent.
    pub internal: bool,
    /// RFC 3339 and milliseconds since the epoch: the same instant.
    pub at: String,
    pub at_ms: i64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The relay took it: its reply line.
    Sent { reply: String },
    /// Try again later (temporary failure or a send limit).
    Deferred {
        next_attempt_ms: i64,
        error: String,
        /// A send limit, not a failure: the attempt is not counted.
        rate_limited: bool,
    },
    /// Give up.
    Failed { error: String },
    /// An operator asked for another try (a failed or deferred entry):
    /// queued again, due now.
    Retry,
}

/// The outcome of an attempt, recorded by the send worker.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    pub id: u64,
    pub attempt: Attempt,
    pub at: String,
    pub at_ms: i64,
}

/// Every write the gateway makes goes through the group-commit writer as
/// one of these, each applied by the ticket rules in the batch's transaction.
#[derive(Debug, Clone)]
pub enum Operation {
    Ingest(CommitRequest),
    Reply(ReplyRequest),
    Delivery(DeliveryUpdate),
    Update(TicketUpdate),
    Submit(super::submit::SubmitRequest),
    /// Runs a rejection's kept bytes through ingest again, once.
    Replay(ReplayRequest),
    /// Removes rejections received before `cutoff` (at most `max`).
    PruneRejections {
        cutoff: time::OffsetDateTime,
        max: usize,
    },
}

/// A rejection replayed: `request` is what ingest made of its raw bytes
/// now. Applied only if the rejection was not replayed before.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub rejection_id: u64,
    pub request: CommitRequest,
    /// The classification was set aside (`{"as": "ticket"}`).
    pub as_ticket: bool,
    /// RFC 3339: now.
    pub at: String,
}

/// What a replay request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Replayed now, or earlier (`first: false`): the link as recorded.
    Done {
        replayed: super::model::Replayed,
        /// What this replay stored (None: it answers an earlier replay).
        first: Option<super::model::Outcome>,
    },
    NotFound,
    /// No raw bytes were kept (oversize).
    NoRaw,
    /// The request had no item (its mailbox is no longer configured).
    NoMailbox,
}

/// An agent's change to a ticket's fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TicketUpdate {
    pub ticket_id: u64,
    pub by: Option<String>,
    pub status: Option<super::model::TicketStatus>,
    /// `Some(None)` clears the assignee.
    pub assignee: Option<Option<String>>,
    /// The whole new set of category keys.
    pub categories: Option<Vec<String>>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The ticket as it is now and the events recorded (none when nothing
    /// changed).
    Updated {
        ticket: Box<super::model::Ticket>,
        events: Vec<super::model::TicketEvent>,
    },
    NoTicket,
    Invalid(String),
}

impl Operation {
    /// Bytes it brings into the transaction (to bound batches).
    pub fn size_hint(&self) -> usize {
        match self {
            Operation::Ingest(r) => r.raw.len(),
            Operation::Reply(r) => {
                r.text.len()
                    + r.html.as_ref().map_or(0, String::len)
                    + r.attachments.iter().map(|a| a.bytes.len()).sum::<usize>()
            }
            Operation::Submit(r) => r.raw.len(),
            Operation::Replay(r) => r.request.raw.len(),
            Operation::Delivery(_) | Operation::Update(_) | Operation::PruneRejections { .. } => 0,
        }
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    Ingested(Vec<super::model::Outcome>),
    Replied(ReplyOutcome),
    Delivery(DeliveryOutcome),
    Updated(UpdateOutcome),
    Submitted(super::submit::SubmitOutcome),
    Replayed(ReplayOutcome),
    /// How many rejections were removed.
    Pruned(u64),
}

/// What a reply request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// Stored on the ticket; queued for delivery unless it was a note.
    Stored {
        message_id: u64,
        queued: bool,
    },
    NoTicket,
    /// Could not be built: the reason, for a 400/422 answer.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Updated(super::model::DeliveryState),
    /// It was already sent (or, for a result, already final).
    Unchanged,
    NotFound,
}
