//! The ticket rules' transaction interface over redb's tables: one
//! [`RedbTxn`] is the set of tables opened in one write transaction.

use redb::{Durability, ReadableTable, WriteTransaction};

use super::lazy_table::LazyTable;
use super::schema::*;
use super::{StoreError, decode, encode};
use super::{codec, index};
use crate::tickets::model::{Earlier, OutboxEntry, Rejection, StoredMessage, Ticket, TicketEvent};
use crate::tickets::txn::{Counter, DedupEntry, TicketTxn};

/// The tables of one write transaction, each opened when first used.
pub struct RedbTxn<'t> {
    counters: LazyTable<'t, &'static str, u64>,
    tickets: LazyTable<'t, u64, &'static [u8]>,
    numbers: LazyTable<'t, u64, u64>,
    by_mailbox: LazyTable<'t, (&'static str, u64), ()>,
    ticket_filters: LazyTable<'t, (&'static str, &'static str, &'static str, u64), ()>,
    rejections_by_reason: LazyTable<'t, (&'static str, u64), ()>,
    outbox_filters: LazyTable<'t, (&'static str, &'static str, u64), ()>,
    messages: LazyTable<'t, u64, &'static [u8]>,
    message_raw: LazyTable<'t, u64, &'static [u8]>,
    message_raw_packed: LazyTable<'t, u64, &'static [u8]>,
    attachments: LazyTable<'t, (u64, u32), &'static [u8]>,
    ticket_messages: LazyTable<'t, (u64, u64), ()>,
    message_ids: LazyTable<'t, (&'static str, &'static str), (u64, u64)>,
    dedup: LazyTable<'t, (&'static str, &'static str), &'static str>,
    rejections: LazyTable<'t, u64, &'static [u8]>,
    rejection_raw: LazyTable<'t, u64, &'static [u8]>,
    rejection_raw_packed: LazyTable<'t, u64, &'static [u8]>,
    upstream_seen: LazyTable<'t, (&'static str, &'static str), &'static str>,
    outbox: LazyTable<'t, u64, &'static [u8]>,
    outbox_pending: LazyTable<'t, u64, ()>,
    send_log: LazyTable<'t, (&'static str, i64, u64), (u64, u64)>,
    events: LazyTable<'t, (u64, u64), &'static [u8]>,
    notify_to: LazyTable<'t, (&'static str, i64, u64), ()>,
    notify_on: LazyTable<'t, (u64, i64, u64), ()>,
    /// Raw bytes of this batch's requests packed before the writer.
    prepacked: &'t [codec::Prepacked],
}

impl<'t> RedbTxn<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Self::open_with(txn, &[])
    }

    /// [`open`](Self::open), with raw bytes already packed by their callers.
    pub fn open_with(
        txn: &'t WriteTransaction,
        prepacked: &'t [codec::Prepacked],
    ) -> Result<Self, StoreError> {
        Ok(RedbTxn {
            prepacked,
            counters: LazyTable::new(txn, COUNTERS),
            tickets: LazyTable::new(txn, TICKETS),
            numbers: LazyTable::new(txn, TICKET_NUMBERS),
            by_mailbox: LazyTable::new(txn, TICKETS_BY_MAILBOX),
            ticket_filters: LazyTable::new(txn, TICKET_FILTERS),
            rejections_by_reason: LazyTable::new(txn, REJECTIONS_BY_REASON),
            outbox_filters: LazyTable::new(txn, OUTBOX_FILTERS),
            messages: LazyTable::new(txn, MESSAGES),
            message_raw: LazyTable::new(txn, MESSAGE_RAW),
            message_raw_packed: LazyTable::new(txn, MESSAGE_RAW_PACKED),
            attachments: LazyTable::new(txn, ATTACHMENTS),
            ticket_messages: LazyTable::new(txn, TICKET_MESSAGES),
            message_ids: LazyTable::new(txn, MESSAGE_IDS),
            dedup: LazyTable::new(txn, DEDUP),
            rejections: LazyTable::new(txn, REJECTIONS),
            rejection_raw: LazyTable::new(txn, REJECTION_RAW),
            rejection_raw_packed: LazyTable::new(txn, REJECTION_RAW_PACKED),
            upstream_seen: LazyTable::new(txn, UPSTREAM_SEEN),
            outbox: LazyTable::new(txn, OUTBOX),
            outbox_pending: LazyTable::new(txn, OUTBOX_PENDING),
            send_log: LazyTable::new(txn, SEND_LOG),
            events: LazyTable::new(txn, TICKET_EVENTS),
            notify_to: LazyTable::new(txn, NOTIFY_BY_RECIPIENT),
            notify_on: LazyTable::new(txn, NOTIFY_BY_TICKET),
        })
    }

    /// Raw mail into `message_raw_packed`, or, above [`codec::PACK_MAX`],
    /// as it is into `message_raw` (no copy of a large message).
    fn put_raw(&mut self, id: u64, raw: &[u8]) -> Result<(), StoreError> {
        if raw.len() > codec::PACK_MAX {
            self.message_raw.w()?.insert(id, raw)?;
            return Ok(());
        }
        match codec::Prepacked::find(self.prepacked, raw) {
            Some(packed) => self.message_raw_packed.w()?.insert(id, packed)?,
            None => self
                .message_raw_packed
                .w()?
                .insert(id, codec::pack_raw(raw).as_slice())?,
        };
        Ok(())
    }
}

impl TicketTxn for RedbTxn<'_> {
    type Error = StoreError;

    fn counter(&self, counter: Counter) -> Result<Option<u64>, StoreError> {
        Ok(self.counters.r()?.get(counter.as_str())?.map(|v| v.value()))
    }

    fn set_counter(&mut self, counter: Counter, value: u64) -> Result<(), StoreError> {
        self.counters.w()?.insert(counter.as_str(), value)?;
        Ok(())
    }

    fn ticket(&self, id: u64) -> Result<Option<Ticket>, StoreError> {
        match self.tickets.r()?.get(id)? {
            Some(v) => Ok(Some(decode("tickets", id, v.value())?)),
            None => Ok(None),
        }
    }

    fn ticket_by_number(&self, number: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.numbers.r()?.get(number)?.map(|v| v.value()))
    }

    fn insert_ticket(&mut self, ticket: &Ticket) -> Result<(), StoreError> {
        self.numbers.w()?.insert(ticket.number, ticket.id)?;
        self.by_mailbox
            .w()?
            .insert((ticket.mailbox.as_str(), ticket.id), ())?;
        self.update_ticket(ticket)
    }

    /// The one place a ticket record is written: its filter index rows
    /// follow what the record it replaces matched (see `store::index`).
    fn update_ticket(&mut self, ticket: &Ticket) -> Result<(), StoreError> {
        let old = match self
            .tickets
            .w()?
            .insert(ticket.id, encode(ticket).as_slice())?
        {
            Some(v) => Some(decode::<index::TicketKeys>(
                "tickets",
                ticket.id,
                v.value(),
            )?),
            None => None,
        };
        index::reindex_ticket(
            self.ticket_filters.w()?,
            ticket.id,
            old.as_ref(),
            (&ticket.mailbox, ticket.status, &ticket.categories),
        )
    }

    fn thread_lookup(&self, mailbox: &str, id: &str) -> Result<Option<(u64, u64)>, StoreError> {
        Ok(self.message_ids.r()?.get((mailbox, id))?.map(|v| v.value()))
    }

    fn index_message_id(
        &mut self,
        mailbox: &str,
        id: &str,
        message: u64,
        ticket: u64,
    ) -> Result<(), StoreError> {
        self.message_ids
            .w()?
            .insert((mailbox, id), (message, ticket))?;
        Ok(())
    }

    fn insert_message(&mut self, message: &StoredMessage, raw: &[u8]) -> Result<(), StoreError> {
        self.messages
            .w()?
            .insert(message.id, encode(message).as_slice())?;
        self.put_raw(message.id, raw)?;
        self.ticket_messages
            .w()?
            .insert((message.ticket_id, message.id), ())?;
        Ok(())
    }

    fn insert_attachment(
        &mut self,
        message: u64,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.attachments.w()?.insert((message, index), bytes)?;
        Ok(())
    }

    fn insert_rejection(&mut self, r: &Rejection, raw: Option<&[u8]>) -> Result<(), StoreError> {
        self.rejections.w()?.insert(r.id, encode(r).as_slice())?;
        self.rejections_by_reason
            .w()?
            .insert((r.reason.as_str(), r.id), ())?;
        if let Some(raw) = raw.filter(|raw| raw.len() > codec::PACK_MAX) {
            self.rejection_raw.w()?.insert(r.id, raw)?;
        } else if let Some(raw) = raw {
            self.rejection_raw_packed
                .w()?
                .insert(r.id, codec::pack_raw(raw).as_slice())?;
        }
        Ok(())
    }

    fn rejection(&self, id: u64) -> Result<Option<Rejection>, StoreError> {
        match self.rejections.r()?.get(id)? {
            Some(v) => Ok(Some(super::decode("rejections", id, v.value())?)),
            None => Ok(None),
        }
    }

    fn update_rejection(&mut self, r: &Rejection) -> Result<(), StoreError> {
        self.rejections.w()?.insert(r.id, encode(r).as_slice())?;
        Ok(())
    }

    fn old_rejections(
        &self,
        cutoff: time::OffsetDateTime,
        max: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for entry in self.rejections.r()?.iter()? {
            let (id, v) = entry?;
            let r: Rejection = super::decode("rejections", id.value(), v.value())?;
            if crate::parse_rfc3339(&r.received_at).is_some_and(|t| t < cutoff) {
                out.push(r.id);
                if out.len() == max {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn delete_rejection(&mut self, id: u64) -> Result<(), StoreError> {
        let reason = match self.rejections.w()?.remove(id)? {
            Some(v) => super::decode::<Rejection>("rejections", id, v.value())?.reason,
            None => return Ok(()),
        };
        self.rejections_by_reason
            .w()?
            .remove((reason.as_str(), id))?;
        self.rejection_raw.w()?.remove(id)?;
        self.rejection_raw_packed.w()?.remove(id)?;
        Ok(())
    }

    fn dedup(&self, mailbox: &str, key: &str) -> Result<Option<DedupEntry>, StoreError> {
        Ok(self
            .dedup
            .r()?
            .get((mailbox, key))?
            .and_then(|v| DedupEntry::decode(v.value())))
    }

    fn put_dedup(
        &mut self,
        mailbox: &str,
        key: &str,
        entry: &DedupEntry,
    ) -> Result<(), StoreError> {
        self.dedup
            .w()?
            .insert((mailbox, key), entry.encode().as_str())?;
        Ok(())
    }

    fn delete_dedup(&mut self, mailbox: &str, key: &str) -> Result<(), StoreError> {
        self.dedup.w()?.remove((mailbox, key))?;
        Ok(())
    }

    fn upstream(&self, mailbox: &str, key: &str) -> Result<Option<Earlier>, StoreError> {
        Ok(self
            .upstream_seen
            .r()?
            .get((mailbox, key))?
            .and_then(|v| Earlier::decode(v.value())))
    }

    fn put_upstream(
        &mut self,
        mailbox: &str,
        key: &str,
        earlier: Earlier,
    ) -> Result<(), StoreError> {
        self.upstream_seen
            .w()?
            .insert((mailbox, key), earlier.encode().as_str())?;
        Ok(())
    }

    fn message(&self, id: u64) -> Result<Option<StoredMessage>, StoreError> {
        match self.messages.r()?.get(id)? {
            Some(v) => Ok(Some(decode("messages", id, v.value())?)),
            None => Ok(None),
        }
    }

    fn mailbox_ticket_ids(&self, mailbox: &str, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .by_mailbox
            .r()?
            .range((mailbox, 0)..=(mailbox, u64::MAX))?
            .rev()
            .take(limit)
        {
            out.push(entry?.0.value().1);
        }
        Ok(out)
    }

    fn latest_message_ids(&self, ticket: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for entry in self
            .ticket_messages
            .r()?
            .range((ticket, 0)..=(ticket, u64::MAX))?
            .rev()
            .take(limit)
        {
            out.push(entry?.0.value().1);
        }
        Ok(out)
    }

    fn outbox(&self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        match self.outbox.r()?.get(id)? {
            Some(v) => Ok(Some(decode("outbox", id, v.value())?)),
            None => Ok(None),
        }
    }

    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        let old = match self
            .outbox
            .w()?
            .insert(entry.id, encode(entry).as_slice())?
        {
            Some(v) => Some(decode::<index::OutboxKeys>("outbox", entry.id, v.value())?),
            None => None,
        };
        index::reindex_outbox(
            self.outbox_filters.w()?,
            entry.id,
            old.as_ref(),
            (entry.account.as_deref(), entry.state),
        )?;
        if entry.state.pending() {
            self.outbox_pending.w()?.insert(entry.id, ())?;
        } else {
            self.outbox_pending.w()?.remove(entry.id)?;
        }
        Ok(())
    }

    fn insert_event(
        &mut self,
        ticket: u64,
        seq: u64,
        event: &TicketEvent,
    ) -> Result<(), StoreError> {
        self.events
            .w()?
            .insert((ticket, seq), encode(event).as_slice())?;
        Ok(())
    }

    fn record_send(
        &mut self,
        mailbox: &str,
        at_ms: i64,
        id: u64,
        bytes: u64,
        recipients: u64,
    ) -> Result<(), StoreError> {
        self.send_log
            .w()?
            .insert((mailbox, at_ms, id), (bytes, recipients))?;
        Ok(())
    }

    fn insert_unlisted(&mut self, m: &StoredMessage, raw: &[u8]) -> Result<(), StoreError> {
        self.messages.w()?.insert(m.id, encode(m).as_slice())?;
        self.put_raw(m.id, raw)?;
        Ok(())
    }

    fn record_notification(
        &mut self,
        recipient: &str,
        ticket: u64,
        at_ms: i64,
        id: u64,
    ) -> Result<(), StoreError> {
        self.notify_to.w()?.insert((recipient, at_ms, id), ())?;
        self.notify_on.w()?.insert((ticket, at_ms, id), ())?;
        Ok(())
    }

    fn notifications_to(&self, recipient: &str, since_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for entry in self
            .notify_to
            .r()?
            .range((recipient, since_ms, 0)..=(recipient, i64::MAX, u64::MAX))?
        {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    fn notifications_on(&self, ticket: u64, since_ms: i64) -> Result<u64, StoreError> {
        let mut last = None;
        let mut n = 0;
        for entry in self
            .notify_on
            .r()?
            .range((ticket, since_ms, 0)..=(ticket, i64::MAX, u64::MAX))?
        {
            let id = entry?.0.value().2;
            if last != Some(id) {
                n += 1;
                last = Some(id);
            }
        }
        Ok(n)
    }
}

impl super::commit::Backend for super::Store {
    fn apply_batch(
        &self,
        settings: &crate::tickets::TicketSettings,
        requests: &[&crate::tickets::Operation],
    ) -> Result<Vec<crate::tickets::OpOutcome>, StoreError> {
        self.apply_prepacked(settings, requests, &[])
    }

    fn apply_prepacked(
        &self,
        settings: &crate::tickets::TicketSettings,
        requests: &[&crate::tickets::Operation],
        prepacked: &[codec::Prepacked],
    ) -> Result<Vec<crate::tickets::OpOutcome>, StoreError> {
        // A replayed journal entry records its number with what it made.
        let replayed = requests
            .iter()
            .filter_map(|r| match r {
                crate::tickets::Operation::Ingest(c) => match c.journal {
                    crate::tickets::Journaling::Replayed(seq) => Some(seq),
                    _ => None,
                },
                _ => None,
            })
            .max();
        self.apply_in_txn(
            settings,
            requests,
            prepacked,
            replayed,
            Durability::Immediate,
        )
    }

    fn apply_journaled(
        &self,
        settings: &crate::tickets::TicketSettings,
        requests: &[&crate::tickets::Operation],
        prepacked: &[codec::Prepacked],
        last_seq: u64,
    ) -> Result<Vec<crate::tickets::OpOutcome>, StoreError> {
        self.apply_in_txn(
            settings,
            requests,
            prepacked,
            Some(last_seq),
            Durability::None,
        )
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let txn = self.db().begin_write()?;
        // Nothing to change: a durable commit carries every non-durable
        // one before it to disk.
        txn.commit()?;
        tracing::debug!(
            us = started.elapsed().as_micros() as u64,
            "store checkpoint committed"
        );
        Ok(())
    }

    fn journal_state(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db().begin_write()?;
        let state = {
            let mut meta = txn.open_table(super::schema::META)?;
            let applied = meta.get(JOURNAL_KEY)?.map(|v| v.value()).unwrap_or(0);
            let id = meta.get(JOURNAL_ID_KEY)?.map(|v| v.value());
            let id = match id {
                Some(id) => id,
                None => {
                    let mut bytes = [0u8; 8];
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                        .map_err(|_| StoreError::Failed("no random journal id".into()))?;
                    let id = u64::from_le_bytes(bytes);
                    meta.insert(JOURNAL_ID_KEY, id)?;
                    id
                }
            };
            (id, applied)
        };
        txn.commit()?;
        Ok(state)
    }
}

/// META's key for the last commit-journal entry the store holds.
const JOURNAL_KEY: &str = "journal_applied";
/// META's key for the id that ties a journal file to this database.
const JOURNAL_ID_KEY: &str = "journal_id";

impl super::Store {
    /// One write transaction for the batch, with `durability`; records
    /// `journal_seq` (when given, and higher than before) in META with it.
    fn apply_in_txn(
        &self,
        settings: &crate::tickets::TicketSettings,
        requests: &[&crate::tickets::Operation],
        prepacked: &[codec::Prepacked],
        journal_seq: Option<u64>,
        durability: Durability,
    ) -> Result<Vec<crate::tickets::OpOutcome>, StoreError> {
        let started = std::time::Instant::now();
        let mut txn = self.db().begin_write()?;
        txn.set_durability(durability)
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        let mut all = Vec::with_capacity(requests.len());
        {
            let mut tables = RedbTxn::open_with(&txn, prepacked)?;
            for request in requests {
                all.push(crate::tickets::apply_op(&mut tables, settings, request)?);
            }
        }
        if let Some(seq) = journal_seq {
            let mut meta = txn.open_table(super::schema::META)?;
            let before = meta.get(JOURNAL_KEY)?.map(|v| v.value()).unwrap_or(0);
            if seq > before {
                meta.insert(JOURNAL_KEY, seq)?;
            }
        }
        let applied = started.elapsed();
        txn.commit()?;
        tracing::debug!(
            requests = requests.len(),
            durable = matches!(durability, Durability::Immediate),
            apply_us = applied.as_micros() as u64,
            commit_us = (started.elapsed() - applied).as_micros() as u64,
            "store transaction committed"
        );
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::commit::Backend;
    use crate::tickets::model::{OutboxEntry, Outcome, StoredMessage, Ticket};
    use crate::tickets::suite::{Harness, ticket_rules_suite};
    use crate::tickets::{OpOutcome, Operation};

    /// A redb file in a temporary directory, one write transaction per batch.
    struct Redb {
        _dir: tempfile::TempDir,
        store: Store,
    }

    fn redb() -> Redb {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        Redb { _dir: dir, store }
    }

    impl Harness for Redb {
        fn apply_with(
            &mut self,
            settings: &crate::tickets::TicketSettings,
            ops: &[Operation],
        ) -> Vec<OpOutcome> {
            let refs: Vec<&Operation> = ops.iter().collect();
            self.store.apply_batch(settings, &refs).unwrap()
        }
        fn outbox(&self, id: u64) -> Option<OutboxEntry> {
            self.store.outbox(id).unwrap()
        }
        fn pending_outbox(&self) -> Vec<u64> {
            let pending = self.store.pending_outbox(1000).unwrap();
            pending.iter().map(|e| e.id).collect()
        }
        fn send_log(&self, mailbox: &str) -> Vec<(i64, u64, u64)> {
            self.store.send_log(mailbox, 0).unwrap()
        }
        fn raw(&self, id: u64) -> Option<Vec<u8>> {
            self.store.message_raw(id).unwrap()
        }
        fn events(&self, ticket: u64) -> Vec<crate::tickets::model::TicketEvent> {
            self.store.ticket_events(ticket).unwrap()
        }
        fn ticket(&self, id: u64) -> Option<Ticket> {
            self.store.ticket(id).unwrap()
        }
        fn ticket_message_ids(&self, ticket: u64) -> Vec<u64> {
            let messages = self.store.ticket_messages(ticket).unwrap();
            messages.iter().map(|m| m.id).collect()
        }
        fn message(&self, id: u64) -> Option<StoredMessage> {
            self.store.message(id).unwrap()
        }
        fn rejection_raw(&self, id: u64) -> Option<Vec<u8>> {
            self.store.rejection_raw(id).unwrap()
        }
        fn rejection(&self, id: u64) -> Option<crate::tickets::model::Rejection> {
            self.store.rejection(id).unwrap()
        }
        fn attachment(&self, message: u64, index: u32) -> Option<Vec<u8>> {
            self.store.attachment(message, index).unwrap()
        }
    }

    ticket_rules_suite!(redb());

    #[test]
    fn entries_written_before_fingerprints_still_deduplicate() {
        use crate::tickets::suite::{mail, request};
        let h = &mut redb();
        let m = mail("a@x.test", Some("old@x"), "s");
        let first = h.one(request(&m));
        // What an older version wrote: the earlier record without a fingerprint.
        let txn = h.store.db().begin_write().unwrap();
        {
            let mut dedup = txn.open_table(crate::store::schema::DEDUP).unwrap();
            dedup.insert(("support", "id:old@x"), "m:1").unwrap();
        }
        txn.commit().unwrap();
        let other = mail("b@x.test", Some("old@x"), "t").text("other");
        assert_eq!(h.one(request(&other)), Outcome::Duplicate(first.earlier()));
    }

    #[test]
    fn raw_mail_written_before_packing_still_reads_and_new_mail_is_packed() {
        use crate::store::schema::{MESSAGE_RAW, MESSAGE_RAW_PACKED, REJECTION_RAW};
        use crate::tickets::suite::{mail, request};
        use redb::ReadableDatabase;
        let h = &mut redb();
        let old_raw: &[u8] = b"Subject: old\r\n\r\nwritten before raw packing\r\n";
        // What an older version wrote: unmarked bytes in the old tables.
        let txn = h.store.db().begin_write().unwrap();
        {
            txn.open_table(MESSAGE_RAW)
                .unwrap()
                .insert(900, old_raw)
                .unwrap();
            txn.open_table(REJECTION_RAW)
                .unwrap()
                .insert(900, old_raw)
                .unwrap();
        }
        txn.commit().unwrap();
        assert_eq!(h.store.message_raw(900).unwrap().as_deref(), Some(old_raw));
        assert_eq!(
            h.store.rejection_raw(900).unwrap().as_deref(),
            Some(old_raw)
        );

        const TEXT: &str = "It smokes again and again. It smokes again and again. \
            It smokes again and again. It smokes again and again. It smokes again.";
        let m = mail("a@x.test", Some("new@x"), "printer").text(TEXT);
        let req = request(&m);
        let sent = req.raw.to_vec();
        let crate::tickets::model::Earlier::Message(id) = h.one(req).earlier() else {
            panic!("not stored");
        };
        let raw = h.store.message_raw(id).unwrap().unwrap();
        assert_eq!(raw, sent);
        let txn = h.store.db().begin_read().unwrap();
        let packed = txn.open_table(MESSAGE_RAW_PACKED).unwrap();
        let stored = packed.get(id).unwrap().unwrap().value().to_vec();
        assert_eq!(stored[0], crate::store::codec::RAW_ZSTD_V1);
        assert!(
            stored.len() < raw.len() / 2,
            "{} of {}",
            stored.len(),
            raw.len()
        );
        assert!(
            txn.open_table(MESSAGE_RAW)
                .unwrap()
                .get(id)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_notification_caps_survive_a_restart() {
        use crate::tickets::suite::{mail, notices, notify_settings, request, suppressions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let s = notify_settings(|ns| ns.config.per_ticket_limit = 0);
        for subject in ["a", "b", "c"] {
            let mut h = Redb {
                _dir: tempfile::tempdir().unwrap(),
                store: Store::open(&path).unwrap(),
            };
            h.apply_with(
                &s,
                &[Operation::Ingest(request(&mail(
                    "ann@customer.test",
                    None,
                    subject,
                )))],
            );
        }
        let mut h = Redb {
            _dir: dir,
            store: Store::open(&path).unwrap(),
        };
        h.apply_with(
            &s,
            &[Operation::Ingest(request(&mail(
                "ann@customer.test",
                None,
                "d",
            )))],
        );
        let acks = notices(&h)
            .iter()
            .filter(|n| n.name == "acknowledgement")
            .count();
        assert_eq!(acks, 3);
        assert_eq!(
            suppressions(&h, 4)[0].2,
            crate::tickets::model::SuppressReason::RecipientLimit
        );
    }
}
