//! Read side: listing and fetching records for the API, from redb snapshots.
//!
//! Paging is by id, newest first: the cursor is the last id returned, so a
//! page stays stable while new mail arrives.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::schema::*;
use super::{Store, StoreError, decode};
use crate::tickets::model::{Rejection, StoredMessage, Ticket};

/// One page of results and the cursor for the next, if any.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub mailbox: Option<String>,
    pub status: Option<String>,
    pub category: Option<String>,
}

impl Store {
    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db().begin_read()?)
    }

    /// Tickets newest first, ids below `before` when given.
    pub fn list_tickets(
        &self,
        filter: &TicketFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Ticket>, StoreError> {
        let txn = self.read()?;
        let tickets = txn.open_table(TICKETS)?;
        let upper = before.unwrap_or(u64::MAX);
        let mut items = Vec::new();
        let mut next = None;
        let mut take = |ticket: Ticket, items: &mut Vec<Ticket>| -> bool {
            if filter
                .status
                .as_ref()
                .is_some_and(|s| s != ticket.status.as_str())
            {
                return true;
            }
            if filter
                .category
                .as_ref()
                .is_some_and(|c| !ticket.categories.contains(c))
            {
                return true;
            }
            if items.len() == limit {
                next = items.last().map(|t: &Ticket| t.id);
                return false;
            }
            items.push(ticket);
            true
        };
        match &filter.mailbox {
            Some(mailbox) => {
                let index = txn.open_table(TICKETS_BY_MAILBOX)?;
                for entry in index
                    .range((mailbox.as_str(), 0)..(mailbox.as_str(), upper))?
                    .rev()
                {
                    let (key, _) = entry?;
                    let id = key.value().1;
                    let Some(v) = tickets.get(id)? else { continue };
                    if !take(decode("tickets", id, v.value())?, &mut items) {
                        break;
                    }
                }
            }
            None => {
                for entry in tickets.range(..upper)?.rev() {
                    let (k, v) = entry?;
                    if !take(decode("tickets", k.value(), v.value())?, &mut items) {
                        break;
                    }
                }
            }
        }
        Ok(Page { items, next })
    }

    pub fn ticket(&self, id: u64) -> Result<Option<Ticket>, StoreError> {
        let txn = self.read()?;
        let tickets = txn.open_table(TICKETS)?;
        match tickets.get(id)? {
            Some(v) => Ok(Some(decode("tickets", id, v.value())?)),
            None => Ok(None),
        }
    }

    /// A ticket's messages, oldest first.
    pub fn ticket_messages(&self, ticket_id: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let txn = self.read()?;
        let index = txn.open_table(TICKET_MESSAGES)?;
        let messages = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for entry in index.range((ticket_id, 0)..=(ticket_id, u64::MAX))? {
            let (key, _) = entry?;
            let id = key.value().1;
            if let Some(v) = messages.get(id)? {
                out.push(decode("messages", id, v.value())?);
            }
        }
        Ok(out)
    }

    pub fn message(&self, id: u64) -> Result<Option<StoredMessage>, StoreError> {
        let txn = self.read()?;
        let messages = txn.open_table(MESSAGES)?;
        match messages.get(id)? {
            Some(v) => Ok(Some(decode("messages", id, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn message_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let raw = txn.open_table(MESSAGE_RAW)?;
        Ok(raw.get(id)?.map(|v| v.value().to_vec()))
    }

    pub fn attachment(&self, message_id: u64, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(ATTACHMENTS)?;
        Ok(table.get((message_id, index))?.map(|v| v.value().to_vec()))
    }

    /// Rejections newest first, optionally of one reason.
    pub fn list_rejections(
        &self,
        reason: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Rejection>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(REJECTIONS)?;
        let mut items: Vec<Rejection> = Vec::new();
        let mut next = None;
        for entry in table.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (k, v) = entry?;
            let rejection: Rejection = decode("rejections", k.value(), v.value())?;
            if reason.is_some_and(|r| r != rejection.reason.as_str()) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|r| r.id);
                break;
            }
            items.push(rejection);
        }
        Ok(Page { items, next })
    }

    pub fn rejection(&self, id: u64) -> Result<Option<Rejection>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(REJECTIONS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(decode("rejections", id, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn rejection_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let raw = txn.open_table(REJECTION_RAW)?;
        Ok(raw.get(id)?.map(|v| v.value().to_vec()))
    }
}

/// The outbox: what the send worker and the API read.
impl Store {
    pub fn outbox(
        &self,
        id: u64,
    ) -> Result<Option<crate::tickets::model::OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(OUTBOX)?;
        match table.get(id)? {
            Some(v) => Ok(Some(decode("outbox", id, v.value())?)),
            None => Ok(None),
        }
    }

    /// Entries still to send, oldest first, at most `limit`.
    pub fn pending_outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::tickets::model::OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let pending = txn.open_table(OUTBOX_PENDING)?;
        let table = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in pending.iter()?.take(limit) {
            let id = entry?.0.value();
            if let Some(v) = table.get(id)? {
                out.push(decode("outbox", id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Outbox entries newest first, optionally in one state and of one
    /// submission account.
    pub fn list_outbox(
        &self,
        state: Option<crate::tickets::model::DeliveryState>,
        account: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<crate::tickets::model::OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut items: Vec<crate::tickets::model::OutboxEntry> = Vec::new();
        let mut next = None;
        for entry in table.range(..before.unwrap_or(u64::MAX))?.rev() {
            let (k, v) = entry?;
            let e: crate::tickets::model::OutboxEntry = decode("outbox", k.value(), v.value())?;
            if state.is_some_and(|s| s != e.state)
                || account.is_some_and(|a| e.account.as_deref() != Some(a))
            {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|e| e.id);
                break;
            }
            items.push(e);
        }
        Ok(Page { items, next })
    }

    /// What a mailbox handed to the relay since `since_ms`: (at ms, bytes,
    /// recipients), oldest first.
    pub fn send_log(
        &self,
        mailbox: &str,
        since_ms: i64,
    ) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(SEND_LOG)?;
        let mut out = Vec::new();
        for entry in table.range((mailbox, since_ms, 0)..=(mailbox, i64::MAX, u64::MAX))? {
            let (k, v) = entry?;
            let (_, at, _) = k.value();
            let (bytes, rcpts) = v.value();
            out.push((at, bytes, rcpts));
        }
        Ok(out)
    }
}

impl Store {
    /// A ticket's history, oldest first.
    pub fn ticket_events(
        &self,
        ticket: u64,
    ) -> Result<Vec<crate::tickets::model::TicketEvent>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(TICKET_EVENTS)?;
        let mut out = Vec::new();
        for entry in table.range((ticket, 0)..=(ticket, u64::MAX))? {
            let (k, v) = entry?;
            out.push(decode("ticket_events", k.value().1, v.value())?);
        }
        Ok(out)
    }
}

impl Store {
    /// The notifications sent (or queued) on a ticket, oldest first: the
    /// message records (not among the ticket's messages).
    pub fn ticket_notifications(&self, ticket: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let txn = self.read()?;
        let index = txn.open_table(NOTIFY_BY_TICKET)?;
        let messages = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for entry in index.range((ticket, i64::MIN, 0)..=(ticket, i64::MAX, u64::MAX))? {
            let id = entry?.0.value().2;
            if let Some(v) = messages.get(id)? {
                out.push(decode("messages", id, v.value())?);
            }
        }
        Ok(out)
    }
}
