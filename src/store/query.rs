//! Read side: listing and fetching records for the API, from redb snapshots.
//!
//! Paging is by id, newest first: the cursor is the last id returned, so a
//! page stays stable while new mail arrives.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::schema::*;
use super::{Store, StoreError, decode, unpack_raw};
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

/// Up to `limit` records of `ids` (newest first), and the cursor for the
/// next page when there is one more: reads `limit + 1` ids at most.
fn page<T>(
    ids: impl Iterator<Item = Result<u64, StoreError>>,
    limit: usize,
    get: impl Fn(u64) -> Result<Option<T>, StoreError>,
    id_of: impl Fn(&T) -> u64,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::new();
    let mut next = None;
    for id in ids {
        let id = id?;
        if items.len() == limit {
            next = items.last().map(&id_of);
            break;
        }
        if let Some(item) = get(id)? {
            items.push(item);
        }
    }
    Ok(Page { items, next })
}

impl Store {
    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db().begin_read()?)
    }

    /// Tickets newest first, ids below `before` when given. Every filter
    /// combination is one seek into an index (see [`super::index`]): a page
    /// reads `limit + 1` index rows and `limit` records, at any depth.
    pub fn list_tickets(
        &self,
        filter: &TicketFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Ticket>, StoreError> {
        let txn = self.read()?;
        let tickets = txn.open_table(TICKETS)?;
        let upper = before.unwrap_or(u64::MAX);
        let get = |id: u64| -> Result<Option<Ticket>, StoreError> {
            match tickets.get(id)? {
                Some(v) => Ok(Some(decode("tickets", id, v.value())?)),
                None => Ok(None),
            }
        };
        let prefix = super::index::ticket_prefix(
            filter.mailbox.as_deref(),
            filter.status.as_deref(),
            filter.category.as_deref(),
        );
        match (prefix, &filter.mailbox) {
            (Some((m, s, c)), _) => {
                let index = txn.open_table(TICKET_FILTERS)?;
                let ids = index
                    .range((m, s, c, 0)..(m, s, c, upper))?
                    .rev()
                    .map(|e| Ok::<_, StoreError>(e?.0.value().3));
                page(ids, limit, get, |t| t.id)
            }
            (None, Some(mailbox)) => {
                let index = txn.open_table(TICKETS_BY_MAILBOX)?;
                let ids = index
                    .range((mailbox.as_str(), 0)..(mailbox.as_str(), upper))?
                    .rev()
                    .map(|e| Ok(e?.0.value().1));
                page(ids, limit, get, |t| t.id)
            }
            (None, None) => {
                let ids = tickets.range(..upper)?.rev().map(|e| Ok(e?.0.value()));
                page(ids, limit, get, |t| t.id)
            }
        }
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
        if let Some(v) = txn.open_table(MESSAGE_RAW_PACKED)?.get(id)? {
            return Ok(Some(unpack_raw("message_raw_packed", id, v.value())?));
        }
        let raw = txn.open_table(MESSAGE_RAW)?;
        Ok(raw.get(id)?.map(|v| v.value().to_vec()))
    }

    pub fn attachment(&self, message_id: u64, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(ATTACHMENTS)?;
        Ok(table.get((message_id, index))?.map(|v| v.value().to_vec()))
    }

    /// Rejections newest first, optionally of one reason (an index seek).
    pub fn list_rejections(
        &self,
        reason: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Rejection>, StoreError> {
        self.list_rejections_since(reason, None, before, limit)
    }

    /// [`Self::list_rejections`], only those received at or after `since`.
    /// Ids follow commit order, not `received_at` (a replay keeps the time
    /// its message arrived), so `since` filters while the page is read:
    /// a page reads records until it has `limit` matches, over at most the
    /// rejections kept (`tickets.rejection_retention` bounds them).
    pub fn list_rejections_since(
        &self,
        reason: Option<&str>,
        since: Option<time::OffsetDateTime>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<Rejection>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(REJECTIONS)?;
        let upper = before.unwrap_or(u64::MAX);
        let get = |id: u64| -> Result<Option<Rejection>, StoreError> {
            let Some(v) = table.get(id)? else {
                return Ok(None);
            };
            let r: Rejection = decode("rejections", id, v.value())?;
            Ok(match since {
                Some(t) if crate::parse_rfc3339(&r.received_at).is_some_and(|at| at < t) => None,
                _ => Some(r),
            })
        };
        match reason {
            Some(r) => {
                let index = txn.open_table(REJECTIONS_BY_REASON)?;
                let ids = index
                    .range((r, 0)..(r, upper))?
                    .rev()
                    .map(|e| Ok(e?.0.value().1));
                page(ids, limit, get, |r| r.id)
            }
            None => {
                let ids = table.range(..upper)?.rev().map(|e| Ok(e?.0.value()));
                page(ids, limit, get, |r| r.id)
            }
        }
    }

    pub fn rejection(&self, id: u64) -> Result<Option<Rejection>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(REJECTIONS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(decode("rejections", id, v.value())?)),
            None => Ok(None),
        }
    }

    /// The rejection with the lowest id (the oldest committed), if any.
    pub fn oldest_rejection(&self) -> Result<Option<Rejection>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(REJECTIONS)?;
        match table.first()? {
            Some((k, v)) => Ok(Some(decode("rejections", k.value(), v.value())?)),
            None => Ok(None),
        }
    }

    pub fn rejection_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read()?;
        if let Some(v) = txn.open_table(REJECTION_RAW_PACKED)?.get(id)? {
            return Ok(Some(unpack_raw("rejection_raw_packed", id, v.value())?));
        }
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
    /// submission account (an index seek for either or both).
    pub fn list_outbox(
        &self,
        state: Option<crate::tickets::model::DeliveryState>,
        account: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<crate::tickets::model::OutboxEntry>, StoreError> {
        let txn = self.read()?;
        let table = txn.open_table(OUTBOX)?;
        let upper = before.unwrap_or(u64::MAX);
        let get = |id: u64| -> Result<Option<crate::tickets::model::OutboxEntry>, StoreError> {
            match table.get(id)? {
                Some(v) => Ok(Some(decode("outbox", id, v.value())?)),
                None => Ok(None),
            }
        };
        match super::index::outbox_prefix(account, state) {
            Some((a, s)) => {
                let index = txn.open_table(OUTBOX_FILTERS)?;
                let ids = index
                    .range((a, s, 0)..(a, s, upper))?
                    .rev()
                    .map(|e| Ok(e?.0.value().2));
                page(ids, limit, get, |e| e.id)
            }
            None => {
                let ids = table.range(..upper)?.rev().map(|e| Ok(e?.0.value()));
                page(ids, limit, get, |e| e.id)
            }
        }
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
