//! The filter indexes against brute force: random tickets made and changed
//! through the ticket rules, random rejections and outbox entries, and every
//! filtered listing, paged at random sizes, compared with a full scan of the
//! records. Also: a store written without the indexes gets them on open.

use std::collections::BTreeSet;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Store;
use super::commit::Backend;
use super::query::TicketFilter;
use super::redb_txn::RedbTxn;
use super::schema::*;
use crate::mail::RejectReason;
use crate::tickets::model::{DeliveryState, OutboxEntry, Rejection, Ticket, TicketStatus};
use crate::tickets::suite::{mail, request_for, settings};
use crate::tickets::txn::TicketTxn;
use crate::tickets::{Operation, TicketUpdate};

/// xorshift64*: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

const MAILBOXES: [&str; 2] = ["support", "sales"];
const CATEGORIES: [&str; 2] = ["billing", "hardware"];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Opens a ticket (or threads onto one when `reply_to` names a Message-ID).
fn ingest(store: &Store, n: usize, mailbox: &str, reply_to: Option<&'static str>) {
    let id = leak(format!("m{n}@customer.test"));
    let mut m = mail("ann@customer.test", Some(id), leak(format!("subject {n}")));
    if let Some(r) = reply_to {
        m = m.replying(r);
    }
    let op = Operation::Ingest(request_for(&m, &[mailbox], false));
    store.apply_batch(&settings(), &[&op]).unwrap();
}

fn update(store: &Store, rng: &mut Rng, ticket_id: u64) {
    let mut u = TicketUpdate {
        ticket_id,
        at: "2026-02-01T00:00:00Z".into(),
        ..TicketUpdate::default()
    };
    if rng.below(3) > 0 {
        u.status = Some(*rng.pick(&TicketStatus::ALL));
    }
    if rng.below(2) == 0 {
        u.categories = Some(
            CATEGORIES
                .iter()
                .filter(|_| rng.below(2) == 0)
                .map(|c| c.to_string())
                .collect(),
        );
    }
    store
        .apply_batch(&settings(), &[&Operation::Update(u)])
        .unwrap();
}

fn all_tickets(store: &Store) -> Vec<Ticket> {
    let txn = store.db().begin_read().unwrap();
    let table = txn.open_table(TICKETS).unwrap();
    let mut out: Vec<Ticket> = table
        .iter()
        .unwrap()
        .map(|e| crate::store::decode("test", 0, e.unwrap().1.value()).unwrap())
        .collect();
    out.reverse();
    out
}

/// Pages through a listing `limit` at a time; checks each page's size and
/// that the cursor is the last id served.
fn paged<T>(
    mut page: impl FnMut(Option<u64>) -> super::query::Page<T>,
    id: impl Fn(&T) -> u64,
    limit: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(cursor);
        assert!(p.items.len() <= limit);
        out.extend(p.items.iter().map(&id));
        match p.next {
            Some(next) => {
                assert_eq!(p.items.len(), limit, "a cursor only after a full page");
                assert_eq!(Some(next), p.items.last().map(&id));
                cursor = Some(next);
            }
            None => return out,
        }
    }
}

fn filters() -> Vec<TicketFilter> {
    let some = |s: &str| Some(s.to_string());
    let mailboxes = [None, some("support"), some("sales"), some("nowhere")];
    let statuses: Vec<Option<String>> = std::iter::once(None)
        .chain(TicketStatus::ALL.iter().map(|s| some(s.as_str())))
        .chain([some("closed")])
        .collect();
    let categories = [None, some("billing"), some("hardware"), some("other")];
    let mut out = Vec::new();
    for m in &mailboxes {
        for s in &statuses {
            for c in &categories {
                out.push(TicketFilter {
                    mailbox: m.clone(),
                    status: s.clone(),
                    category: c.clone(),
                });
            }
        }
    }
    out
}

fn matches(f: &TicketFilter, t: &Ticket) -> bool {
    f.mailbox.as_ref().is_none_or(|m| *m == t.mailbox)
        && f.status.as_ref().is_none_or(|s| s == t.status.as_str())
        && f.category.as_ref().is_none_or(|c| t.categories.contains(c))
}

fn check_tickets(store: &Store, rng: &mut Rng) {
    let all = all_tickets(store);
    for f in filters() {
        let expected: Vec<u64> = all
            .iter()
            .filter(|t| matches(&f, t))
            .map(|t| t.id)
            .collect();
        let limit = 1 + rng.below(7);
        let got = paged(
            |c| store.list_tickets(&f, c, limit).unwrap(),
            |t| t.id,
            limit,
        );
        assert_eq!(got, expected, "{f:?}, limit {limit}");
    }
}

/// The index holds exactly the rows of the tickets as they are now: none
/// left behind by a change.
fn check_no_stale_rows(store: &Store) {
    let expected: BTreeSet<(String, String, String, u64)> = all_tickets(store)
        .iter()
        .flat_map(|t| {
            super::index::ticket_rows(&t.mailbox, t.status, &t.categories)
                .into_iter()
                .map(|(m, s, c)| (m.to_string(), s.to_string(), c.to_string(), t.id))
                .collect::<Vec<_>>()
        })
        .collect();
    let txn = store.db().begin_read().unwrap();
    let table = txn.open_table(TICKET_FILTERS).unwrap();
    let got: BTreeSet<(String, String, String, u64)> = table
        .iter()
        .unwrap()
        .map(|e| {
            let key = e.unwrap().0;
            let (m, s, c, id) = key.value();
            (m.to_string(), s.to_string(), c.to_string(), id)
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn ticket_listings_through_the_index_equal_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids: Vec<&'static str> = Vec::new();
    for n in 0..300 {
        match rng.below(10) {
            0..=3 => {
                ingest(&store, n, MAILBOXES[rng.below(2)], None);
                ids.push(leak(format!("m{n}@customer.test")));
            }
            // A customer's reply: threads, and may reopen a done ticket.
            4 if !ids.is_empty() => {
                let to = *rng.pick(&ids);
                ingest(&store, n, MAILBOXES[rng.below(2)], Some(to));
            }
            _ => {
                let count = all_tickets(&store).len();
                if count > 0 {
                    let id = 1 + rng.below(count) as u64;
                    update(&store, &mut rng, id);
                }
            }
        }
        if n % 60 == 59 {
            check_tickets(&store, &mut rng);
            check_no_stale_rows(&store);
        }
    }
    let all = all_tickets(&store);
    assert!(all.len() > 50, "{}", all.len());
    let statuses: std::collections::HashSet<_> = all.iter().map(|t| t.status).collect();
    assert!(statuses.len() >= 4, "{statuses:?}");
    assert!(all.iter().any(|t| !t.categories.is_empty()));
}

#[test]
fn a_status_change_moves_the_ticket_between_listings() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    ingest(&store, 1, "support", None);
    let by = |s: &str| TicketFilter {
        mailbox: Some("support".into()),
        status: Some(s.into()),
        ..TicketFilter::default()
    };
    let ids = |f: &TicketFilter| -> Vec<u64> {
        let page = store.list_tickets(f, None, 10).unwrap();
        page.items.iter().map(|t| t.id).collect()
    };
    let status = store.ticket(1).unwrap().unwrap().status;
    assert_eq!(ids(&by(status.as_str())), vec![1]);
    let u = TicketUpdate {
        ticket_id: 1,
        status: Some(TicketStatus::Done),
        categories: Some(vec!["billing".into()]),
        at: "2026-02-01T00:00:00Z".into(),
        ..TicketUpdate::default()
    };
    store
        .apply_batch(&settings(), &[&Operation::Update(u)])
        .unwrap();
    assert_eq!(ids(&by(status.as_str())), Vec::<u64>::new());
    assert_eq!(ids(&by("done")), vec![1]);
    let billing_done = TicketFilter {
        category: Some("billing".into()),
        ..by("done")
    };
    assert_eq!(ids(&billing_done), vec![1]);
}

fn rejection(id: u64, reason: RejectReason) -> Rejection {
    Rejection {
        id,
        reason,
        detail: "test".into(),
        source: "test".into(),
        mailbox: Some("support".into()),
        envelope: Default::default(),
        message_id: None,
        from: None,
        subject: None,
        size: 1,
        received_at: "2026-01-01T00:00:00Z".into(),
        raw_available: false,
        trace: Default::default(),
        replayed: None,
    }
}

fn outbox_entry(id: u64, account: Option<&str>, state: DeliveryState) -> OutboxEntry {
    OutboxEntry {
        id,
        ticket_id: None,
        mailbox: "support".into(),
        account: account.map(str::to_string),
        mail_from: "support@gw.test".into(),
        rcpt_to: vec!["ann@customer.test".into()],
        size: 1,
        state,
        attempts: 0,
        created_at: "2026-01-01T00:00:00Z".into(),
        created_ms: 0,
        next_attempt_ms: 0,
        last_error: None,
        relay_reply: None,
        finished_at: None,
    }
}

/// Writes through the backend's own transaction, as the rules do.
fn write(store: &Store, f: impl FnOnce(&mut RedbTxn<'_>)) {
    let txn = store.db().begin_write().unwrap();
    {
        let mut tables = RedbTxn::open(&txn).unwrap();
        f(&mut tables);
    }
    txn.commit().unwrap();
}

const ACCOUNTS: [Option<&str>; 3] = [None, Some("crm"), Some("billing-app")];

fn check_rejections_and_outbox(store: &Store, rng: &mut Rng) {
    let txn = store.db().begin_read().unwrap();
    let rejections: Vec<Rejection> = txn
        .open_table(REJECTIONS)
        .unwrap()
        .iter()
        .unwrap()
        .rev()
        .map(|e| crate::store::decode("test", 0, e.unwrap().1.value()).unwrap())
        .collect();
    let outbox: Vec<OutboxEntry> = txn
        .open_table(OUTBOX)
        .unwrap()
        .iter()
        .unwrap()
        .rev()
        .map(|e| crate::store::decode("test", 0, e.unwrap().1.value()).unwrap())
        .collect();
    let reasons = RejectReason::ALL.iter().map(|r| Some(r.as_str()));
    for reason in std::iter::once(None).chain(reasons) {
        let limit = 1 + rng.below(5);
        let expected: Vec<u64> = rejections
            .iter()
            .filter(|r| reason.is_none_or(|x| x == r.reason.as_str()))
            .map(|r| r.id)
            .collect();
        let got = paged(
            |c| store.list_rejections(reason, c, limit).unwrap(),
            |r| r.id,
            limit,
        );
        assert_eq!(got, expected, "{reason:?}");
    }
    let states = DeliveryState::ALL.iter().map(|s| Some(*s));
    for state in std::iter::once(None).chain(states) {
        for account in ACCOUNTS.iter().copied().chain([Some("nobody")]) {
            let limit = 1 + rng.below(5);
            let expected: Vec<u64> = outbox
                .iter()
                .filter(|e| state.is_none_or(|s| s == e.state))
                .filter(|e| account.is_none_or(|a| e.account.as_deref() == Some(a)))
                .map(|e| e.id)
                .collect();
            let got = paged(
                |c| store.list_outbox(state, account, c, limit).unwrap(),
                |e| e.id,
                limit,
            );
            assert_eq!(got, expected, "{state:?} {account:?}");
        }
    }
}

#[test]
fn rejection_and_outbox_listings_through_the_index_equal_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    let mut rng = Rng(42);
    let mut outbox: Vec<OutboxEntry> = Vec::new();
    for n in 1..=200u64 {
        match rng.below(3) {
            0 => {
                let r = rejection(n, *rng.pick(&RejectReason::ALL));
                write(&store, |t| t.insert_rejection(&r, None).unwrap());
            }
            1 => {
                let e = outbox_entry(n, *rng.pick(&ACCOUNTS), DeliveryState::Queued);
                write(&store, |t| t.put_outbox(&e).unwrap());
                outbox.push(e);
            }
            _ if !outbox.is_empty() => {
                // A delivery attempt moves an entry to another state.
                let i = rng.below(outbox.len());
                outbox[i].state = *rng.pick(&DeliveryState::ALL);
                let e = outbox[i].clone();
                write(&store, |t| t.put_outbox(&e).unwrap());
            }
            _ => {}
        }
        if n % 50 == 0 {
            check_rejections_and_outbox(&store, &mut rng);
        }
    }
    let txn = store.db().begin_read().unwrap();
    let rows = txn.open_table(OUTBOX_FILTERS).unwrap().len().unwrap();
    let expected: u64 = outbox
        .iter()
        .map(|e| if e.account.is_some() { 3 } else { 1 })
        .sum();
    assert_eq!(rows, expected, "no rows left behind by state changes");
}

/// A store as an older version left it: records, no index tables, no
/// schema version.
fn strip_indexes(path: &std::path::Path) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(TICKET_FILTERS).unwrap());
    assert!(txn.delete_table(REJECTIONS_BY_REASON).unwrap());
    assert!(txn.delete_table(OUTBOX_FILTERS).unwrap());
    assert!(txn.delete_table(META).unwrap());
    txn.commit().unwrap();
}

#[test]
fn an_older_store_is_indexed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let mut rng = Rng(7);
    {
        let store = Store::open(&path).unwrap();
        for n in 0..120 {
            ingest(&store, n, MAILBOXES[rng.below(2)], None);
            if n % 3 == 0 {
                let id = 1 + rng.below(n + 1) as u64;
                update(&store, &mut rng, id);
            }
        }
        for n in 1..=40u64 {
            let r = rejection(n, *rng.pick(&RejectReason::ALL));
            let e = outbox_entry(
                1000 + n,
                *rng.pick(&ACCOUNTS),
                *rng.pick(&DeliveryState::ALL),
            );
            write(&store, |t| {
                t.insert_rejection(&r, None).unwrap();
                t.put_outbox(&e).unwrap();
            });
        }
    }
    strip_indexes(&path);
    let store = Store::open(&path).unwrap();
    {
        let txn = store.db().begin_read().unwrap();
        let version = txn.open_table(META).unwrap().get("schema").unwrap();
        assert_eq!(version.unwrap().value(), super::index::SCHEMA_VERSION);
        assert!(!txn.open_table(TICKET_FILTERS).unwrap().is_empty().unwrap());
    }
    check_tickets(&store, &mut rng);
    check_no_stale_rows(&store);
    check_rejections_and_outbox(&store, &mut rng);
}

#[test]
fn an_index_dropped_by_hand_or_left_half_built_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let mut rng = Rng(11);
    {
        let store = Store::open(&path).unwrap();
        for n in 0..30 {
            ingest(&store, n, MAILBOXES[rng.below(2)], None);
        }
    }
    // Dropped while the version says current: found empty, rebuilt.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(TICKET_FILTERS).unwrap());
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    check_tickets(&store, &mut rng);
    drop(store);
    // An interrupted build leaves no version and stray rows: cleared, rebuilt.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove("schema").unwrap();
        txn.open_table(TICKET_FILTERS)
            .unwrap()
            .insert(("", "done", "", 1), ())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    check_tickets(&store, &mut rng);
    check_no_stale_rows(&store);
}
