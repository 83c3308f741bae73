//! The POP3 client against scripted servers on loopback: the failure
//! paths a well-behaved Dovecot never takes.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Pop3Settings, Pop3Upstream};
use crate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Upstream, UpstreamMessage, Verdict,
};
use crate::mail::{AfterImport, Credential, Secret, Security};
type Handler = fn(&str) -> Option<Vec<u8>>;

/// Accepts one connection, sends `greeting`, then answers each command
/// line with `handler` (None: hang up). Returns the commands seen.
async fn fake(greeting: &'static [u8], handler: Handler) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut seen = Vec::new();
        if write.write_all(greeting).await.is_err() {
            return seen;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => return seen,
                Ok(_) => {}
            }
            let command = line.trim_end().to_string();
            let reply = handler(&command);
            seen.push(command);
            match reply {
                Some(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        return seen;
                    }
                }
                None => return seen,
            }
        }
    });
    (port, task)
}

fn settings(port: u16, security: Security, after: AfterImport) -> Pop3Settings {
    Pop3Settings {
        connect: ConnectSettings {
            host: "127.0.0.1".into(),
            port,
            security,
            user: "u".into(),
            credential: Credential::Password(Secret::new("p w")),
            ca_file: None,
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_millis(500),
        },
        after,
        max_message_size: 100,
    }
}

/// A minimal server: USER/PASS, CAPA without STLS, UIDL, LIST, RETR
/// (message 2 is larger than announced), DELE, QUIT. Bare LF throughout.
fn basic(command: &str) -> Option<Vec<u8>> {
    let reply: &[u8] = match command {
        "CAPA" => b"+OK\nUSER\nUIDL\nTOP\n.\n",
        "USER u" | "PASS p w" | "DELE 1" | "QUIT" => b"+OK\n",
        "UIDL" => b"+OK\n1 aaa\n2 bbb\n.\n",
        "LIST" => b"+OK 2 messages\n1 12\n2 10\n.\n",
        "RETR 1" => b"+OK\nSubject: a\n\n..x\n.\n",
        "TOP 1 0" => b"+OK\nSubject: a\n\n.\n",
        "RETR 2" => {
            let mut big = b"+OK\n".to_vec();
            big.extend(std::iter::repeat_n(b'x', 70_000));
            return Some(big);
        }
        _ => b"-ERR unknown\n",
    };
    Some(reply.to_vec())
}

#[tokio::test]
async fn plain_session_lf_server_and_oversize_retr() {
    let (port, server) = fake(b"+OK hi\n", basic).await;
    let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Delete))
        .await
        .unwrap();
    assert_eq!(s.capabilities(), ["USER", "UIDL", "TOP"]);
    let list = s.list_new().await.unwrap();
    assert_eq!(
        list,
        vec![
            UpstreamMessage {
                key: "pop3:aaa".into(),
                size: 12,
                leftover: false,
            },
            UpstreamMessage {
                key: "pop3:bbb".into(),
                size: 10,
                leftover: false,
            },
        ]
    );
    assert_eq!(s.fetch(&list[0]).await.unwrap(), b"Subject: a\n\n.x\n");
    assert_eq!(s.fetch_headers(&list[0]).await.unwrap(), b"Subject: a\n\n");
    s.mark(&list[0], Verdict::Processed).await.unwrap();
    let unknown = UpstreamMessage {
        key: "pop3:zzz".into(),
        size: 1,
        leftover: false,
    };
    assert!(matches!(
        s.fetch(&unknown).await,
        Err(FetchError::Protocol(_))
    ));
    // Announced 10 bytes, sends 70,000 (limit 100 + 64 KiB): refused mid-body.
    let err = s.fetch(&list[1]).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Protocol(d) if d.contains("larger than")),
        "{err}"
    );
    // Out of step with the server now: nothing more is sent, QUIT included.
    let err = s.finish().await.unwrap_err();
    assert!(err.to_string().contains("unusable"), "{err}");
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        [
            "CAPA", "USER u", "PASS p w", "CAPA", "UIDL", "LIST", "RETR 1", "TOP 1 0", "DELE 1",
            "RETR 2"
        ]
    );
}

#[tokio::test]
async fn oversize_announced_is_refused_before_retr() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            "LIST" => Some(b"+OK\r\n1 999999\r\n.\r\n".to_vec()),
            "UIDL" => Some(b"+OK\r\n1 a\r\n.\r\n".to_vec()),
            _ => basic(command),
        }
    }
    let (port, server) = fake(b"+OK\r\n", handler).await;
    let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap();
    let list = s.list_new().await.unwrap();
    assert!(s.fetch(&list[0]).await.is_err());
    // Keep: mark sends nothing; the session is still fine.
    s.mark(&list[0], Verdict::Rejected).await.unwrap();
    s.finish().await.unwrap();
    let seen = server.await.unwrap();
    assert!(
        !seen
            .iter()
            .any(|c| c.starts_with("RETR") || c.starts_with("DELE")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn greeting_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(stream);
    });
    let mut cfg = settings(port, Security::None, AfterImport::Keep);
    cfg.connect.connect_timeout = Duration::from_millis(300);
    cfg.connect.command_timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let err = Pop3Upstream::open(&cfg).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn command_timeout() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            // Answers half a response, then nothing.
            "UIDL" => Some(b"+OK\r\n1 a\r\n".to_vec()),
            _ => basic(command),
        }
    }
    let (port, _server) = fake(b"+OK\r\n", handler).await;
    let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap();
    let err = s.list_new().await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err}");
}

#[tokio::test]
async fn stls_not_offered_is_refused_before_login() {
    let (port, server) = fake(b"+OK\r\n", basic).await;
    let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
    assert_eq!(server.await.unwrap(), ["CAPA"]);
}

#[tokio::test]
async fn data_after_stls_answer_is_refused() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            "CAPA" => Some(b"+OK\r\nSTLS\r\n.\r\n".to_vec()),
            "STLS" => Some(b"+OK go\r\n+OK injected\r\n".to_vec()),
            _ => None,
        }
    }
    let (port, _server) = fake(b"+OK\r\n", handler).await;
    let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Protocol(d) if d.contains("STLS")),
        "{err}"
    );
}

#[tokio::test]
async fn stls_refused_is_a_tls_error() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            "CAPA" => Some(b"-ERR no\r\n".to_vec()),
            "STLS" => Some(b"-ERR not today\r\n".to_vec()),
            _ => None,
        }
    }
    let (port, _server) = fake(b"+OK\r\n", handler).await;
    let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Tls { detail, .. } if detail.contains("not today")),
        "{err}"
    );
}

#[tokio::test]
async fn auth_plain_when_user_is_not_offered() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            "CAPA" => Some(b"+OK\r\nSASL PLAIN\r\nUIDL\r\n.\r\n".to_vec()),
            // "\0u\0p w"
            "AUTH PLAIN AHUAcCB3" => Some(b"-ERR [AUTH] nope\r\n".to_vec()),
            _ => None,
        }
    }
    let (port, _server) = fake(b"+OK\r\n", handler).await;
    let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Auth { detail, .. } if detail == "[AUTH] nope"),
        "{err}"
    );
}

#[tokio::test]
async fn uidl_missing_is_unsupported_and_bad_input_refused() {
    fn handler(command: &str) -> Option<Vec<u8>> {
        match command {
            "UIDL" => Some(b"-ERR what\r\n".to_vec()),
            _ => basic(command),
        }
    }
    let (port, _server) = fake(b"+OK\r\n", handler).await;
    let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap();
    let err = s.list_new().await.unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
    s.finish().await.unwrap();

    // IMAP-only after-import actions: refused before connecting.
    let label = AfterImport::Label {
        processed: "a".into(),
        rejected: "b".into(),
    };
    let err = Pop3Upstream::open(&settings(1, Security::None, label))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");

    // A password with a line break is never sent.
    let (port, server) = fake(b"+OK\r\n", basic).await;
    let mut cfg = settings(port, Security::None, AfterImport::Keep);
    cfg.connect.credential = Credential::Password(Secret::new("x\r\nDELE 1"));
    let err = Pop3Upstream::open(&cfg).await.unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("DELE"));
    drop(err);
    assert_eq!(server.await.unwrap(), ["CAPA", "USER u"]);
}

#[tokio::test]
async fn greeting_err_and_garbage() {
    let (port, _server) = fake(b"-ERR busy\r\n", basic).await;
    let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Connect { detail, .. } if detail.contains("busy")),
        "{err}"
    );
    let (port, _server) = fake(b"* OK IMAP4rev1\r\n", basic).await;
    let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Protocol(_)), "{err}");
}
