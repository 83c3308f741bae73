//! The Gmail API upstream and send transport against the fake Gmail API
//! (tests/integration/fakes/gmail.py, written from Google's reference),
//! over HTTPS verified through a private CA, driven by the real sync
//! engine: paging, a token expiring mid-sync, rate limits, labels by
//! outcome (created when missing), oversize mail never downloaded whole,
//! a lost mark redone without a second import, the MIME sent intact.

#[path = "support/engine.rs"]
mod engine_support;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use mailgate::config::Config;
use mailgate::inbound::pull::connect::UpstreamSettings;
use mailgate::inbound::pull::engine::{SyncContext, sync_once};
use mailgate::inbound::pull::providers::gmail::{GmailSettings, GmailUpstream};
use mailgate::inbound::pull::upstream::{ConnectSettings, FetchError, Upstream};
use mailgate::mail::access_token::TokenFuture;
use mailgate::mail::{AccessTokens, Credential, Secret, Security, TokenError};
use mailgate::oauth::http::HttpClient;
use mailgate::outbound::transport::gmail::GmailTransport;
use mailgate::outbound::transport::{Envelope, Transport};

/// Tokens handed out in order; `refused` moves on to the next one.
struct Tokens {
    list: Vec<&'static str>,
    at: AtomicUsize,
    refused: AtomicUsize,
}

impl Tokens {
    fn new(list: &[&'static str]) -> Arc<Tokens> {
        Arc::new(Tokens {
            list: list.to_vec(),
            at: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        })
    }
}

impl AccessTokens for Tokens {
    fn token(&self) -> TokenFuture<'_> {
        let at = self.at.load(Ordering::SeqCst);
        let t = self.list.get(at).map(|t| Secret::new(*t));
        Box::pin(async move { t.ok_or_else(|| TokenError::Unavailable("no more tokens".into())) })
    }
    fn refused(&self, token: &Secret) {
        self.refused.fetch_add(1, Ordering::SeqCst);
        if self.list.get(self.at.load(Ordering::SeqCst)) == Some(&token.expose()) {
            self.at.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Fake {
    child: Child,
    base: String,
    ca_file: PathBuf,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mailgate test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

impl Fake {
    fn start(tokens: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = certificates();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fakes/gmail.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--cert")
            .arg(dir.path().join("cert.pem"))
            .arg("--key")
            .arg(dir.path().join("key.pem"));
        for t in tokens {
            cmd.arg("--token").arg(t);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("fake said {line:?}"))
            .trim()
            .parse()
            .unwrap();
        let http = HttpClient::new(Some(ca_file.clone()), Duration::from_secs(20)).unwrap();
        Fake {
            child,
            base: format!("https://localhost:{port}"),
            ca_file,
            http,
            _dir: dir,
        }
    }

    async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}/_control/{path}", self.base))
            .body(Bytes::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let r = self.http.send(request, 64 << 20).await.unwrap();
        assert!(r.status.is_success(), "{path}: {:?}", r.body);
        serde_json::from_slice(&r.body).unwrap()
    }

    async fn add(&self, raw: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let v = self
            .control("POST", "messages", json!({"raw_b64": b64}))
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn state(&self) -> Value {
        self.control("GET", "state", json!({})).await
    }

    async fn labels_of(&self, id: &str) -> Vec<String> {
        let state = self.state().await;
        let names: std::collections::HashMap<String, String> = state["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().into(),
                    l["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let m = state["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()
            .clone();
        let mut out: Vec<String> = m["labelIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| names[l.as_str().unwrap()].clone())
            .collect();
        out.sort();
        out
    }

    async fn requests(&self) -> Vec<String> {
        self.state().await["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }

    fn settings(&self, tokens: Arc<Tokens>, max: u64) -> GmailSettings {
        GmailSettings {
            connect: ConnectSettings {
                host: "localhost".into(),
                port: 443,
                security: Security::Tls,
                user: "me".into(),
                credential: Credential::OAuth2(tokens),
                ca_file: Some(self.ca_file.clone()),
                connect_timeout: Duration::from_secs(20),
                command_timeout: Duration::from_secs(20),
            },
            http: Ok(self.http.clone()),
            api_base: self.base.clone(),
            label: "INBOX".into(),
            processed_label: "Mailgate".into(),
            rejected_label: "RejectedByMailgate".into(),
            max_message_size: max,
            backoff: Duration::from_millis(10),
            retries: 3,
        }
    }
}

fn context(dir: &std::path::Path, max: u64) -> SyncContext {
    engine_support::context(dir, max, "gmail", "gmail://me@localhost/INBOX", "me")
}

fn raw(n: u32) -> Vec<u8> {
    let mut m = format!(
        "From: Customer {n} <c{n}@example.test>\r\nTo: support@example.test\r\nSubject: help {n}\r\n\
         Message-ID: <g{n}@example.test>\r\nContent-Type: text/plain; charset=latin1\r\n\r\nLine {n}.\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"caf\xe9 \xff\xfe\xfb\r\n");
    m
}

fn tickets(ctx: &SyncContext) -> usize {
    ctx.store
        .list_tickets(&Default::default(), None, 100)
        .unwrap()
        .items
        .len()
}

fn processed() -> Vec<String> {
    vec!["INBOX".to_string(), "Mailgate".to_string()]
}

#[tokio::test]
async fn pages_are_followed_and_messages_labelled_by_outcome() {
    let fake = Fake::start(&["tok-1"]);
    fake.control("POST", "page", json!({"max": 3})).await;
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(fake.add(&raw(n)).await);
    }
    let bad = fake.add(b"\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let settings = fake.settings(Tokens::new(&["tok-1"]), 1 << 20);
    let up = GmailUpstream::open(&settings).await.unwrap();
    assert_eq!(up.label_id(), "INBOX");
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!(
        (report.listed, report.imported, report.rejected),
        (8, 7, 1),
        "{report:?}"
    );
    assert_eq!(tickets(&ctx), 7);
    for id in &ids {
        assert_eq!(fake.labels_of(id).await, processed());
    }
    assert_eq!(
        fake.labels_of(&bad).await,
        vec!["INBOX", "Mailgate", "RejectedByMailgate"]
    );
    let requests = fake.requests().await;
    let lists: Vec<_> = requests
        .iter()
        .filter(|r| r.starts_with("GET /gmail/v1/users/me/messages?"))
        .collect();
    assert_eq!(lists.len(), 3, "8 messages, 3 a page: {lists:?}");
    assert!(
        lists[0].contains("q=is%3Aunread+label%3AINBOX"),
        "{}",
        lists[0]
    );
    assert!(lists[1].contains("pageToken="), "{}", lists[1]);
    let creates = requests
        .iter()
        .filter(|r| r.starts_with("POST /gmail/v1/users/me/labels"))
        .count();
    assert_eq!(creates, 2, "each label created once, then its id cached");
    // Nothing unread is left: the next sync lists nothing.
    let again = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap();
    assert_eq!(again.listed, 0);
    // Probe: the label's counts.
    let probe = GmailUpstream::probe(&settings).await.unwrap();
    assert_eq!((probe.messages, probe.unseen), (8, Some(0)));
}

#[tokio::test]
async fn a_token_expiring_mid_sync_is_refreshed_once() {
    let fake = Fake::start(&[]);
    // tok-a is good for 4 requests (labels, list, 2 gets), then refused.
    fake.control(
        "POST",
        "tokens",
        json!({"tokens": ["tok-a", "tok-b"], "limits": {"tok-a": 4}}),
    )
    .await;
    let ids = [
        fake.add(&raw(1)).await,
        fake.add(&raw(2)).await,
        fake.add(&raw(3)).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let tokens = Tokens::new(&["tok-a", "tok-b"]);
    let up = GmailUpstream::open(&fake.settings(tokens.clone(), 1 << 20))
        .await
        .unwrap();
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!(report.imported, 3, "{report:?}");
    assert_eq!(tokens.refused.load(Ordering::SeqCst), 1);
    for id in &ids {
        assert_eq!(fake.labels_of(id).await, processed());
    }

    // A token the server refuses even fresh: an auth error, not a loop.
    let bad = Tokens::new(&["nope-1", "nope-2"]);
    let err = GmailUpstream::open(&fake.settings(bad.clone(), 1 << 20))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("UNAUTHENTICATED"), "{err}");
    assert!(!err.to_string().contains("nope-"), "{err}");
    assert_eq!(bad.refused.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rate_limits_back_off_then_throttle() {
    let fake = Fake::start(&["tok"]);
    let id = fake.add(&raw(1)).await;
    fake.control(
        "POST",
        "errors",
        json!({"status": 429, "reason": "rateLimitExceeded", "count": 2, "match": "GET /gmail/v1/users/me/messages?"}),
    )
    .await;
    fake.control(
        "POST",
        "errors",
        json!({"status": 403, "reason": "userRateLimitExceeded", "count": 1, "match": "format=raw"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let settings = fake.settings(Tokens::new(&["tok"]), 1 << 20);
    let report = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(fake.labels_of(&id).await, processed());
    let requests = fake.requests().await;
    assert_eq!(
        requests.iter().filter(|r| r.contains("format=raw")).count(),
        2,
        "the raw download was tried again after the 403"
    );

    // A rate limit that does not go away: Throttled, with the server's Retry-After.
    fake.add(&raw(2)).await;
    fake.control(
        "POST",
        "errors",
        json!({"status": 429, "count": 10, "match": "messages?", "retry_after": 0}),
    )
    .await;
    let err = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "throttled", "{err}");
    assert!(err.to_string().contains("RESOURCE_EXHAUSTED"), "{err}");
}

#[tokio::test]
async fn an_oversize_message_is_never_downloaded_whole() {
    let fake = Fake::start(&["tok"]);
    let big = format!(
        "From: big@example.test\r\nTo: support@example.test\r\nSubject: large\r\nMessage-ID: <big@example.test>\r\n\r\n{}\r\n",
        "x".repeat(20_000)
    );
    let id = fake.add(big.as_bytes()).await;
    let small = fake.add(&raw(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 4096);
    let settings = fake.settings(Tokens::new(&["tok"]), 4096);
    let report = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap();
    assert_eq!((report.imported, report.rejected), (1, 1), "{report:?}");
    let requests = fake.requests().await;
    assert!(
        !requests
            .iter()
            .any(|r| r.contains(&id) && r.contains("format=raw")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains(&id) && r.contains("format=metadata"))
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains(&small) && r.contains("format=raw"))
    );
    assert_eq!(
        fake.labels_of(&id).await,
        vec!["INBOX", "Mailgate", "RejectedByMailgate"]
    );
    let rejections = ctx.store.list_rejections(None, None, 10).unwrap().items;
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].reason.to_string(), "oversize");
}

#[tokio::test]
async fn a_lost_mark_is_done_by_the_next_sync_without_a_second_import() {
    let fake = Fake::start(&["tok"]);
    let id = fake.add(&raw(1)).await;
    // The commit succeeds, then the modify call fails (as if the gateway
    // died between the two): the message stays unread upstream.
    fake.control(
        "POST",
        "errors",
        json!({"status": 400, "reason": "failedPrecondition", "count": 1, "match": "/modify"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let settings = fake.settings(Tokens::new(&["tok"]), 1 << 20);
    let err = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "protocol", "{err}");
    assert_eq!(tickets(&ctx), 1);
    assert_eq!(
        fake.labels_of(&id).await,
        vec!["INBOX", "UNREAD"],
        "the modify was refused: untouched upstream"
    );
    let report = sync_once(&ctx, GmailUpstream::open(&settings).await.unwrap())
        .await
        .unwrap();
    assert_eq!((report.imported, report.resumed), (0, 1), "{report:?}");
    assert_eq!(tickets(&ctx), 1, "exactly once");
    assert_eq!(fake.labels_of(&id).await, processed());
    let raws = fake
        .requests()
        .await
        .iter()
        .filter(|r| r.contains("format=raw"))
        .count();
    assert_eq!(raws, 1, "the committed message was not downloaded again");
}

#[tokio::test]
async fn settings_from_the_config_reach_the_fake() {
    let fake = Fake::start(&["tok"]);
    fake.add(&raw(1)).await;
    let toml = format!(
        "[server]\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\n\
         [mailbox.oauth2]\nprovider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n\
         [mailbox.upstream]\nprotocol=\"gmail\"\napi_base=\"{}\"\nca_file=\"{}\"\n",
        fake.base,
        fake.ca_file.display()
    );
    let config = Config::parse(&toml).unwrap();
    let upstream = config.mailboxes[0].upstream.as_ref().unwrap();
    assert_eq!(upstream.user, "me");
    let settings =
        UpstreamSettings::new(upstream, Credential::OAuth2(Tokens::new(&["tok"])), 1 << 20);
    let probe = settings.probe().await.unwrap();
    assert_eq!((probe.messages, probe.unseen), (1, Some(1)));
    let mut up = settings.open().await.unwrap();
    assert_eq!(up.list_new().await.unwrap().len(), 1);
    up.finish().await.unwrap();
    // A password cannot work with the Gmail API.
    let settings =
        UpstreamSettings::new(upstream, Credential::Password(Secret::new("pw")), 1 << 20);
    assert_eq!(settings.open().await.err().unwrap().kind(), "unsupported");
}

#[tokio::test]
async fn send_delivers_the_mime_intact() {
    let fake = Fake::start(&["tok-b"]);
    let tokens = Tokens::new(&["tok-a", "tok-b"]);
    let transport = GmailTransport::new(fake.http.clone(), &fake.base, "me", tokens.clone());
    let mime = b"From: support@example.test\r\nTo: Customer <c@example.test>\r\nSubject: Re: help \xc3\xa9\r\n\
                 Message-ID: <out1@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnswer \xc3\xa9.\r\n.\r\n"
        .to_vec();
    let envelope = Envelope {
        from: "support@example.test".into(),
        recipients: vec!["c@example.test".into()],
    };
    let delivery = transport.send(&envelope, &mime).await.unwrap();
    assert_eq!(delivery.accepted, vec!["c@example.test".to_string()]);
    assert_eq!(
        tokens.refused.load(Ordering::SeqCst),
        1,
        "tok-a refused, tok-b used"
    );
    let sent = fake.state().await["sent"].as_array().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let got = base64::engine::general_purpose::STANDARD
        .decode(sent[0].as_str().unwrap())
        .unwrap();
    assert_eq!(got, mime, "byte for byte");

    // Gmail refuses a message with no recipient header: permanent.
    let no_to = b"From: support@example.test\r\nSubject: x\r\n\r\nbody\r\n";
    let hidden = Envelope {
        from: "support@example.test".into(),
        recipients: vec!["h@example.test".into()],
    };
    // ...but an envelope recipient is added as Bcc, so this one is sent.
    transport.send(&hidden, no_to).await.unwrap();
    fake.control(
        "POST",
        "errors",
        json!({"status": 400, "reason": "invalidArgument", "count": 1, "match": "send"}),
    )
    .await;
    let err = transport.send(&envelope, &mime).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    fake.control(
        "POST",
        "errors",
        json!({"status": 429, "reason": "rateLimitExceeded", "count": 1, "match": "send"}),
    )
    .await;
    let err = transport.send(&envelope, &mime).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(err.to_string().contains("rateLimitExceeded"), "{err}");
}
