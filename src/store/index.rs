//! Secondary indexes: so that every filtered list of the API is a seek into
//! one table plus one page of reads, whatever the size of the store.
//!
//! What the rows are, kept in step with their records inside the same write
//! transaction (see `redb_txn`), and the one-time build for a store written
//! before they existed ([`ensure`], run by `Store::open`).
//!
//! Tickets: one table keyed `(mailbox | "", status | "", category | "", id)`
//! holding a row for every combination of filters a ticket matches that
//! names a status or a category (the mailbox alone is `TICKETS_BY_MAILBOX`).
//! A ticket with k categories has 3 + 4k rows of a few dozen bytes. Every
//! filter combination of `GET /api/v1/tickets` is then an exact prefix: no
//! row read is filtered away, so a page costs `limit` reads at any depth and
//! at any selectivity. The alternative, seeking the most selective single
//! index and filtering the rest, degrades to a scan when the combination is
//! rare but its parts are common (the open tickets of a small mailbox);
//! intersecting two index streams has the same worst case.
//!
//! Rejections: `(reason, id)`. Outbox: `(account | "", state | "", id)` for
//! the three combinations of `?account=` and `?state=` (an entry without an
//! account only has its state row).

use std::collections::BTreeSet;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableHandle};
use serde::Deserialize;

use super::StoreError;
use super::schema::*;
use crate::tickets::model::{DeliveryState, TicketStatus};

/// The layout version this build writes: 1 is every store before versions
/// (no META table), 2 added the filter indexes, 3 compressed values
/// (`store::codec`; older values still read, nothing is rewritten).
pub const SCHEMA_VERSION: u64 = 3;
/// The first version with today's filter indexes: older stores get them built.
const INDEX_VERSION: u64 = 2;
const SCHEMA_KEY: &str = "schema";
/// Records indexed per write transaction while building an index.
const BUILD_CHUNK: usize = 20_000;

/// The fields of a ticket its index rows come from; decoded alone from the
/// stored JSON (the rest is skipped) when a ticket is rewritten.
#[derive(Debug, Deserialize)]
pub struct TicketKeys {
    pub mailbox: String,
    pub status: TicketStatus,
    #[serde(default)]
    pub categories: Vec<String>,
}

type TicketRow<'a> = (&'a str, &'a str, &'a str);

/// Every filter combination naming a status or a category that the ticket
/// matches. Empty category keys are left out: "" means "any" in a row.
pub fn ticket_rows<'a>(
    mailbox: &'a str,
    status: TicketStatus,
    categories: &'a [String],
) -> BTreeSet<TicketRow<'a>> {
    let s = status.as_str();
    let mut rows = BTreeSet::from([("", s, ""), (mailbox, s, "")]);
    for c in categories
        .iter()
        .map(String::as_str)
        .filter(|c| !c.is_empty())
    {
        rows.extend([("", "", c), (mailbox, "", c), ("", s, c), (mailbox, s, c)]);
    }
    rows
}

/// The prefix a filter seeks: None when it names neither a status nor a
/// category (listed from `TICKETS` or `TICKETS_BY_MAILBOX`).
pub fn ticket_prefix<'a>(
    mailbox: Option<&'a str>,
    status: Option<&'a str>,
    category: Option<&'a str>,
) -> Option<TicketRow<'a>> {
    if status.is_none() && category.is_none() {
        return None;
    }
    Some((
        mailbox.unwrap_or(""),
        status.unwrap_or(""),
        category.unwrap_or(""),
    ))
}

/// Brings a ticket's rows from what `old` (its stored JSON, None for a new
/// ticket) matched to what `new` matches: removes the rows it left, inserts
/// the ones it joined, touches nothing when the keys did not change.
pub fn reindex_ticket(
    table: &mut Table<'_, (&'static str, &'static str, &'static str, u64), ()>,
    id: u64,
    old: Option<&TicketKeys>,
    new: (&str, TicketStatus, &[String]),
) -> Result<(), StoreError> {
    let now = ticket_rows(new.0, new.1, new.2);
    let before = old
        .map(|o| ticket_rows(&o.mailbox, o.status, &o.categories))
        .unwrap_or_default();
    for (m, s, c) in before.difference(&now) {
        table.remove((*m, *s, *c, id))?;
    }
    for (m, s, c) in now.difference(&before) {
        table.insert((*m, *s, *c, id), ())?;
    }
    Ok(())
}

/// The fields of an outbox entry its rows come from.
#[derive(Debug, Deserialize)]
pub struct OutboxKeys {
    #[serde(default)]
    pub account: Option<String>,
    pub state: DeliveryState,
}

fn outbox_rows(account: Option<&str>, state: DeliveryState) -> Vec<(&str, &'static str)> {
    let mut rows = vec![("", state.as_str())];
    if let Some(a) = account.filter(|a| !a.is_empty()) {
        rows.extend([(a, ""), (a, state.as_str())]);
    }
    rows
}

/// The prefix of `?account=` / `?state=`; None when neither is given.
pub fn outbox_prefix(
    account: Option<&str>,
    state: Option<DeliveryState>,
) -> Option<(&str, &'static str)> {
    if account.is_none() && state.is_none() {
        return None;
    }
    Some((
        account.unwrap_or(""),
        state.map_or("", DeliveryState::as_str),
    ))
}

pub fn reindex_outbox(
    table: &mut Table<'_, (&'static str, &'static str, u64), ()>,
    id: u64,
    old: Option<&OutboxKeys>,
    new: (Option<&str>, DeliveryState),
) -> Result<(), StoreError> {
    let now = outbox_rows(new.0, new.1);
    let before = old
        .map(|o| outbox_rows(o.account.as_deref(), o.state))
        .unwrap_or_default();
    for (a, s) in before.iter().filter(|r| !now.contains(r)) {
        table.remove((*a, *s, id))?;
    }
    for (a, s) in now.iter().filter(|r| !before.contains(r)) {
        table.insert((*a, *s, id), ())?;
    }
    Ok(())
}

/// The fields of a rejection its row comes from.
#[derive(Debug, Deserialize)]
struct RejectionKeys {
    reason: crate::mail::RejectReason,
}

/// Builds the indexes a store lacks: when it predates them (its schema
/// version is below [`SCHEMA_VERSION`]) or when an index is empty while its
/// records exist (a table dropped by hand). Runs before anything else uses
/// the store. Each index is cleared, then filled in chunks of
/// [`BUILD_CHUNK`] records per transaction; the version is written last and
/// cleared first, so an interrupted build starts over on the next open.
pub(super) fn ensure(db: &Database) -> Result<(), StoreError> {
    let (version, todo) = {
        let txn = db.begin_read()?;
        let version = txn.open_table(META)?.get(SCHEMA_KEY)?.map(|v| v.value());
        let missing = |records: bool, index: bool| records && !index;
        let tickets = !txn.open_table(TICKETS)?.is_empty()?;
        let rejections = !txn.open_table(REJECTIONS)?.is_empty()?;
        let outbox = !txn.open_table(OUTBOX)?.is_empty()?;
        let t_idx = !txn.open_table(TICKET_FILTERS)?.is_empty()?;
        let r_idx = !txn.open_table(REJECTIONS_BY_REASON)?.is_empty()?;
        let o_idx = !txn.open_table(OUTBOX_FILTERS)?.is_empty()?;
        let old = version.unwrap_or(1) < INDEX_VERSION;
        (
            version,
            [
                old || missing(tickets, t_idx),
                old || missing(rejections, r_idx),
                old || missing(outbox, o_idx),
            ],
        )
    };
    if let Some(v) = version.filter(|v| *v > SCHEMA_VERSION) {
        tracing::warn!(
            store = v,
            this_build = SCHEMA_VERSION,
            "the store was written by a newer mailgate; its indexes are used as they are"
        );
        return Ok(());
    }
    if todo == [false; 3] {
        if version.is_some_and(|v| v < SCHEMA_VERSION) {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
            txn.commit()?;
        }
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.open_table(META)?.remove(SCHEMA_KEY)?;
    if todo[0] {
        clear(&txn, TICKET_FILTERS)?;
    }
    if todo[1] {
        clear(&txn, REJECTIONS_BY_REASON)?;
    }
    if todo[2] {
        clear(&txn, OUTBOX_FILTERS)?;
    }
    txn.commit()?;
    if todo[0] {
        build(db, "tickets", TICKETS, TICKET_FILTERS, |table, id, json| {
            let k: TicketKeys = super::decode("tickets", id, json)?;
            reindex_ticket(table, id, None, (&k.mailbox, k.status, &k.categories))
        })?;
    }
    if todo[1] {
        build(
            db,
            "rejections",
            REJECTIONS,
            REJECTIONS_BY_REASON,
            |table, id, json| {
                let k: RejectionKeys = super::decode("rejections", id, json)?;
                table.insert((k.reason.as_str(), id), ())?;
                Ok(())
            },
        )?;
    }
    if todo[2] {
        build(db, "outbox", OUTBOX, OUTBOX_FILTERS, |table, id, json| {
            let k: OutboxKeys = super::decode("outbox", id, json)?;
            reindex_outbox(table, id, None, (k.account.as_deref(), k.state))
        })?;
    }
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
    txn.commit()?;
    Ok(())
}

fn clear<K: redb::Key + 'static>(
    txn: &redb::WriteTransaction,
    table: redb::TableDefinition<K, ()>,
) -> Result<(), StoreError> {
    txn.delete_table(table)?;
    txn.open_table(table)?;
    Ok(())
}

/// Indexes every record of `records` into `index`, a chunk per transaction.
fn build<K: redb::Key + 'static>(
    db: &Database,
    what: &'static str,
    records: redb::TableDefinition<u64, &[u8]>,
    index: redb::TableDefinition<K, ()>,
    mut add: impl FnMut(&mut Table<'_, K, ()>, u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut after: Option<u64> = None;
    let mut count = 0u64;
    loop {
        let txn = db.begin_write()?;
        let mut last = None;
        {
            let source = txn.open_table(records)?;
            let mut table = txn.open_table(index)?;
            let from = after.map_or(0, |a| a + 1);
            for entry in source.range(from..)?.take(BUILD_CHUNK) {
                let (k, v) = entry?;
                add(&mut table, k.value(), v.value())?;
                last = Some(k.value());
                count += 1;
            }
        }
        txn.commit()?;
        match last {
            Some(id) if id < u64::MAX => after = Some(id),
            _ => break,
        }
    }
    let rows = db.begin_read()?.open_table(index)?.len()?;
    if count > 0 {
        tracing::info!(
            records = count,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "built the {} index of {what}",
            index.name()
        );
    }
    Ok(())
}
