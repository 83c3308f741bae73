//! Every after-import mode repeated after a cut at every command of a
//! sync, through the real engine and store, against the stateful fake
//! server (no MOVE, with and without UIDPLUS, messages with and without a
//! Message-ID): the upstream ends as if the sync had run once, and every
//! message is stored once.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use super::ImapSettings;
use super::ImapUpstream;
use super::fake_server::{self, Shared, When};
use crate::inbound::pull::engine::tests::context;
use crate::inbound::pull::engine::{SyncContext, SyncError, SyncReport, sync_once};
use crate::inbound::pull::upstream::ConnectSettings;
use crate::mail::{AfterImport, Credential, Secret, Security};

fn raw(n: u32, with_id: bool) -> Vec<u8> {
    let id = if with_id {
        format!("Message-ID: <m{n}@example.test>\r\n")
    } else {
        String::new()
    };
    format!(
        "Received: from mx by upstream; Tue, 1 Dec 2026 10:0{n}:00 +0000\r\n\
         From: Customer {n} <c{n}@example.test>\r\nTo: support@example.test\r\n\
         Subject: help {n}\r\n{id}\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// Already in the target before any sync: the same Message-ID and size as
/// message 1, another header block. It is not a copy of message 1.
fn decoy(with_id: bool) -> Vec<u8> {
    let mut m = raw(1, with_id);
    let at = m.iter().position(|&b| b == b'1').unwrap();
    m[at] = b'7';
    m
}

fn settings(port: u16, after: &AfterImport) -> ImapSettings {
    ImapSettings {
        connect: ConnectSettings {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            user: "u".into(),
            credential: Credential::Password(Secret::new("pw")),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        },
        folder: "INBOX".into(),
        after: after.clone(),
        max_message_size: 1 << 20,
    }
}

fn moves() -> AfterImport {
    AfterImport::Move {
        processed: "Done".into(),
        rejected: "Refused".into(),
    }
}

fn label() -> AfterImport {
    AfterImport::Label {
        processed: "Mailgate".into(),
        rejected: "RejectedByMailgate".into(),
    }
}

async fn sync(port: u16, after: &AfterImport, ctx: &SyncContext) -> Result<SyncReport, SyncError> {
    let up = ImapUpstream::open(&settings(port, after)).await?;
    sync_once(ctx, up).await
}

fn tickets(ctx: &SyncContext) -> usize {
    ctx.store
        .list_tickets(&Default::default(), None, 100)
        .unwrap()
        .items
        .len()
}

/// How many messages of `folder` are byte for byte `raw`.
fn copies(state: &Shared, folder: &str, raw: &[u8]) -> usize {
    let s = state.lock().unwrap();
    s.folders
        .get(folder)
        .map_or(0, |f| f.msgs.iter().filter(|m| m.raw == raw).count())
}

fn count(state: &Shared, folder: &str) -> usize {
    let s = state.lock().unwrap();
    s.folders.get(folder).map_or(0, |f| f.msgs.len())
}

/// A fresh server with two new messages in INBOX (and the decoy in Done).
async fn server(uidplus: bool, with_id: bool) -> (u16, Shared) {
    let (port, state) = fake_server::start(uidplus).await;
    {
        let mut s = state.lock().unwrap();
        s.deliver("INBOX", &raw(1, with_id), &[]);
        s.deliver("INBOX", &raw(2, with_id), &[]);
        s.deliver("Done", &decoy(with_id), &["\\Seen", "Mailgate"]);
    }
    (port, state)
}

fn quota() -> Quota {
    Quota::per_minute(NonZeroU32::new(100_000).unwrap())
}

/// The state a single uninterrupted sync leaves, for `after`.
fn assert_done(state: &Shared, after: &AfterImport, with_id: bool, case: &str) {
    match after {
        AfterImport::Move { .. } => {
            assert_eq!(count(state, "INBOX"), 0, "{case}: left in INBOX");
            for n in 1..=2 {
                assert_eq!(
                    copies(state, "Done", &raw(n, with_id)),
                    1,
                    "{case}: copies of {n} in Done"
                );
            }
            assert_eq!(copies(state, "Done", &decoy(with_id)), 1, "{case}: decoy");
            assert_eq!(count(state, "Done"), 3, "{case}: Done");
        }
        AfterImport::Delete => assert_eq!(count(state, "INBOX"), 0, "{case}: left in INBOX"),
        _ => {
            let s = state.lock().unwrap();
            let inbox = s.folder("INBOX");
            assert_eq!(inbox.msgs.len(), 2, "{case}");
            for m in &inbox.msgs {
                let flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
                assert_eq!(flags, vec!["Mailgate", "\\Seen"], "{case}");
            }
        }
    }
}

/// Cuts the first sync at each of its commands in turn (before and after
/// the server carries it out), then syncs until done.
async fn every_cut(after: AfterImport, uidplus: bool, with_id: bool) {
    for when in [When::Before, When::After] {
        let mut n = 0;
        loop {
            let case = format!("{after:?} uidplus={uidplus} id={with_id} cut {when:?} #{n}");
            let (port, state) = server(uidplus, with_id).await;
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path(), quota(), 1 << 20);
            state.lock().unwrap().cut_at(n, when);
            let first = sync(port, &after, &ctx).await;
            let fired = state.lock().unwrap().cut_fired;
            state.lock().unwrap().disarm();
            if !fired {
                first.unwrap();
                assert_done(&state, &after, with_id, &case);
                // Login, LIST, SELECT, two SEARCHes or one, the sizes,
                // one download and one mark for both messages, LOGOUT...
                assert!(n >= 8, "{case}: the sync sent only {n} commands");
                break;
            }
            sync(port, &after, &ctx)
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let again = sync(port, &after, &ctx).await.unwrap();
            assert_eq!(again.imported + again.resumed, 0, "{case}: {again:?}");
            assert_done(&state, &after, with_id, &case);
            assert_eq!(tickets(&ctx), 2, "{case}: stored once each");
            n += 1;
        }
    }
}

#[tokio::test]
async fn move_without_move_survives_a_cut_anywhere() {
    for uidplus in [false, true] {
        for with_id in [true, false] {
            every_cut(moves(), uidplus, with_id).await;
        }
    }
}

#[tokio::test]
async fn delete_and_label_survive_a_cut_anywhere() {
    for uidplus in [false, true] {
        every_cut(AfterImport::Delete, uidplus, true).await;
    }
    every_cut(label(), false, false).await;
}

/// The copy of a cut move is looked for, then the repeated move is cut as
/// well, at each of its commands.
#[tokio::test]
async fn a_repeated_move_survives_a_second_cut() {
    for uidplus in [false, true] {
        for with_id in [true, false] {
            // Where the first sync sends its first COPY.
            let (port, state) = server(uidplus, with_id).await;
            let dir = tempfile::tempdir().unwrap();
            let ctx = context(dir.path(), quota(), 1 << 20);
            sync(port, &moves(), &ctx).await.unwrap();
            let copy_at = state
                .lock()
                .unwrap()
                .seen
                .iter()
                .position(|c| c.starts_with("UID COPY"))
                .unwrap();
            for when in [When::Before, When::After] {
                let mut n = 0;
                loop {
                    let case = format!("uidplus={uidplus} id={with_id} second cut {when:?} #{n}");
                    let (port, state) = server(uidplus, with_id).await;
                    let dir = tempfile::tempdir().unwrap();
                    let ctx = context(dir.path(), quota(), 1 << 20);
                    state.lock().unwrap().cut_at(copy_at, When::After);
                    sync(port, &moves(), &ctx).await.unwrap_err();
                    assert_eq!(copies(&state, "Done", &raw(1, with_id)), 1, "{case}");
                    state.lock().unwrap().cut_at(n, when);
                    let second = sync(port, &moves(), &ctx).await;
                    let fired = state.lock().unwrap().cut_fired;
                    state.lock().unwrap().disarm();
                    if !fired {
                        second.unwrap();
                        assert_done(&state, &moves(), with_id, &case);
                        break;
                    }
                    sync(port, &moves(), &ctx)
                        .await
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert_done(&state, &moves(), with_id, &case);
                    assert_eq!(tickets(&ctx), 2, "{case}");
                    n += 1;
                }
            }
        }
    }
}

/// Without UIDPLUS, a message another client flagged \Deleted is never
/// expunged by us: ours wait, flagged, and are not imported again.
#[tokio::test]
async fn a_foreign_deleted_message_survives_without_uidplus() {
    for after in [AfterImport::Delete, moves()] {
        let (port, state) = fake_server::start(false).await;
        let foreign = b"From: x@example.test\r\nSubject: theirs\r\n\r\nkeep me\r\n".to_vec();
        let foreign_uid = {
            let mut s = state.lock().unwrap();
            s.deliver("INBOX", &raw(1, true), &[]);
            s.deliver("INBOX", &foreign, &["\\Seen", "\\Deleted"])
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), quota(), 1 << 20);
        for round in 0..2 {
            let report = sync(port, &after, &ctx).await.unwrap();
            assert_eq!(
                report.imported,
                1 - round,
                "{after:?} round {round}: {report:?}"
            );
            assert_eq!(copies(&state, "INBOX", &foreign), 1, "{after:?}");
            assert_eq!(count(&state, "INBOX"), 2, "{after:?}: ours waits");
            assert_eq!(
                copies(&state, "Done", &raw(1, true)),
                usize::from(matches!(after, AfterImport::Move { .. }))
            );
            assert_eq!(tickets(&ctx), 1);
        }
        assert!(
            !state.lock().unwrap().seen.iter().any(|c| c == "EXPUNGE"),
            "{after:?}"
        );
        // The other client changes its mind: now ours go, alone.
        {
            let mut s = state.lock().unwrap();
            let inbox = s.folders.get_mut("INBOX").unwrap();
            let m = inbox
                .msgs
                .iter_mut()
                .find(|m| m.uid == foreign_uid)
                .unwrap();
            m.flags.remove("\\Deleted");
        }
        let report = sync(port, &after, &ctx).await.unwrap();
        assert_eq!(report.imported, 0, "{report:?}");
        assert_eq!(count(&state, "INBOX"), 1, "{after:?}");
        assert_eq!(copies(&state, "INBOX", &foreign), 1, "{after:?}");
        if matches!(after, AfterImport::Move { .. }) {
            assert_eq!(copies(&state, "Done", &raw(1, true)), 1);
        }
        assert_eq!(tickets(&ctx), 1);
    }
}

/// The copy a cut move left is found behind many later messages of the
/// same size without a Message-ID (several FETCH batches of header blocks).
#[tokio::test]
async fn the_copy_is_found_among_many_of_the_same_size() {
    let (port, state) = server(false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), quota(), 1 << 20);
    // Find where the first COPY is sent, on a copy of the same setup.
    let copy_at = {
        let (port, state) = server(false, false).await;
        let dir = tempfile::tempdir().unwrap();
        sync(port, &moves(), &context(dir.path(), quota(), 1 << 20))
            .await
            .unwrap();
        let s = state.lock().unwrap();
        s.seen
            .iter()
            .position(|c| c.starts_with("UID COPY"))
            .unwrap()
    };
    state.lock().unwrap().cut_at(copy_at, When::After);
    sync(port, &moves(), &ctx).await.unwrap_err();
    let original = raw(1, false);
    {
        let mut s = state.lock().unwrap();
        for k in 0..130 {
            let text = String::from_utf8(original.clone()).unwrap();
            let other = text.replace("help 1", &format!("h{k:05}"));
            assert_eq!(other.len(), original.len());
            s.deliver("Done", other.as_bytes(), &["\\Seen", "Mailgate"]);
        }
    }
    sync(port, &moves(), &ctx).await.unwrap();
    assert_eq!(copies(&state, "Done", &original), 1);
    assert_eq!(copies(&state, "Done", &raw(2, false)), 1);
    assert_eq!(count(&state, "INBOX"), 0);
    let fetches = state
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|c| c.contains("BODY.PEEK[HEADER]"))
        .count();
    assert!(fetches >= 3, "{fetches} header FETCHes");
}
