//! The transaction interface over plain maps: the ticket rules' test
//! backend, proving they hold for a backend other than redb.

use std::collections::BTreeMap;
use std::convert::Infallible;

use super::model::{
    Change, Earlier, OutboxEntry, Rejection, StoredMessage, SuppressReason, Ticket, TicketEvent,
};
use super::txn::{Counter, DedupEntry, TicketTxn};

/// Everything one store holds. A transaction is a clone that replaces the
/// original on commit, so a failed batch leaves nothing behind.
#[derive(Debug, Clone, Default)]
pub struct MemoryTxn {
    counters: BTreeMap<Counter, u64>,
    tickets: BTreeMap<u64, Ticket>,
    numbers: BTreeMap<u64, u64>,
    by_mailbox: BTreeMap<(String, u64), ()>,
    messages: BTreeMap<u64, (StoredMessage, Vec<u8>)>,
    ticket_messages: BTreeMap<(u64, u64), ()>,
    attachments: BTreeMap<(u64, u32), Vec<u8>>,
    message_ids: BTreeMap<(String, String), (u64, u64)>,
    rejections: BTreeMap<u64, (Rejection, Option<Vec<u8>>)>,
    dedup: BTreeMap<(String, String), DedupEntry>,
    upstream: BTreeMap<(String, String), Earlier>,
    outbox: BTreeMap<u64, OutboxEntry>,
    outbox_pending: BTreeMap<u64, ()>,
    send_log: BTreeMap<(String, i64, u64), (u64, u64)>,
    events: BTreeMap<(u64, u64), TicketEvent>,
    notify_to: BTreeMap<(String, i64, u64), ()>,
    notify_on: BTreeMap<(u64, i64, u64), ()>,
}

impl MemoryTxn {
    /// A ticket's message ids, oldest first.
    pub fn ticket_message_ids(&self, ticket: u64) -> Vec<u64> {
        self.ticket_messages
            .range((ticket, 0)..=(ticket, u64::MAX))
            .map(|((_, m), _)| *m)
            .collect()
    }

    pub fn message(&self, id: u64) -> Option<StoredMessage> {
        self.messages.get(&id).map(|(m, _)| m.clone())
    }

    pub fn rejection_raw(&self, id: u64) -> Option<Vec<u8>> {
        self.rejections.get(&id).and_then(|(_, raw)| raw.clone())
    }

    pub fn attachment(&self, message: u64, index: u32) -> Option<Vec<u8>> {
        self.attachments.get(&(message, index)).cloned()
    }

    pub fn raw(&self, id: u64) -> Option<Vec<u8>> {
        self.messages.get(&id).map(|(_, raw)| raw.clone())
    }

    pub fn events(&self, ticket: u64) -> Vec<TicketEvent> {
        self.events
            .range((ticket, 0)..=(ticket, u64::MAX))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// (what, recipient, reason) of every suppression on a ticket.
    pub fn suppressions(&self, ticket: u64) -> Vec<(String, Option<String>, SuppressReason)> {
        suppressions_in(self.events(ticket))
    }

    pub fn pending_outbox(&self) -> Vec<u64> {
        self.outbox_pending.keys().copied().collect()
    }

    /// (at ms, bytes, recipients) sent by a mailbox.
    pub fn send_log(&self, mailbox: &str) -> Vec<(i64, u64, u64)> {
        self.send_log
            .iter()
            .filter(|((m, _, _), _)| m == mailbox)
            .map(|((_, at, _), (b, r))| (*at, *b, *r))
            .collect()
    }
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

impl TicketTxn for MemoryTxn {
    type Error = Infallible;

    fn counter(&self, counter: Counter) -> Result<Option<u64>, Infallible> {
        Ok(self.counters.get(&counter).copied())
    }
    fn set_counter(&mut self, counter: Counter, value: u64) -> Result<(), Infallible> {
        self.counters.insert(counter, value);
        Ok(())
    }
    fn ticket(&self, id: u64) -> Result<Option<Ticket>, Infallible> {
        Ok(self.tickets.get(&id).cloned())
    }
    fn ticket_by_number(&self, number: u64) -> Result<Option<u64>, Infallible> {
        Ok(self.numbers.get(&number).copied())
    }
    fn insert_ticket(&mut self, ticket: &Ticket) -> Result<(), Infallible> {
        self.numbers.insert(ticket.number, ticket.id);
        self.by_mailbox
            .insert((ticket.mailbox.clone(), ticket.id), ());
        self.tickets.insert(ticket.id, ticket.clone());
        Ok(())
    }
    fn update_ticket(&mut self, ticket: &Ticket) -> Result<(), Infallible> {
        self.tickets.insert(ticket.id, ticket.clone());
        Ok(())
    }
    fn thread_lookup(&self, mailbox: &str, id: &str) -> Result<Option<(u64, u64)>, Infallible> {
        Ok(self.message_ids.get(&key(mailbox, id)).copied())
    }
    fn index_message_id(
        &mut self,
        mailbox: &str,
        id: &str,
        message: u64,
        ticket: u64,
    ) -> Result<(), Infallible> {
        self.message_ids.insert(key(mailbox, id), (message, ticket));
        Ok(())
    }
    fn insert_message(&mut self, message: &StoredMessage, raw: &[u8]) -> Result<(), Infallible> {
        self.ticket_messages
            .insert((message.ticket_id, message.id), ());
        self.messages
            .insert(message.id, (message.clone(), raw.to_vec()));
        Ok(())
    }
    fn insert_attachment(
        &mut self,
        message: u64,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), Infallible> {
        self.attachments.insert((message, index), bytes.to_vec());
        Ok(())
    }
    fn insert_rejection(&mut self, r: &Rejection, raw: Option<&[u8]>) -> Result<(), Infallible> {
        self.rejections
            .insert(r.id, (r.clone(), raw.map(<[u8]>::to_vec)));
        Ok(())
    }
    fn rejection(&self, id: u64) -> Result<Option<Rejection>, Infallible> {
        Ok(self.rejections.get(&id).map(|(r, _)| r.clone()))
    }
    fn update_rejection(&mut self, r: &Rejection) -> Result<(), Infallible> {
        if let Some(entry) = self.rejections.get_mut(&r.id) {
            entry.0 = r.clone();
        }
        Ok(())
    }
    fn old_rejections(
        &self,
        cutoff: time::OffsetDateTime,
        max: usize,
    ) -> Result<Vec<u64>, Infallible> {
        Ok(self
            .rejections
            .values()
            .filter(|(r, _)| crate::parse_rfc3339(&r.received_at).is_some_and(|t| t < cutoff))
            .map(|(r, _)| r.id)
            .take(max)
            .collect())
    }
    fn delete_rejection(&mut self, id: u64) -> Result<(), Infallible> {
        self.rejections.remove(&id);
        Ok(())
    }
    fn dedup(&self, mailbox: &str, k: &str) -> Result<Option<DedupEntry>, Infallible> {
        Ok(self.dedup.get(&key(mailbox, k)).cloned())
    }
    fn put_dedup(&mut self, mailbox: &str, k: &str, entry: &DedupEntry) -> Result<(), Infallible> {
        self.dedup.insert(key(mailbox, k), entry.clone());
        Ok(())
    }
    fn delete_dedup(&mut self, mailbox: &str, k: &str) -> Result<(), Infallible> {
        self.dedup.remove(&key(mailbox, k));
        Ok(())
    }
    fn upstream(&self, mailbox: &str, k: &str) -> Result<Option<Earlier>, Infallible> {
        Ok(self.upstream.get(&key(mailbox, k)).copied())
    }
    fn put_upstream(&mut self, mailbox: &str, k: &str, earlier: Earlier) -> Result<(), Infallible> {
        self.upstream.insert(key(mailbox, k), earlier);
        Ok(())
    }
    fn message(&self, id: u64) -> Result<Option<StoredMessage>, Infallible> {
        Ok(self.messages.get(&id).map(|(m, _)| m.clone()))
    }
    fn mailbox_ticket_ids(&self, mailbox: &str, limit: usize) -> Result<Vec<u64>, Infallible> {
        let m = mailbox.to_string();
        Ok(self
            .by_mailbox
            .range((m.clone(), 0)..=(m, u64::MAX))
            .rev()
            .take(limit)
            .map(|((_, t), _)| *t)
            .collect())
    }
    fn latest_message_ids(&self, ticket: u64, limit: usize) -> Result<Vec<u64>, Infallible> {
        Ok(self
            .ticket_messages
            .range((ticket, 0)..=(ticket, u64::MAX))
            .rev()
            .take(limit)
            .map(|((_, m), _)| *m)
            .collect())
    }
    fn outbox(&self, id: u64) -> Result<Option<OutboxEntry>, Infallible> {
        Ok(self.outbox.get(&id).cloned())
    }
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), Infallible> {
        if entry.state.pending() {
            self.outbox_pending.insert(entry.id, ());
        } else {
            self.outbox_pending.remove(&entry.id);
        }
        self.outbox.insert(entry.id, entry.clone());
        Ok(())
    }
    fn insert_event(
        &mut self,
        ticket: u64,
        seq: u64,
        event: &TicketEvent,
    ) -> Result<(), Infallible> {
        self.events.insert((ticket, seq), event.clone());
        Ok(())
    }
    fn record_send(
        &mut self,
        mailbox: &str,
        at_ms: i64,
        id: u64,
        bytes: u64,
        recipients: u64,
    ) -> Result<(), Infallible> {
        self.send_log
            .insert((mailbox.to_string(), at_ms, id), (bytes, recipients));
        Ok(())
    }
    fn insert_unlisted(&mut self, m: &StoredMessage, raw: &[u8]) -> Result<(), Infallible> {
        self.messages.insert(m.id, (m.clone(), raw.to_vec()));
        Ok(())
    }
    fn record_notification(
        &mut self,
        recipient: &str,
        ticket: u64,
        at_ms: i64,
        id: u64,
    ) -> Result<(), Infallible> {
        self.notify_to
            .insert((recipient.to_string(), at_ms, id), ());
        self.notify_on.insert((ticket, at_ms, id), ());
        Ok(())
    }
    fn notifications_to(&self, recipient: &str, since_ms: i64) -> Result<u64, Infallible> {
        let r = recipient.to_string();
        Ok(self
            .notify_to
            .range((r.clone(), since_ms, 0)..=(r, i64::MAX, u64::MAX))
            .count() as u64)
    }
    fn notifications_on(&self, ticket: u64, since_ms: i64) -> Result<u64, Infallible> {
        let mut ids: Vec<u64> = self
            .notify_on
            .range((ticket, since_ms, 0)..=(ticket, i64::MAX, u64::MAX))
            .map(|((_, _, id), _)| *id)
            .collect();
        ids.dedup();
        Ok(ids.len() as u64)
    }
}

/// (what, recipient, reason) of the suppressions among `events`.
pub fn suppressions_in(events: Vec<TicketEvent>) -> Vec<(String, Option<String>, SuppressReason)> {
    events
        .into_iter()
        .filter_map(|e| match e.change {
            Change::NotificationSuppressed {
                notification,
                recipient,
                reason,
            } => Some((notification, recipient, reason)),
            _ => None,
        })
        .collect()
}
