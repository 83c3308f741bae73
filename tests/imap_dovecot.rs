//! The IMAP upstream client against a real Dovecot (private instance on
//! loopback, its own CA): TLS and STARTTLS with verification, login and
//! folder errors, what is listed, byte-exact PEEK downloads, every
//! after-import mode, hierarchy separators, IDLE.
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailgate::inbound::pull::providers::imap::{ImapSettings, ImapUpstream};
use mailgate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Upstream, UpstreamMessage, Verdict,
};
use mailgate::mail::{AfterImport, Credential, Secret, Security};
use support::dovecot::{Dovecot, PASSWORD, Separator, USER};

const PROCESSED: &str = "Mailgate";
const REJECTED: &str = "RejectedByMailgate";

fn label() -> AfterImport {
    AfterImport::Label {
        processed: PROCESSED.into(),
        rejected: REJECTED.into(),
    }
}

/// STARTTLS on the plain port, verified through the instance's CA.
fn settings(d: &Dovecot, folder: &str, after: AfterImport) -> ImapSettings {
    ImapSettings {
        connect: ConnectSettings {
            host: "localhost".into(),
            port: d.imap_port,
            security: Security::StartTls,
            user: USER.into(),
            credential: Credential::Password(Secret::new(PASSWORD)),
            ca_file: Some(d.ca_file.clone()),
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(30),
        },
        folder: folder.into(),
        after,
        max_message_size: 1024 * 1024,
    }
}

fn implicit_tls(d: &Dovecot, folder: &str, after: AfterImport) -> ImapSettings {
    let mut s = settings(d, folder, after);
    s.connect.port = d.imaps_port;
    s.connect.security = Security::Tls;
    s
}

/// A message with CRLF line ends (what IMAP serves), 8-bit bytes and text
/// that looks like an IMAP literal.
fn raw(n: u32) -> Vec<u8> {
    let mut m = format!(
        "From: Customer {n} <c{n}@example.test>\r\nTo: support@example.test\r\nSubject: help {n}\r\n\
         Message-ID: <m{n}@example.test>\r\nContent-Type: text/plain; charset=latin1\r\n\r\n\
         Line one of {n}.\r\nA literal-looking {{99999999}}\r\nand a brace {{ alone\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"caf\xe9 \xff\r\n");
    m
}

fn header_of(raw: &[u8]) -> &[u8] {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    &raw[..end]
}

fn flag_set(flags: &str) -> BTreeSet<String> {
    flags.split_whitespace().map(str::to_string).collect()
}

fn uid_of(m: &UpstreamMessage) -> u32 {
    m.key.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn tls_and_starttls_verify_through_the_ca_file() {
    let d = Dovecot::start();
    d.save("INBOX", &raw(1));

    let up = ImapUpstream::open(&implicit_tls(&d, "INBOX", label()))
        .await
        .unwrap();
    assert_ne!(up.uidvalidity(), 0);
    up.finish().await.unwrap();

    let up = ImapUpstream::open(&settings(&d, "INBOX", label()))
        .await
        .unwrap();
    assert!(up.capabilities().iter().any(|c| c == "IDLE"));
    up.finish().await.unwrap();

    // Without the private CA the certificate is not trusted.
    for mut s in [
        implicit_tls(&d, "INBOX", label()),
        settings(&d, "INBOX", label()),
    ] {
        s.connect.ca_file = None;
        let err = ImapUpstream::open(&s).await.unwrap_err();
        assert!(
            matches!(err, FetchError::Tls { .. }),
            "{:?}: {err:?}",
            s.connect.security
        );
        assert_eq!(err.kind(), "tls");
    }
    assert_eq!(d.flags("INBOX"), vec![(1, String::new())]);
}

#[tokio::test]
async fn wrong_password_and_missing_folder() {
    let d = Dovecot::start();
    let mut s = settings(&d, "INBOX", label());
    s.connect.credential = Credential::Password(Secret::new("not-the-password"));
    let err = ImapUpstream::open(&s).await.unwrap_err();
    match &err {
        FetchError::Auth { user, detail } => {
            assert_eq!(user, USER);
            assert!(detail.contains("Authentication failed"), "{detail}");
            assert!(!detail.contains("not-the-password"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?}{err}").contains("not-the-password"));

    let err = ImapUpstream::open(&settings(&d, "INBOX.nope", label()))
        .await
        .unwrap_err();
    match &err {
        FetchError::Folder { folder, detail } => {
            assert_eq!(folder, "INBOX.nope");
            assert!(detail.contains("no such mailbox"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let err = ImapUpstream::probe(&settings(&d, "Missing/Deeper", label()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "folder", "{err:?}");
}

#[tokio::test]
async fn lists_unseen_without_our_keywords_and_fetches_byte_exact_without_changing_anything() {
    let d = Dovecot::start();
    for n in 1..=5 {
        d.save("INBOX", &raw(n));
    }
    d.add_flags("INBOX", 2, "\\Seen");
    d.add_flags("INBOX", 3, PROCESSED);
    d.add_flags("INBOX", 4, REJECTED);
    d.add_flags("INBOX", 5, "\\Flagged");
    let before = d.flags("INBOX");

    let mut up = ImapUpstream::open(&settings(&d, "INBOX", label()))
        .await
        .unwrap();
    let validity = up.uidvalidity();
    assert_ne!(validity, 0);
    let listed = up.list_new().await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![format!("imap:{validity}:1"), format!("imap:{validity}:5")]
    );
    for m in &listed {
        let n = uid_of(m);
        assert_eq!(m.size, raw(n).len() as u64);
        assert_eq!(up.fetch(m).await.unwrap(), raw(n), "message {n}");
        assert_eq!(
            up.fetch_headers(m).await.unwrap(),
            header_of(&raw(n)),
            "header {n}"
        );
    }
    // Listing again gives the same: nothing was marked by reading.
    assert_eq!(up.list_new().await.unwrap(), listed);
    up.finish().await.unwrap();
    assert_eq!(d.flags("INBOX"), before);
    assert_eq!(d.flags("INBOX")[0], (1, String::new()));

    // Move and delete modes list every unseen message, keywords or not.
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", AfterImport::Delete))
        .await
        .unwrap();
    let uids: Vec<u32> = up.list_new().await.unwrap().iter().map(uid_of).collect();
    assert_eq!(uids, vec![1, 3, 4, 5]);
    up.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 5);
}

#[tokio::test]
async fn oversized_downloads_are_refused() {
    let d = Dovecot::start();
    let mut big = raw(1);
    big.extend(std::iter::repeat_n(b'x', 200 * 1024));
    big.extend_from_slice(b"\r\n");
    d.save("INBOX", &big);
    let mut s = settings(&d, "INBOX", label());
    s.max_message_size = 100 * 1024;
    let mut up = ImapUpstream::open(&s).await.unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, big.len() as u64);
    // The headers of a message too large to download still come.
    assert_eq!(up.fetch_headers(&listed[0]).await.unwrap(), header_of(&big));
    let err = up.fetch(&listed[0]).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    // A server that announces less than it sends is cut off while reading.
    let lie = UpstreamMessage {
        key: listed[0].key.clone(),
        size: 10,
        leftover: false,
    };
    let err = up.fetch(&lie).await.unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
    drop(up);
    assert_eq!(d.flags("INBOX"), vec![(1, String::new())]);
}

#[tokio::test]
async fn label_mode_sets_exact_flags() {
    let d = Dovecot::start();
    for n in 1..=3 {
        d.save("INBOX", &raw(n));
    }
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", label()))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 3);
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    up.mark(&listed[1], Verdict::Rejected).await.unwrap();
    // Marking twice (a retry after a crash) changes nothing more.
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    let left = up.list_new().await.unwrap();
    assert_eq!(left, vec![listed[2].clone()]);
    up.finish().await.unwrap();

    let flags = d.flags("INBOX");
    assert_eq!(flags.len(), 3);
    assert_eq!(flag_set(&flags[0].1), flag_set("\\Seen Mailgate"));
    assert_eq!(
        flag_set(&flags[1].1),
        flag_set("\\Seen Mailgate RejectedByMailgate")
    );
    assert_eq!(flags[2].1, "");
}

#[tokio::test]
async fn move_mode_moves_into_created_folders() {
    let d = Dovecot::start();
    for n in 1..=3 {
        d.save("INBOX", &raw(n));
    }
    let after = AfterImport::Move {
        processed: "INBOX/Imported".into(),
        rejected: "Refused".into(),
    };
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", after))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 3);
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    up.mark(&listed[1], Verdict::Rejected).await.unwrap();
    up.mark(&listed[2], Verdict::Processed).await.unwrap();
    assert!(up.list_new().await.unwrap().is_empty());
    up.finish().await.unwrap();

    assert_eq!(d.count("INBOX"), 0);
    // '/' in the configured name became the server's '.'.
    let imported = d.flags("INBOX.Imported");
    assert_eq!(imported.len(), 2);
    for (_, flags) in &imported {
        assert_eq!(flag_set(flags), flag_set("\\Seen Mailgate"));
    }
    let refused = d.flags("Refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        flag_set(&refused[0].1),
        flag_set("\\Seen Mailgate RejectedByMailgate")
    );

    // Existing targets are reused, not recreated.
    d.save("INBOX", &raw(4));
    let after = AfterImport::Move {
        processed: "INBOX.Imported".into(),
        rejected: "Refused".into(),
    };
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", after))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 1);
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(d.count("INBOX.Imported"), 3);
    assert_eq!(d.count("INBOX"), 0);
}

#[tokio::test]
async fn delete_mode_removes_messages() {
    let d = Dovecot::start();
    for n in 1..=2 {
        d.save("INBOX", &raw(n));
    }
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", AfterImport::Delete))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 2);
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    up.mark(&listed[1], Verdict::Rejected).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 0);
}

#[tokio::test]
async fn folder_spellings_work_with_either_separator() {
    for separator in [Separator::Dot, Separator::Slash] {
        let d = Dovecot::start_with(separator);
        let sep = d.separator;
        let support = format!("INBOX{sep}support");
        d.create_folder(&support);
        d.create_folder(&format!("{support}{sep}sub"));
        d.save(&support, &raw(1));
        d.save(&format!("{support}{sep}sub"), &raw(2));
        d.save("INBOX", &raw(3));
        for spelling in ["INBOX.support", "INBOX/support"] {
            let probe = ImapUpstream::probe(&settings(&d, spelling, label()))
                .await
                .unwrap();
            assert_eq!(
                probe.folder.as_deref(),
                Some(support.as_str()),
                "{spelling} on {sep}"
            );
            assert_eq!(probe.messages, 1, "{spelling} on {sep}");

            let mut up = ImapUpstream::open(&settings(&d, spelling, label()))
                .await
                .unwrap();
            let listed = up.list_new().await.unwrap();
            // Only the folder itself: not INBOX, not the subfolder.
            assert_eq!(listed.len(), 1, "{spelling} on {sep}");
            assert_eq!(up.fetch(&listed[0]).await.unwrap(), raw(1));
            up.finish().await.unwrap();
        }
        // Marks land in the right folder.
        let mut up = ImapUpstream::open(&settings(&d, "INBOX/support", label()))
            .await
            .unwrap();
        let listed = up.list_new().await.unwrap();
        up.mark(&listed[0], Verdict::Processed).await.unwrap();
        up.finish().await.unwrap();
        assert_eq!(
            flag_set(&d.flags(&support)[0].1),
            flag_set("\\Seen Mailgate")
        );
        assert_eq!(
            d.flags(&format!("{support}{sep}sub")),
            vec![(1, String::new())]
        );
        assert_eq!(d.flags("INBOX"), vec![(1, String::new())]);
    }
}

#[tokio::test]
async fn probe_reports_counts_capabilities_and_folder() {
    let d = Dovecot::start();
    for n in 1..=3 {
        d.save("INBOX", &raw(n));
    }
    d.add_flags("INBOX", 1, "\\Seen");
    let probe = ImapUpstream::probe(&implicit_tls(&d, "inbox", label()))
        .await
        .unwrap();
    assert_eq!(probe.messages, 3);
    assert_eq!(probe.unseen, Some(2));
    assert_eq!(probe.folder.as_deref(), Some("inbox"));
    for cap in ["IMAP4rev1", "IDLE", "MOVE", "UIDPLUS"] {
        assert!(
            probe.capabilities.iter().any(|c| c == cap),
            "{cap} in {:?}",
            probe.capabilities
        );
    }
    // The probe changes nothing.
    assert_eq!(d.flags("INBOX")[1], (2, String::new()));
}

#[tokio::test]
async fn idle_wakes_up_on_new_mail() {
    let d = Arc::new(Dovecot::start());
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", label()))
        .await
        .unwrap();
    assert!(up.list_new().await.unwrap().is_empty());

    // Nothing happens: the wait ends at the timeout.
    let started = Instant::now();
    let (again, changed) = up
        .wait_for_change(Duration::from_millis(800))
        .await
        .unwrap();
    assert!(!changed);
    assert!(started.elapsed() >= Duration::from_millis(700));
    up = again;

    let saver = Arc::clone(&d);
    let save = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(700));
        saver.save("INBOX", &raw(1));
    });
    let started = Instant::now();
    let (mut up, changed) = up.wait_for_change(Duration::from_secs(30)).await.unwrap();
    save.await.unwrap();
    assert!(changed);
    assert!(started.elapsed() < Duration::from_secs(20));
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(up.fetch(&listed[0]).await.unwrap(), raw(1));
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    // The session is still usable after IDLE, and its own marks do not count as news.
    let (up, changed) = up
        .wait_for_change(Duration::from_millis(500))
        .await
        .unwrap();
    assert!(!changed);
    up.finish().await.unwrap();
}

/// Everything logged in this test process, at every level (the `log`
/// records of async-imap and rustls included, through tracing-log).
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_password_never_reaches_a_log_even_at_trace() {
    let capture = Capture::default();
    let writer = capture.clone();
    // The whole test binary logs into it from now on; no filter at all.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init();
    let d = Dovecot::start();
    d.save("INBOX", &raw(1));
    for s in [
        settings(&d, "INBOX", label()),
        implicit_tls(&d, "INBOX", label()),
    ] {
        let probe = ImapUpstream::probe(&s).await.unwrap();
        assert_eq!(probe.messages, 1);
        let mut up = ImapUpstream::open(&s).await.unwrap();
        let listed = up.list_new().await.unwrap();
        assert_eq!(up.fetch(&listed[0]).await.unwrap(), raw(1));
        up.finish().await.unwrap();
    }
    let mut wrong = settings(&d, "INBOX", label());
    wrong.connect.credential = Credential::Password(Secret::new("not-the-password"));
    ImapUpstream::open(&wrong).await.unwrap_err();

    let log = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    // The capture works: async-imap's trace of what it parsed is in it.
    assert!(log.contains("decode: input"), "{log}");
    assert!(log.contains("IMAP login"), "{log}");
    for secret in [PASSWORD, "not-the-password"] {
        assert!(!log.contains(secret), "{secret:?} was logged:\n{log}");
    }
}

/// A Dovecot that announces neither MOVE nor UIDPLUS (like Courier for
/// MOVE, and older servers for both).
fn without_move_or_uidplus() -> Dovecot {
    let d =
        Dovecot::start_announcing("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE CHILDREN");
    d.doveadm(&["mailbox", "create", "-u", USER, "Done"]);
    d
}

/// The Subject of every message in a folder, sorted.
fn subjects(d: &Dovecot, folder: &str) -> Vec<String> {
    let out = d.doveadm(&[
        "-f",
        "tab",
        "fetch",
        "-u",
        USER,
        "hdr.subject",
        "mailbox",
        folder,
        "all",
    ]);
    let mut rows: Vec<String> = out.lines().skip(1).map(|l| l.trim().to_string()).collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn move_without_move_finishes_every_interrupted_state_with_one_copy() {
    let d = without_move_or_uidplus();
    let probe = ImapUpstream::probe(&settings(&d, "INBOX", label()))
        .await
        .unwrap();
    for cap in ["MOVE", "UIDPLUS"] {
        assert!(
            !probe.capabilities.iter().any(|c| c == cap),
            "{:?}",
            probe.capabilities
        );
    }
    let no_id = |n: u32| -> Vec<u8> {
        let m = String::from_utf8_lossy(&raw(n)).into_owned();
        m.replace(&format!("Message-ID: <m{n}@example.test>\r\n"), "")
            .into_bytes()
    };
    for n in 1..=3 {
        d.save("INBOX", &raw(n));
    }
    d.save("INBOX", &no_id(4));
    d.save("INBOX", &raw(5));
    // Another message with the same Message-ID as 2 is already in Done: it
    // is not a copy of 2.
    let mut other = raw(2);
    other.extend_from_slice(b"a later edit\r\n");
    d.save("Done", &other);
    // What cuts left: 1 copied, 2 flagged only (cut before COPY), 3 copied
    // and flagged \Deleted, 4 (no Message-ID) copied; 5 is new.
    for uid in 1..=4 {
        d.add_flags("INBOX", uid, "\\Seen Mailgate");
    }
    for uid in [1, 3, 4] {
        d.doveadm(&[
            "copy",
            "-u",
            USER,
            "Done",
            "mailbox",
            "INBOX",
            "uid",
            &uid.to_string(),
        ]);
    }
    d.add_flags("INBOX", 3, "\\Deleted");
    assert_eq!(d.count("Done"), 4);

    let after = AfterImport::Move {
        processed: "Done".into(),
        rejected: "Done".into(),
    };
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", after.clone()))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed.iter().filter(|m| m.leftover).count(), 4);
    for m in &listed {
        up.mark(m, Verdict::Processed).await.unwrap();
    }
    // The session is back in INBOX after looking into Done: all five wait
    // there for the EXPUNGE at finish, flagged, and 5 is still 5.
    let again = up.list_new().await.unwrap();
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|m| m.leftover));
    assert_eq!(up.fetch(&again[4]).await.unwrap(), raw(5));
    up.finish().await.unwrap();

    assert_eq!(d.count("INBOX"), 0);
    let mut want: Vec<String> = (1..=5).map(|n| format!("help {n}")).collect();
    want.push("help 2".into());
    want.sort();
    assert_eq!(subjects(&d, "Done"), want);
    let (_, flags) = d.flags("Done").pop().unwrap();
    assert_eq!(flag_set(&flags), flag_set("\\Seen Mailgate"));
}

#[tokio::test]
async fn without_uidplus_a_foreign_deleted_message_is_not_expunged() {
    let d = without_move_or_uidplus();
    d.save("INBOX", &raw(1));
    d.save("INBOX", &raw(2));
    d.add_flags("INBOX", 2, "\\Seen \\Deleted");
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", AfterImport::Delete))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    let ours: Vec<&UpstreamMessage> = listed.iter().filter(|m| !m.leftover).collect();
    assert_eq!(ours.len(), 1);
    up.mark(ours[0], Verdict::Processed).await.unwrap();
    up.finish().await.unwrap();
    let flags = d.flags("INBOX");
    assert_eq!(flags.len(), 2, "nothing expunged");
    for (_, f) in &flags {
        assert_eq!(flag_set(f), flag_set("\\Seen \\Deleted"));
    }

    // Once the other client has changed its mind, ours goes alone.
    d.doveadm(&[
        "flags",
        "remove",
        "-u",
        USER,
        "\\Deleted",
        "mailbox",
        "INBOX",
        "uid",
        "2",
    ]);
    let mut up = ImapUpstream::open(&settings(&d, "INBOX", AfterImport::Delete))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].leftover);
    up.mark(&listed[0], Verdict::Processed).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(d.flags("INBOX"), vec![(2, "\\Seen".into())]);
}
