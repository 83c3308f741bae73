//! The Microsoft Graph upstream and sendMail transport against the fake
//! Graph (tests/integration/fakes/graph.py, written from Microsoft's
//! documentation), driven through the real sync engine and store: paging,
//! an access token expiring mid-sync, 429 + Retry-After, categories by
//! outcome, move mode, oversize never downloaded, a cut between commit and
//! mark, sendMail with the MIME intact.

#[path = "support/engine.rs"]
mod engine_support;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use mailgate::inbound::pull::engine::{SyncContext, SyncError, sync_once};
use mailgate::inbound::pull::providers::graph::{GraphSettings, GraphUpstream};
use mailgate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Upstream, UpstreamMessage, Verdict,
};
use mailgate::mail::access_token::TokenFuture;
use mailgate::mail::{AccessTokens, AfterImport, Credential, Secret, Security};
use mailgate::oauth::http::HttpClient;
use mailgate::outbound::transport::graph::GraphTransport;
use mailgate::outbound::transport::{Envelope, Transport};

const USER: &str = "support@contoso.test";

/// The fake as a child process (it ends when its stdin closes).
struct Fake {
    child: Child,
    port: u16,
    ca: PathBuf,
    http: HttpClient,
    _dir: tempfile::TempDir,
}

impl Fake {
    fn start() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/fakes/graph.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake Graph");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        let ca = dir.path().join("ca.pem");
        let http = HttpClient::new(Some(ca.clone()), Duration::from_secs(30)).unwrap();
        Fake {
            child,
            port,
            ca,
            http,
            _dir: dir,
        }
    }

    fn base(&self) -> String {
        format!("https://localhost:{}/v1.0", self.port)
    }

    async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost:{}/_fake/{path}", self.port))
            .body(Bytes::from(body.to_string()))
            .unwrap();
        let response = self.http.send(request, 64 << 20).await.unwrap();
        assert!(response.status.is_success(), "{path}: {:?}", response);
        serde_json::from_slice(&response.body).unwrap()
    }

    async fn tokens(&self, accept: &[&str], expire_after: Value) {
        self.control(
            "POST",
            "tokens",
            json!({"accept": accept, "expire_after": expire_after}),
        )
        .await;
    }

    async fn add(&self, folder: &str, mime: &[u8], extra: Value) -> String {
        let mut body = json!({
            "user": USER,
            "folder": folder,
            "mime_b64": base64::engine::general_purpose::STANDARD.encode(mime),
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        self.control("POST", "messages", body).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn state(&self) -> Value {
        self.control("GET", "state", json!({})).await
    }

    async fn message(&self, id: &str) -> Value {
        let state = self.state().await;
        state["users"][USER]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hands out the tokens in order; `refused` moves on to the next.
struct Tokens {
    list: Vec<&'static str>,
    at: Mutex<usize>,
    refused: Mutex<Vec<String>>,
}

impl Tokens {
    fn new(list: &[&'static str]) -> Arc<Tokens> {
        Arc::new(Tokens {
            list: list.to_vec(),
            at: Mutex::new(0),
            refused: Mutex::new(Vec::new()),
        })
    }
    fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

impl AccessTokens for Tokens {
    fn token(&self) -> TokenFuture<'_> {
        let at = *self.at.lock().unwrap();
        let t = self.list[at.min(self.list.len() - 1)];
        Box::pin(async move { Ok(Secret::new(t)) })
    }
    fn refused(&self, token: &Secret) {
        self.refused
            .lock()
            .unwrap()
            .push(token.expose().to_string());
        *self.at.lock().unwrap() += 1;
    }
}

fn label() -> AfterImport {
    AfterImport::Label {
        processed: "Mailgate".into(),
        rejected: "RejectedByMailgate".into(),
    }
}

fn settings(
    fake: &Fake,
    tokens: Arc<Tokens>,
    folder: &str,
    after: AfterImport,
    max: u64,
) -> GraphSettings {
    GraphSettings {
        connect: ConnectSettings {
            host: String::new(),
            port: 443,
            security: Security::Tls,
            user: USER.into(),
            credential: Credential::OAuth2(tokens),
            ca_file: Some(fake.ca.clone()),
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(30),
        },
        api_base: fake.base(),
        folder: folder.into(),
        after,
        max_message_size: max,
    }
}

fn context(dir: &std::path::Path, max: u64) -> SyncContext {
    engine_support::context(dir, max, "graph", "graph", USER)
}

fn mime(n: u32) -> Vec<u8> {
    format!(
        "From: Customer {n} <c{n}@example.org>\r\nTo: {USER}\r\nSubject: help {n}\r\n\
         Message-ID: <g{n}@example.org>\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn auto_reply(n: u32) -> Vec<u8> {
    format!(
        "From: robot@example.org\r\nTo: {USER}\r\nSubject: Out of office {n}\r\n\
         Auto-Submitted: auto-replied\r\nMessage-ID: <auto{n}@example.org>\r\n\r\naway\r\n"
    )
    .into_bytes()
}

fn categories(m: &Value) -> Vec<String> {
    m["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pages_categories_by_outcome_and_immutable_ids() {
    let fake = Fake::start();
    fake.tokens(&["t1"], json!({})).await;
    fake.control("POST", "config", json!({"max_page": 2})).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(fake.add("inbox", &mime(n), json!({})).await);
    }
    let rejected = fake.add("inbox", &auto_reply(5), json!({})).await;
    let tagged = fake
        .add("inbox", &mime(6), json!({"categories": ["Blue category"]}))
        .await;
    let read = fake.add("inbox", &mime(7), json!({"isRead": true})).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let tokens = Tokens::new(&["t1"]);
    let up = GraphUpstream::open(&settings(&fake, tokens.clone(), "Inbox", label(), 1 << 20))
        .await
        .unwrap();
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!((report.listed, report.imported, report.rejected), (6, 5, 1));
    for id in ids.iter().chain([&tagged]) {
        let m = fake.message(id).await;
        assert_eq!(m["isRead"], true, "{m}");
        assert!(categories(&m).contains(&"Mailgate".to_string()), "{m}");
        assert!(
            !categories(&m).contains(&"RejectedByMailgate".to_string()),
            "{m}"
        );
        // The identity committed is the immutable id.
        assert!(
            ctx.store
                .upstream_seen("support", &format!("graph:{id}"))
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(
        categories(&fake.message(&tagged).await),
        ["Blue category", "Mailgate"]
    );
    let r = fake.message(&rejected).await;
    assert_eq!(categories(&r), ["Mailgate", "RejectedByMailgate"]);
    assert_eq!(fake.message(&read).await["value_downloads"], 0);
    // Six unread at two a page: three pages, the later ones by $skiptoken.
    let state = fake.state().await;
    let listings: Vec<&Value> = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().ends_with("/messages"))
        .collect();
    assert_eq!(listings.len(), 3, "{listings:?}");
    assert!(listings[1]["query"]["$skiptoken"].is_string());
    // Oldest first: the tickets' order follows the mail's.
    let subjects: Vec<String> = ctx
        .store
        .list_rejections(None, None, 10)
        .unwrap()
        .items
        .iter()
        .map(|r| r.subject.clone().unwrap_or_default())
        .collect();
    assert_eq!(subjects, ["Out of office 5"]);
    // A second sync finds nothing new.
    let up = GraphUpstream::open(&settings(&fake, tokens, "inbox", label(), 1 << 20))
        .await
        .unwrap();
    assert_eq!(sync_once(&ctx, up).await.unwrap().listed, 0);
}

#[tokio::test]
async fn an_access_token_expiring_mid_sync_is_refreshed_once() {
    let fake = Fake::start();
    // t1 works for three requests (folder, list, first download), then 401.
    fake.tokens(&["t1", "t2"], json!({"t1": 3})).await;
    for n in 1..=3 {
        fake.add("inbox", &mime(n), json!({})).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let tokens = Tokens::new(&["t1", "t2"]);
    let up = GraphUpstream::open(&settings(&fake, tokens.clone(), "inbox", label(), 1 << 20))
        .await
        .unwrap();
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!(report.imported, 3);
    assert_eq!(tokens.refused(), ["t1"]);
    // A token the fake never accepts: refused, retried once, then Auth.
    let bad = Tokens::new(&["nope", "still-nope"]);
    let err = GraphUpstream::open(&settings(&fake, bad.clone(), "inbox", label(), 1 << 20))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, FetchError::Auth { .. }), "{err:?}");
    assert!(
        err.to_string().contains("InvalidAuthenticationToken"),
        "{err}"
    );
    assert_eq!(bad.refused(), ["nope"]);
}

#[tokio::test]
async fn throttling_ends_the_sync_with_the_servers_retry_after() {
    let fake = Fake::start();
    fake.tokens(&["t1"], json!({})).await;
    let id = fake.add("inbox", &mime(1), json!({})).await;
    fake.control(
        "POST",
        "inject",
        json!({"method": "GET", "path_contains": "/$value", "status": 429,
               "code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit.",
               "retry_after": 7, "times": 1}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let tokens = Tokens::new(&["t1"]);
    let up = GraphUpstream::open(&settings(&fake, tokens.clone(), "inbox", label(), 1 << 20))
        .await
        .unwrap();
    match sync_once(&ctx, up).await {
        Err(SyncError::Fetch(FetchError::Throttled {
            retry_after,
            detail,
        })) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(detail.contains("429 ApplicationThrottled"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.message(&id).await["isRead"], false);
    // The next sync (the scheduler waits at least 7 s first) imports it.
    let up = GraphUpstream::open(&settings(&fake, tokens, "inbox", label(), 1 << 20))
        .await
        .unwrap();
    assert_eq!(sync_once(&ctx, up).await.unwrap().imported, 1);
    assert_eq!(fake.message(&id).await["isRead"], true);
}

#[tokio::test]
async fn move_mode_moves_by_outcome_from_a_folder_path() {
    let fake = Fake::start();
    fake.tokens(&["t1"], json!({})).await;
    fake.control(
        "POST",
        "folders",
        json!({"user": USER, "path": "Inbox/Rejected"}),
    )
    .await;
    let ok = fake.add("Inbox/Support", &mime(1), json!({})).await;
    let bad = fake.add("Inbox/Support", &auto_reply(2), json!({})).await;
    let elsewhere = fake.add("inbox", &mime(3), json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let after = AfterImport::Move {
        processed: "archive".into(),
        rejected: "Inbox/Rejected".into(),
    };
    let tokens = Tokens::new(&["t1"]);
    let up = GraphUpstream::open(&settings(&fake, tokens, "inbox/support", after, 1 << 20))
        .await
        .unwrap();
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!((report.imported, report.rejected), (1, 1));
    let m = fake.message(&ok).await;
    assert_eq!(
        (
            m["folder"].as_str().unwrap(),
            m["isRead"].as_bool().unwrap()
        ),
        ("Archive", true)
    );
    let m = fake.message(&bad).await;
    assert_eq!(m["folder"], "Inbox/Rejected");
    // Only the configured folder was read.
    let m = fake.message(&elsewhere).await;
    assert_eq!(
        (
            m["folder"].as_str().unwrap(),
            m["isRead"].as_bool().unwrap()
        ),
        ("Inbox", false)
    );
    // A folder that does not exist is a folder error naming it.
    let err = GraphUpstream::open(&settings(
        &fake,
        Tokens::new(&["t1"]),
        "Inbox/Nope",
        label(),
        1 << 20,
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, FetchError::Folder { folder, .. } if folder == "Inbox/Nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_oversize_message_is_recorded_from_its_headers_without_downloading_it() {
    let fake = Fake::start();
    fake.tokens(&["t1"], json!({})).await;
    let mut big = mime(1);
    big.extend(std::iter::repeat_n(b'x', 20_000));
    let id = fake.add("inbox", &big, json!({})).await;
    let small = fake.add("inbox", &mime(2), json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 10_000);
    let up = GraphUpstream::open(&settings(
        &fake,
        Tokens::new(&["t1"]),
        "inbox",
        label(),
        10_000,
    ))
    .await
    .unwrap();
    let report = sync_once(&ctx, up).await.unwrap();
    assert_eq!((report.imported, report.rejected), (1, 1));
    let m = fake.message(&id).await;
    assert_eq!(m["value_downloads"], 0, "the big one was downloaded");
    assert_eq!(categories(&m), ["Mailgate", "RejectedByMailgate"]);
    assert_eq!(fake.message(&small).await["value_downloads"], 1);
    let rejections = ctx
        .store
        .list_rejections(Some("oversize"), None, 10)
        .unwrap()
        .items;
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].subject.as_deref(), Some("help 1"));
    assert_eq!(rejections[0].size, big.len() as u64);
}

/// The real upstream, but its session is cut before any mark.
struct CutBeforeMark(GraphUpstream);

impl Upstream for CutBeforeMark {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        self.0.list_new().await
    }
    async fn fetch(&mut self, m: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        self.0.fetch(m).await
    }
    async fn fetch_headers(&mut self, m: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        self.0.fetch_headers(m).await
    }
    async fn mark(&mut self, _: &UpstreamMessage, _: Verdict) -> Result<(), FetchError> {
        Err(FetchError::Io("connection lost".into()))
    }
    async fn finish(self) -> Result<(), FetchError> {
        self.0.finish().await
    }
}

#[tokio::test]
async fn a_cut_between_commit_and_mark_neither_loses_nor_duplicates() {
    let fake = Fake::start();
    fake.tokens(&["t1"], json!({})).await;
    let id = fake.add("inbox", &mime(1), json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), 1 << 20);
    let s = settings(&fake, Tokens::new(&["t1"]), "inbox", label(), 1 << 20);
    let up = GraphUpstream::open(&s).await.unwrap();
    let err = sync_once(&ctx, CutBeforeMark(up)).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Fetch(FetchError::Io(_))),
        "{err:?}"
    );
    // Committed, not marked.
    assert!(
        ctx.store
            .upstream_seen("support", &format!("graph:{id}"))
            .unwrap()
            .is_some()
    );
    assert_eq!(fake.message(&id).await["isRead"], false);
    let report = sync_once(&ctx, GraphUpstream::open(&s).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        (report.resumed, report.imported, report.duplicates),
        (1, 0, 0)
    );
    let m = fake.message(&id).await;
    assert_eq!(m["isRead"], true);
    assert_eq!(categories(&m), ["Mailgate"]);
    assert_eq!(m["value_downloads"], 1, "downloaded again after the cut");
}

#[tokio::test]
async fn a_password_is_not_a_graph_credential() {
    let fake = Fake::start();
    let mut s = settings(&fake, Tokens::new(&["t1"]), "inbox", label(), 1 << 20);
    s.connect.credential = Credential::Password(Secret::new("pw"));
    let err = GraphUpstream::open(&s).await.err().unwrap();
    assert!(matches!(err, FetchError::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn send_mail_carries_the_mime_intact_and_refreshes_a_refused_token() {
    let fake = Fake::start();
    fake.tokens(&["fresh"], json!({})).await;
    let http = HttpClient::new(Some(fake.ca.clone()), Duration::from_secs(30)).unwrap();
    let tokens = Tokens::new(&["stale", "fresh"]);
    let transport = GraphTransport::new(http, &fake.base(), USER, tokens.clone());
    let mut message = mime(9);
    message.extend_from_slice("caf\u{e9} \r\n.\r\n..leading dots\r\n".as_bytes());
    let envelope = Envelope {
        from: USER.into(),
        recipients: vec!["c9@example.org".into()],
    };
    let delivery = transport.send(&envelope, &message).await.unwrap();
    assert_eq!(delivery.reply, "202 Accepted");
    assert_eq!(delivery.accepted, ["c9@example.org"]);
    assert_eq!(tokens.refused(), ["stale"]);
    let state = fake.state().await;
    let sent = state["sendmail"].as_array().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["content_type"], "text/plain");
    let got = base64::engine::general_purpose::STANDARD
        .decode(sent[0]["mime_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, message);
    // Graph refusing the MIME is permanent, with Graph's words.
    fake.control(
        "POST",
        "inject",
        json!({"method": "POST", "path_contains": "/sendMail", "status": 400,
               "code": "ErrorInvalidRecipients", "message": "At least one recipient isn't valid."}),
    )
    .await;
    let err = transport.send(&envelope, &message).await.unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("ErrorInvalidRecipients"), "{err}");
    // Throttled: temporary.
    fake.control(
        "POST",
        "inject",
        json!({"method": "POST", "path_contains": "/sendMail", "status": 503, "retry_after": 3}),
    )
    .await;
    let err = transport.send(&envelope, &message).await.unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
}
