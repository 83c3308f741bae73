//! The POP3 upstream against a real Dovecot: POP3S and STLS verified
//! through a private CA, login failures, UIDL listing, byte-exact RETR,
//! TOP, and deletions that take effect only at QUIT.
mod support;

use std::time::Duration;

use mailgate::inbound::pull::providers::pop3::{Pop3Settings, Pop3Upstream};
use mailgate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Upstream, UpstreamMessage, Verdict,
};
use mailgate::mail::{AfterImport, Credential, Secret, Security};
use support::dovecot::{Dovecot, PASSWORD, USER};

fn settings(d: &Dovecot, security: Security, after: AfterImport) -> Pop3Settings {
    let port = match security {
        Security::Tls => d.pop3s_port,
        Security::StartTls | Security::None => d.pop3_port,
    };
    Pop3Settings {
        connect: ConnectSettings {
            host: "localhost".into(),
            port,
            security,
            user: USER.into(),
            credential: Credential::Password(Secret::new(PASSWORD)),
            ca_file: Some(d.ca_file.clone()),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
        },
        after,
        max_message_size: 1024 * 1024,
    }
}

const PLAIN: &[u8] = b"From: Alice <alice@example.com>\r\n\
To: support@example.org\r\n\
Subject: first\r\n\
Message-ID: <one@example.com>\r\n\
\r\n\
Hello.\r\n";

/// Lines that need dot-stuffing, and 8-bit bytes (UTF-8 and a lone Latin-1 é).
const DOTS_8BIT: &[u8] = b"From: Bob <bob@example.com>\r\n\
To: support@example.org\r\n\
Subject: dots\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
.\r\n\
..\r\n\
.leading dot\r\n\
...three\r\n\
Gr\xc3\xbc\xc3\x9fe, caf\xe9 \xe2\x82\xac\r\n\
.\r\n\
end\r\n";

/// Big enough to cross many socket reads.
fn large() -> Vec<u8> {
    let mut m = b"From: Carol <carol@example.com>\r\nSubject: large\r\n\r\n".to_vec();
    for i in 0..4000 {
        m.extend_from_slice(
            format!(".{i:05} the quick brown fox jumps over the lazy dog\r\n").as_bytes(),
        );
    }
    m
}

fn headers_of(raw: &[u8]) -> &[u8] {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    &raw[..end]
}

fn keys(list: &[UpstreamMessage]) -> Vec<String> {
    list.iter().map(|m| m.key.clone()).collect()
}

#[tokio::test]
async fn pop3s_stls_and_plain_with_ca_file() {
    let d = Dovecot::start();
    d.save("INBOX", PLAIN);
    d.save("INBOX", DOTS_8BIT);
    for security in [Security::Tls, Security::StartTls, Security::None] {
        let probe = Pop3Upstream::probe(&settings(&d, security, AfterImport::Keep))
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}\n{}", d.log()));
        assert_eq!(probe.messages, 2, "{security:?}");
        assert_eq!(probe.unseen, None);
        assert_eq!(probe.folder, None);
        assert!(
            probe.capabilities.iter().any(|c| c == "UIDL"),
            "{:?}",
            probe.capabilities
        );
        assert!(
            probe.capabilities.iter().any(|c| c == "TOP"),
            "{:?}",
            probe.capabilities
        );

        let mut session = Pop3Upstream::open(&settings(&d, security, AfterImport::Keep))
            .await
            .unwrap();
        let list = session.list_new().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(session.fetch(&list[1]).await.unwrap(), DOTS_8BIT);
        session.finish().await.unwrap();
    }
    assert_eq!(d.count("INBOX"), 2);
}

#[tokio::test]
async fn tls_fails_without_the_ca_file() {
    let d = Dovecot::start();
    for security in [Security::Tls, Security::StartTls] {
        let mut cfg = settings(&d, security, AfterImport::Keep);
        cfg.connect.ca_file = None;
        let err = Pop3Upstream::open(&cfg).await.unwrap_err();
        assert!(matches!(err, FetchError::Tls { .. }), "{security:?}: {err}");
        assert_eq!(err.kind(), "tls");
    }
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let d = Dovecot::start();
    let mut cfg = settings(&d, Security::Tls, AfterImport::Keep);
    cfg.connect.credential = Credential::Password(Secret::new("wrong"));
    let err = Pop3Upstream::open(&cfg).await.unwrap_err();
    match &err {
        FetchError::Auth { user, detail } => {
            assert_eq!(user, USER);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(!format!("{err} {err:?} {cfg:?}").contains("wrong"));
}

#[tokio::test]
async fn list_fetch_and_headers_are_byte_exact() {
    let d = Dovecot::start();
    let large = large();
    let messages: [&[u8]; 3] = [PLAIN, DOTS_8BIT, &large];
    for raw in messages {
        d.save("INBOX", raw);
    }
    let mut session = Pop3Upstream::open(&settings(&d, Security::Tls, AfterImport::Keep))
        .await
        .unwrap();
    let list = session.list_new().await.unwrap();
    assert_eq!(list.len(), 3);
    for (m, raw) in list.iter().zip(messages) {
        assert!(m.key.starts_with("pop3:") && m.key.len() > 5, "{}", m.key);
        assert_eq!(m.size, raw.len() as u64, "{}", m.key);
    }
    let mut unique = keys(&list);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3);
    // Out of order, and twice: RETR does not consume anything.
    for i in [2, 0, 1, 1] {
        let got = session.fetch(&list[i]).await.unwrap();
        assert!(
            got == messages[i],
            "message {i} differs:\n{}",
            String::from_utf8_lossy(&got)
        );
    }
    for (m, raw) in list.iter().zip(messages) {
        assert_eq!(session.fetch_headers(m).await.unwrap(), headers_of(raw));
    }
    session.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 3);

    // A limit smaller than the message (+64 KiB slack) refuses it.
    let mut cfg = settings(&d, Security::Tls, AfterImport::Keep);
    cfg.max_message_size = 1000;
    let mut session = Pop3Upstream::open(&cfg).await.unwrap();
    let list = session.list_new().await.unwrap();
    assert_eq!(session.fetch(&list[0]).await.unwrap(), PLAIN);
    assert!(large.len() > 1000 + 64 * 1024);
    assert!(matches!(
        session.fetch(&list[2]).await,
        Err(FetchError::Protocol(_))
    ));
    // The header block of the oversize message is still available.
    assert_eq!(
        session.fetch_headers(&list[2]).await.unwrap(),
        headers_of(&large)
    );
    session.finish().await.unwrap();
}

#[tokio::test]
async fn delete_takes_effect_only_at_quit() {
    let d = Dovecot::start();
    for raw in [PLAIN, DOTS_8BIT, PLAIN] {
        d.save("INBOX", raw);
    }

    // Dropped without finish: nothing is deleted.
    let mut session = Pop3Upstream::open(&settings(&d, Security::StartTls, AfterImport::Delete))
        .await
        .unwrap();
    let first = session.list_new().await.unwrap();
    for m in &first {
        session.mark(m, Verdict::Processed).await.unwrap();
    }
    drop(session);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.count("INBOX"), 3);

    // Same UIDLs in the next session; DELE two of them, then QUIT.
    let mut session = Pop3Upstream::open(&settings(&d, Security::StartTls, AfterImport::Delete))
        .await
        .unwrap();
    let list = session.list_new().await.unwrap();
    assert_eq!(keys(&list), keys(&first));
    session.mark(&list[0], Verdict::Processed).await.unwrap();
    session.mark(&list[2], Verdict::Rejected).await.unwrap();
    assert_eq!(d.count("INBOX"), 3, "deleted before QUIT");
    session.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 1);

    let mut session = Pop3Upstream::open(&settings(&d, Security::Tls, AfterImport::Delete))
        .await
        .unwrap();
    let rest = session.list_new().await.unwrap();
    assert_eq!(keys(&rest), vec![list[1].key.clone()]);
    assert_eq!(session.fetch(&rest[0]).await.unwrap(), DOTS_8BIT);
    session.finish().await.unwrap();
}

#[tokio::test]
async fn keep_mode_keeps_and_uidls_are_stable() {
    let d = Dovecot::start();
    d.save("INBOX", PLAIN);
    d.save("INBOX", DOTS_8BIT);
    let mut session = Pop3Upstream::open(&settings(&d, Security::Tls, AfterImport::Keep))
        .await
        .unwrap();
    let first = session.list_new().await.unwrap();
    for m in &first {
        session.fetch(m).await.unwrap();
        session.mark(m, Verdict::Processed).await.unwrap();
    }
    session.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 2);

    // New mail is appended; old UIDLs stay what they were.
    let third = b"From: x@example.com\r\nSubject: third\r\n\r\nx\r\n";
    d.save("INBOX", third);
    let mut session = Pop3Upstream::open(&settings(&d, Security::StartTls, AfterImport::Keep))
        .await
        .unwrap();
    let again = session.list_new().await.unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(again[..2], first[..]);
    assert!(!keys(&first).contains(&again[2].key));
    assert_eq!(session.fetch(&again[2]).await.unwrap(), third);
    session.finish().await.unwrap();
    assert_eq!(d.count("INBOX"), 3);
}

#[tokio::test]
async fn move_and_label_are_refused() {
    let d = Dovecot::start();
    let after = AfterImport::Move {
        processed: "Done".into(),
        rejected: "Rejected".into(),
    };
    let err = Pop3Upstream::open(&settings(&d, Security::Tls, after))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
}
