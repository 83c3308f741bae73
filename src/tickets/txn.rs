//! The small transaction interface the ticket rules are written against.
//!
//! A backend (redb today, PostgreSQL later, an in-memory map in tests)
//! implements these reads and writes inside one of its transactions; the
//! rules in [`super::apply`] decide threading, dedup and numbering once, for
//! every backend. All calls of one batch happen in one transaction, so a
//! decision always sees the writes made before it in the same batch.

use super::model::{Earlier, OutboxEntry, Rejection, StoredMessage, Ticket, TicketEvent};

/// The id and number sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Ticket,
    Message,
    Rejection,
    /// The last ticket number handed out (tags name numbers, not ids).
    Number,
    /// Ticket events, one sequence for all tickets.
    Event,
}

impl Counter {
    /// The name under which a backend keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Ticket => "ticket",
            Counter::Message => "message",
            Counter::Rejection => "rejection",
            Counter::Number => "number",
            Counter::Event => "event",
        }
    }
}

/// What a dedup key points at: the earlier record, and the fingerprint of
/// the mail that made it (None for entries written before fingerprints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    pub earlier: Earlier,
    pub fingerprint: Option<String>,
}

impl DedupEntry {
    /// `m:ID` or `m:ID fp:HEX`, as a backend stores it.
    pub fn encode(&self) -> String {
        match &self.fingerprint {
            Some(fp) => format!("{} fp:{fp}", self.earlier.encode()),
            None => self.earlier.encode(),
        }
    }

    pub fn decode(value: &str) -> Option<DedupEntry> {
        let (earlier, fingerprint) = match value.split_once(' ') {
            Some((e, rest)) => (e, rest.strip_prefix("fp:").map(str::to_string)),
            None => (value, None),
        };
        Some(DedupEntry {
            earlier: Earlier::decode(earlier)?,
            fingerprint,
        })
    }
}

/// Reads and writes of one backend transaction.
pub trait TicketTxn {
    type Error;

    /// The current value of a sequence (None before its first use).
    fn counter(&self, counter: Counter) -> Result<Option<u64>, Self::Error>;
    fn set_counter(&mut self, counter: Counter, value: u64) -> Result<(), Self::Error>;

    fn ticket(&self, id: u64) -> Result<Option<Ticket>, Self::Error>;
    /// The ticket id a number belongs to.
    fn ticket_by_number(&self, number: u64) -> Result<Option<u64>, Self::Error>;
    /// A new ticket, indexed by its number and its mailbox.
    fn insert_ticket(&mut self, ticket: &Ticket) -> Result<(), Self::Error>;
    /// An existing ticket's changed fields (number and mailbox never change).
    fn update_ticket(&mut self, ticket: &Ticket) -> Result<(), Self::Error>;

    /// The (message id, ticket id) a Message-ID was recorded under in a mailbox.
    fn thread_lookup(
        &self,
        mailbox: &str,
        message_id: &str,
    ) -> Result<Option<(u64, u64)>, Self::Error>;
    fn index_message_id(
        &mut self,
        mailbox: &str,
        message_id: &str,
        message: u64,
        ticket: u64,
    ) -> Result<(), Self::Error>;

    /// A message record with its raw bytes, linked to its ticket.
    fn insert_message(&mut self, message: &StoredMessage, raw: &[u8]) -> Result<(), Self::Error>;
    fn insert_attachment(
        &mut self,
        message: u64,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), Self::Error>;

    /// A rejection record, with the raw bytes when they are kept.
    fn insert_rejection(
        &mut self,
        rejection: &Rejection,
        raw: Option<&[u8]>,
    ) -> Result<(), Self::Error>;

    fn rejection(&self, id: u64) -> Result<Option<Rejection>, Self::Error>;
    /// Rewrites a rejection record (same id and reason: the index stays).
    fn update_rejection(&mut self, rejection: &Rejection) -> Result<(), Self::Error>;
    /// Ids of rejections received before `cutoff`, at most `max`.
    fn old_rejections(
        &self,
        cutoff: time::OffsetDateTime,
        max: usize,
    ) -> Result<Vec<u64>, Self::Error>;
    /// Removes a rejection, its raw bytes and its index row.
    fn delete_rejection(&mut self, id: u64) -> Result<(), Self::Error>;

    fn dedup(&self, mailbox: &str, key: &str) -> Result<Option<DedupEntry>, Self::Error>;
    fn put_dedup(
        &mut self,
        mailbox: &str,
        key: &str,
        entry: &DedupEntry,
    ) -> Result<(), Self::Error>;
    fn delete_dedup(&mut self, mailbox: &str, key: &str) -> Result<(), Self::Error>;

    /// What an upstream identity already became in a mailbox.
    fn upstream(&self, mailbox: &str, key: &str) -> Result<Option<Earlier>, Self::Error>;
    fn put_upstream(
        &mut self,
        mailbox: &str,
        key: &str,
        earlier: Earlier,
    ) -> Result<(), Self::Error>;

    fn message(&self, id: u64) -> Result<Option<StoredMessage>, Self::Error>;
    /// A mailbox's ticket ids, newest first, at most `limit`.
    fn mailbox_ticket_ids(&self, mailbox: &str, limit: usize) -> Result<Vec<u64>, Self::Error>;
    /// A ticket's message ids, newest first, at most `limit`.
    fn latest_message_ids(&self, ticket: u64, limit: usize) -> Result<Vec<u64>, Self::Error>;

    fn outbox(&self, id: u64) -> Result<Option<OutboxEntry>, Self::Error>;
    /// Writes an outbox entry; the backend keeps its index of pending
    /// entries (queued or deferred) in step with `entry.state`.
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), Self::Error>;
    /// Appends a change to a ticket's history.
    fn insert_event(
        &mut self,
        ticket: u64,
        seq: u64,
        event: &TicketEvent,
    ) -> Result<(), Self::Error>;

    /// What a mailbox handed to the relay, for the send limits.
    fn record_send(
        &mut self,
        mailbox: &str,
        at_ms: i64,
        id: u64,
        bytes: u64,
        recipients: u64,
    ) -> Result<(), Self::Error>;

    /// A message record and bytes kept for the send worker and the API but
    /// not listed among a ticket's messages: a notification, or a submission
    /// that continues no ticket.
    fn insert_unlisted(&mut self, message: &StoredMessage, raw: &[u8]) -> Result<(), Self::Error>;
    /// Logs an automatic message to `recipient` on `ticket`, for the caps.
    fn record_notification(
        &mut self,
        recipient: &str,
        ticket: u64,
        at_ms: i64,
        id: u64,
    ) -> Result<(), Self::Error>;
    /// Automatic messages logged to `recipient` at or after `since_ms`.
    fn notifications_to(&self, recipient: &str, since_ms: i64) -> Result<u64, Self::Error>;
    /// Automatic messages logged on `ticket` at or after `since_ms` (each
    /// message once, whatever its recipients).
    fn notifications_on(&self, ticket: u64, since_ms: i64) -> Result<u64, Self::Error>;
}
