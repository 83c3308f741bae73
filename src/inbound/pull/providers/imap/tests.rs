//! The client against a scripted IMAP server on loopback: the paths a real
//! Dovecot does not take (no STARTTLS, no IDLE, no MOVE/UIDPLUS, refusals,
//! a hostile literal, a server that stops answering).

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Upstream, UpstreamMessage, Verdict,
};
use crate::mail::{AfterImport, Credential, Secret, Security};
use names::parse_key;

/// One expected command (prefix, without the tag) and the reply to it,
/// `{tag}` standing for the command's tag. An empty reply: say nothing.
type Step = (&'static str, String);

/// Serves one connection: the greeting, then the steps in order. Returns
/// the port and, at the end, every command line received (tags stripped).
async fn serve(greeting: &str, steps: Vec<Step>) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let greeting = greeting.to_string();
    let handle = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        write.write_all(greeting.as_bytes()).await.unwrap();
        let mut steps = steps.into_iter();
        let mut last_tag = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            // DONE (ending IDLE) has no tag: the reply carries IDLE's.
            let (tag, command) = match line.split_once(' ') {
                Some((tag, command)) if line != "DONE" => (tag.to_string(), command.to_string()),
                _ => (last_tag.clone(), line.clone()),
            };
            last_tag = tag.clone();
            seen.push(command.clone());
            let reply = match steps.next() {
                Some((expect, reply)) if command.starts_with(expect) => reply,
                Some((expect, _)) => format!("{{tag}} BAD expected {expect}\r\n"),
                None => "{tag} BAD unscripted\r\n".to_string(),
            };
            let reply = reply.replace("{tag}", &tag);
            if write.write_all(reply.as_bytes()).await.is_err() {
                break;
            }
        }
        seen
    });
    (port, handle)
}

const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] fake ready\r\n";

/// LOGIN, CAPABILITY (`caps`), LIST "" "", LIST INBOX, SELECT INBOX.
fn open_steps(caps: &str) -> Vec<Step> {
    vec![
        ("LOGIN \"u\" \"pw\"", "{tag} OK logged in\r\n".into()),
        (
            "CAPABILITY",
            format!("* CAPABILITY IMAP4rev1 {caps}\r\n{{tag}} OK done\r\n"),
        ),
        (
            "LIST \"\" \"\"",
            "* LIST (\\Noselect) \".\" \"\"\r\n{tag} OK done\r\n".into(),
        ),
        (
            "LIST \"\" \"INBOX\"",
            "* LIST (\\HasNoChildren) \".\" INBOX\r\n{tag} OK done\r\n".into(),
        ),
        (
            "SELECT \"INBOX\"",
            concat!(
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] ok\r\n",
                "* 3 EXISTS\r\n",
                "* OK [UIDVALIDITY 77] UIDs valid\r\n",
                "* OK [UIDNEXT 9] next\r\n",
                "{tag} OK [READ-WRITE] selected\r\n"
            )
            .into(),
        ),
    ]
}

fn settings(port: u16, security: Security, after: AfterImport) -> ImapSettings {
    ImapSettings {
        connect: ConnectSettings {
            host: "127.0.0.1".into(),
            port,
            security,
            user: "u".into(),
            credential: Credential::Password(Secret::new("pw")),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        },
        folder: "INBOX".into(),
        after,
        max_message_size: 1_000,
    }
}

fn label() -> AfterImport {
    AfterImport::Label {
        processed: "Mailgate".into(),
        rejected: "RejectedByMailgate".into(),
    }
}

fn message(uid: u32) -> UpstreamMessage {
    UpstreamMessage {
        key: format!("imap:77:{uid}"),
        size: 10,
        leftover: false,
    }
}

#[tokio::test]
async fn starttls_must_be_offered() {
    let (port, server) = serve(GREETING, vec![]).await;
    let err = ImapUpstream::open(&settings(port, Security::StartTls, label()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    // Nothing was sent: above all, no password.
    assert!(server.await.unwrap().is_empty());
}

#[tokio::test]
async fn starttls_asks_for_capabilities_when_the_greeting_has_none() {
    let steps = vec![(
        "CAPABILITY",
        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".to_string(),
    )];
    let (port, server) = serve("* OK ready\r\n", steps).await;
    let err = ImapUpstream::open(&settings(port, Security::StartTls, label()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err:?}");
    assert_eq!(server.await.unwrap(), vec!["CAPABILITY"]);
}

#[tokio::test]
async fn a_refused_login_is_an_auth_error_with_the_server_text() {
    let steps = vec![(
        "LOGIN",
        "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n".to_string(),
    )];
    let (port, _server) = serve(GREETING, steps).await;
    let err = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap_err();
    match err {
        FetchError::Auth { user, detail } => {
            assert_eq!(user, "u");
            assert_eq!(detail, "[AUTHENTICATIONFAILED] Authentication failed.");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_bye_greeting_is_a_connect_error() {
    let (port, _server) = serve("* BYE too many connections\r\n", vec![]).await;
    let err = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("too many connections"), "{err}");
}

#[tokio::test]
async fn keep_and_bad_keywords_are_refused_before_connecting() {
    let err = ImapUpstream::open(&settings(1, Security::None, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err:?}");
    let bad = AfterImport::Label {
        processed: "two words".into(),
        rejected: "x".into(),
    };
    let err = ImapUpstream::open(&settings(1, Security::None, bad))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn without_idle_wait_for_change_returns_false_at_once() {
    let mut steps = open_steps("UIDPLUS MOVE");
    steps.push(("LOGOUT", "* BYE bye\r\n{tag} OK done\r\n".into()));
    let (port, server) = serve(GREETING, steps).await;
    let up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    assert_eq!(up.uidvalidity(), 77);
    let started = Instant::now();
    let (up, changed) = up.wait_for_change(Duration::from_secs(30)).await.unwrap();
    assert!(!changed);
    assert!(started.elapsed() < Duration::from_secs(2));
    up.finish().await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("LOGOUT"));
    assert!(!seen.iter().any(|c| c.starts_with("IDLE")));
}

#[tokio::test]
async fn list_new_fetches_sizes_in_chunks() {
    let uids: Vec<String> = (1..=1201).map(|u| u.to_string()).collect();
    let mut steps = open_steps("UIDPLUS");
    steps.push((
        "UID SEARCH UNSEEN UNKEYWORD Mailgate UNKEYWORD RejectedByMailgate",
        format!("* SEARCH {}\r\n{{tag}} OK done\r\n", uids.join(" ")),
    ));
    for (set, range) in [
        ("1:500", 1..=500u32),
        ("501:1000", 501..=1000),
        ("1001:1201", 1001..=1201),
    ] {
        let mut reply = String::new();
        for uid in range {
            // 1000 was expunged meanwhile: no size for it.
            if uid != 1000 {
                reply.push_str(&format!(
                    "* {uid} FETCH (UID {uid} RFC822.SIZE {})\r\n",
                    uid + 100
                ));
            }
        }
        reply.push_str("{tag} OK done\r\n");
        let expect: &'static str =
            Box::leak(format!("UID FETCH {set} (UID RFC822.SIZE FLAGS)").into_boxed_str());
        steps.push((expect, reply));
    }
    let (port, server) = serve(GREETING, steps).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let listed = up.list_new().await.unwrap();
    assert_eq!(listed.len(), 1200);
    assert_eq!(
        listed[0],
        UpstreamMessage {
            key: "imap:77:1".into(),
            size: 101,
            leftover: false,
        }
    );
    assert_eq!(listed[1199].key, "imap:77:1201");
    assert!(listed.iter().all(|m| m.key != "imap:77:1000"));
    assert!(
        listed
            .windows(2)
            .all(|w| parse_key(&w[0].key).unwrap().1 < parse_key(&w[1].key).unwrap().1)
    );
    drop(up);
    let seen = server.await.unwrap();
    assert_eq!(
        seen.iter().filter(|c| c.starts_with("UID FETCH")).count(),
        3
    );
}

#[tokio::test]
async fn move_without_move_or_uidplus_copies_and_expunges_at_finish() {
    let mut steps = open_steps("IDLE");
    steps.push((
        "LIST \"\" \"Done\"",
        "* LIST (\\HasNoChildren) \".\" Done\r\n{tag} OK done\r\n".into(),
    ));
    // Not listed in this session: its flags are asked for first.
    steps.push((
        "UID FETCH 5 (UID FLAGS)",
        "* 1 FETCH (UID 5 FLAGS ())\r\n{tag} OK done\r\n".into(),
    ));
    steps.push((
        "UID STORE 5 +FLAGS.SILENT (\\Seen Mailgate)",
        "{tag} OK stored\r\n".into(),
    ));
    steps.push(("UID COPY 5 \"Done\"", "{tag} OK copied\r\n".into()));
    steps.push((
        "UID STORE 5 +FLAGS.SILENT (\\Deleted)",
        "{tag} OK stored\r\n".into(),
    ));
    steps.push((
        "UID FETCH 6 (UID FLAGS)",
        "* 2 FETCH (UID 6 FLAGS (\\Recent))\r\n{tag} OK done\r\n".into(),
    ));
    steps.push((
        "UID STORE 6 +FLAGS.SILENT (\\Seen Mailgate RejectedByMailgate)",
        "{tag} OK stored\r\n".into(),
    ));
    steps.push(("UID COPY 6 \"Done\"", "{tag} OK copied\r\n".into()));
    steps.push((
        "UID STORE 6 +FLAGS.SILENT (\\Deleted)",
        "{tag} OK stored\r\n".into(),
    ));
    steps.push((
        "UID SEARCH DELETED",
        "* SEARCH 5 6\r\n{tag} OK done\r\n".into(),
    ));
    steps.push((
        "EXPUNGE",
        "* 2 EXPUNGE\r\n* 2 EXPUNGE\r\n{tag} OK expunged\r\n".into(),
    ));
    steps.push(("LOGOUT", "* BYE bye\r\n{tag} OK done\r\n".into()));
    let (port, server) = serve(GREETING, steps).await;
    let after = AfterImport::Move {
        processed: "Done".into(),
        rejected: "Done".into(),
    };
    let mut up = ImapUpstream::open(&settings(port, Security::None, after))
        .await
        .unwrap();
    up.mark(&message(5), Verdict::Processed).await.unwrap();
    up.mark(&message(6), Verdict::Rejected).await.unwrap();
    up.finish().await.unwrap();
    let seen = server.await.unwrap();
    let tail: Vec<&str> = seen.iter().skip(5).map(String::as_str).collect();
    assert_eq!(
        tail,
        vec![
            "LIST \"\" \"Done\"",
            "UID FETCH 5 (UID FLAGS)",
            "UID STORE 5 +FLAGS.SILENT (\\Seen Mailgate)",
            "UID COPY 5 \"Done\"",
            "UID STORE 5 +FLAGS.SILENT (\\Deleted)",
            "UID FETCH 6 (UID FLAGS)",
            "UID STORE 6 +FLAGS.SILENT (\\Seen Mailgate RejectedByMailgate)",
            "UID COPY 6 \"Done\"",
            "UID STORE 6 +FLAGS.SILENT (\\Deleted)",
            "UID SEARCH DELETED",
            "EXPUNGE",
            "LOGOUT",
        ]
    );
}

#[tokio::test]
async fn delete_without_uidplus_expunges_at_finish() {
    let mut steps = open_steps("");
    steps.push((
        "UID STORE 4 +FLAGS.SILENT (\\Seen \\Deleted)",
        "{tag} OK stored\r\n".into(),
    ));
    // Only ours is flagged \Deleted: the folder-wide EXPUNGE removes nothing else.
    steps.push((
        "UID SEARCH DELETED",
        "* SEARCH 4\r\n{tag} OK done\r\n".into(),
    ));
    steps.push(("EXPUNGE", "* 1 EXPUNGE\r\n{tag} OK expunged\r\n".into()));
    steps.push(("LOGOUT", "* BYE bye\r\n{tag} OK done\r\n".into()));
    let (port, server) = serve(GREETING, steps).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, AfterImport::Delete))
        .await
        .unwrap();
    up.mark(&message(4), Verdict::Processed).await.unwrap();
    up.finish().await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        &seen[5..],
        [
            "UID STORE 4 +FLAGS.SILENT (\\Seen \\Deleted)",
            "UID SEARCH DELETED",
            "EXPUNGE",
            "LOGOUT"
        ]
    );
}

#[tokio::test]
async fn a_refused_store_is_an_error() {
    let mut steps = open_steps("UIDPLUS");
    steps.push((
        "UID STORE 5 +FLAGS.SILENT (\\Seen Mailgate)",
        "{tag} NO [CANNOT] mailbox is full\r\n".into(),
    ));
    let (port, _server) = serve(GREETING, steps).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let err = up.mark(&message(5), Verdict::Processed).await.unwrap_err();
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("mailbox is full"), "{err}");
}

#[tokio::test]
async fn a_literal_over_the_cap_is_refused_without_buffering_it() {
    let mut steps = open_steps("UIDPLUS");
    steps.push((
        "UID FETCH 5 BODY.PEEK[]",
        "* 1 FETCH (UID 5 BODY[] {400000000}\r\nFrom: a@b\r\n".into(),
    ));
    let (port, _server) = serve(GREETING, steps).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let started = Instant::now();
    let err = up.fetch(&message(5)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, FetchError::Protocol(_)), "{err:?}");
    assert!(
        err.to_string().contains("announced 400000000 bytes"),
        "{err}"
    );
    // The session is out of step now: refused, not reused.
    let err = up.list_new().await.unwrap_err();
    assert!(err.to_string().contains("unusable"), "{err}");
}

#[tokio::test]
async fn a_message_announced_over_the_cap_is_not_requested() {
    let (port, server) = serve(GREETING, open_steps("UIDPLUS")).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let big = UpstreamMessage {
        key: "imap:77:5".into(),
        size: 1_000 + 64 * 1024 + 1,
        leftover: false,
    };
    let err = up.fetch(&big).await.unwrap_err();
    assert!(err.to_string().contains("fetch the headers only"), "{err}");
    // Another UIDVALIDITY is refused too, without asking the server.
    let stale = UpstreamMessage {
        key: "imap:76:5".into(),
        size: 10,
        leftover: false,
    };
    assert!(
        up.fetch(&stale)
            .await
            .unwrap_err()
            .to_string()
            .contains("UIDVALIDITY")
    );
    assert!(up.mark(&stale, Verdict::Processed).await.is_err());
    drop(up);
    assert_eq!(server.await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_vanished_message_is_an_error() {
    let mut steps = open_steps("UIDPLUS");
    steps.push(("UID FETCH 5 BODY.PEEK[]", "{tag} OK no messages\r\n".into()));
    steps.push((
        "UID FETCH 6 BODY.PEEK[HEADER]",
        "* 2 FETCH (UID 6 BODY[HEADER] {12}\r\nSubject: x\r\n)\r\n{tag} OK done\r\n".into(),
    ));
    let (port, _server) = serve(GREETING, steps).await;
    let mut up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let err = up.fetch(&message(5)).await.unwrap_err();
    assert!(err.to_string().contains("no such message"), "{err}");
    // A NO-less miss does not break the session.
    assert_eq!(
        up.fetch_headers(&message(6)).await.unwrap(),
        b"Subject: x\r\n"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let mut steps = open_steps("UIDPLUS");
    steps.push(("UID SEARCH", String::new()));
    let (port, _server) = serve(GREETING, steps).await;
    let mut s = settings(port, Security::None, label());
    s.connect.command_timeout = Duration::from_millis(300);
    let mut up = ImapUpstream::open(&s).await.unwrap();
    let started = Instant::now();
    let err = up.list_new().await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_silent_greeting_times_out() {
    let (port, _server) = serve("", vec![]).await;
    let mut s = settings(port, Security::None, label());
    s.connect.connect_timeout = Duration::from_millis(300);
    let err = ImapUpstream::open(&s).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn idle_reports_new_mail_and_ends_with_done() {
    let mut steps = open_steps("IDLE UIDPLUS");
    steps.push(("IDLE", "+ idling\r\n* 4 EXISTS\r\n".into()));
    steps.push(("DONE", "{tag} OK idle done\r\n".into()));
    let (port, server) = serve(GREETING, steps).await;
    let up = ImapUpstream::open(&settings(port, Security::None, label()))
        .await
        .unwrap();
    let (up, changed) = up.wait_for_change(Duration::from_secs(10)).await.unwrap();
    assert!(changed);
    drop(up);
    let seen = server.await.unwrap();
    assert_eq!(&seen[5..], ["IDLE", "DONE"]);
}

#[test]
fn futures_are_send() {
    fn send<T: Send>(_: T) {}
    fn check(up: &mut ImapUpstream, m: &UpstreamMessage, s: &ImapSettings) {
        send(up.list_new());
        send(up.fetch(m));
        send(up.fetch_headers(m));
        send(up.mark(m, Verdict::Processed));
        send(ImapUpstream::open(s));
        send(ImapUpstream::probe(s));
    }
    fn check_owned(up: ImapUpstream) {
        send(up.wait_for_change(Duration::from_secs(1)));
    }
    fn check_finish(up: ImapUpstream) {
        send(up.finish());
    }
    let _ = (check, check_owned, check_finish);
}

#[tokio::test]
async fn a_password_with_a_line_break_is_never_sent() {
    let (port, server) = serve(GREETING, vec![]).await;
    let mut s = settings(port, Security::None, label());
    s.connect.credential = Credential::Password(Secret::new("pw\r\nmg9 DELETE INBOX"));
    let err = ImapUpstream::open(&s).await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(!format!("{err}{err:?}").contains("DELETE"), "{err:?}");
    assert!(server.await.unwrap().is_empty());
}
