//! The token provider against the fake authorization server of the test
//! suite (tests/integration/fakes/oauth_server.py, HTTPS with a CA made
//! here): caching, single flight, rotation stored and taken over by the
//! next start, expiry, invalid_grant, backoff, refused tokens.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::http::HttpClient;
use super::provider::{Clock, MailboxTokens, OAuthContext};
use super::vault::{MemoryVault, TokenCipher, TokenVault};
use crate::config::oauth2::{OAuth2Config, OAuthProvider, SecretSource, TokenUse};
use crate::mail::TokenError;

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_SECRET: &str = "client-secret-value-never-logged";
const SEED: &str = "rt-seed-from-the-admin";

struct Fake {
    child: Child,
    port: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
    http: HttpClient,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_private(path: &Path, text: &str) {
    crate::auth::private_fs::create_file(path, text.as_bytes()).unwrap();
}

fn start(flavor: &str) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fakes/oauth_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--cert", "cert.pem", "--key", "key.pem", "--flavor", flavor])
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--refresh-token", SEED])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the fake token endpoint");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = serde_json::from_str::<Value>(&line).expect("the fake prints its port")["port"]
        .as_u64()
        .unwrap() as u16;
    let http = HttpClient::new(Some(ca.clone()), Duration::from_secs(10)).unwrap();
    Fake {
        child,
        port,
        ca,
        dir,
        http,
    }
}

impl Fake {
    async fn control(&self, body: Value) -> Value {
        let request = http::Request::post(format!("https://127.0.0.1:{}/control", self.port))
            .body(Bytes::from(body.to_string()))
            .unwrap();
        serde_json::from_slice(&self.http.send(request, 1 << 20).await.unwrap().body).unwrap()
    }

    async fn state(&self) -> Value {
        self.control(json!({})).await
    }

    fn config(&self, provider: OAuthProvider) -> OAuth2Config {
        let secret = self.dir.path().join("client-secret");
        let seed = self.dir.path().join("refresh-token");
        if !secret.exists() {
            write_private(&secret, CLIENT_SECRET);
            write_private(&seed, SEED);
        }
        let token_url = match provider {
            OAuthProvider::Microsoft => {
                format!("https://127.0.0.1:{}/contoso/oauth2/v2.0/token", self.port)
            }
            OAuthProvider::Google => format!("https://127.0.0.1:{}/token", self.port),
        };
        OAuth2Config {
            provider,
            client_id: CLIENT_ID.into(),
            client_secret: SecretSource::File(secret),
            tenant: Some("contoso".into()),
            token_url,
            authorize_url: format!("https://127.0.0.1:{}/authorize", self.port),
            scopes: None,
            scopes_by_use: Vec::new(),
            refresh_token: Some(SecretSource::File(seed)),
            client_secret_expires: None,
            ca_file: Some(self.ca.clone()),
            timeout: Duration::from_secs(10),
        }
    }
}

struct Setup {
    vault: Arc<MemoryVault>,
    cipher: Arc<TokenCipher>,
    now: Arc<AtomicI64>,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            vault: Arc::new(MemoryVault::default()),
            cipher: Arc::new(TokenCipher::new(&[9u8; 32]).unwrap()),
            now: Arc::new(AtomicI64::new(1_800_000_000)),
        }
    }

    fn provider(&self, config: &OAuth2Config) -> Arc<MailboxTokens> {
        let now = self.now.clone();
        let clock: Clock = Arc::new(move || now.load(Ordering::SeqCst));
        let ctx = OAuthContext {
            vault: self.vault.clone(),
            cipher: self.cipher.clone(),
            metrics: None,
            clock,
        };
        MailboxTokens::new("support", config, &ctx).unwrap()
    }

    fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    fn stored_refresh_token(&self) -> Option<String> {
        let record = self.vault.load("support").unwrap().unwrap();
        self.cipher
            .open_secrets("support", &record)
            .unwrap()
            .refresh_token
    }
}

#[tokio::test]
async fn one_refresh_serves_concurrent_and_later_callers_until_shortly_before_expiry() {
    let fake = start("google");
    let setup = Setup::new();
    let tokens = setup.provider(&fake.config(OAuthProvider::Google));
    let source = tokens.for_use(TokenUse::Gmail);
    let mut calls = Vec::new();
    for _ in 0..6 {
        let s = source.clone();
        calls.push(tokio::spawn(async move { s.token().await }));
    }
    let mut got = Vec::new();
    for c in calls {
        got.push(c.await.unwrap().unwrap().expose().to_string());
    }
    for _ in 0..3 {
        got.push(source.token().await.unwrap().expose().to_string());
    }
    assert!(got.iter().all(|t| *t == got[0]), "{got:?}");
    let state = fake.state().await;
    assert_eq!(state["refreshes"], 1);
    assert_eq!(state["issued_access_tokens"][0], got[0].as_str());
    assert_eq!(
        state["requests"][0]["scope"],
        "https://www.googleapis.com/auth/gmail.modify"
    );
    // 3600 s tokens are handed out until 5 minutes before they expire.
    setup.advance(3600 - 301);
    assert_eq!(source.token().await.unwrap().expose(), got[0]);
    setup.advance(2);
    let next = source.token().await.unwrap();
    assert_ne!(next.expose(), got[0]);
    assert_eq!(fake.state().await["refreshes"], 2);
    let shown = format!(
        "{tokens:?} {:?} {next:?}",
        setup.vault.load("support").unwrap()
    );
    assert!(
        !shown.contains(next.expose()) && !shown.contains(SEED) && !shown.contains(CLIENT_SECRET),
        "{shown}"
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used_by_the_next_start() {
    let fake = start("microsoft");
    let setup = Setup::new();
    let config = fake.config(OAuthProvider::Microsoft);
    let first = setup.provider(&config);
    let token = first.token(TokenUse::Imap).await.unwrap();
    let state = fake.state().await;
    let rotated = state["issued_refresh_tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state["valid_refresh_tokens"], json!([rotated]));
    assert_eq!(
        setup.stored_refresh_token().as_deref(),
        Some(rotated.as_str())
    );
    assert_eq!(
        state["requests"][0]["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    );

    // A restart: the same config still names the seed (now invalid at the
    // fake); the stored, rotated token wins. The access token is reused.
    let second = setup.provider(&config);
    assert_eq!(
        second.token(TokenUse::Imap).await.unwrap().expose(),
        token.expose()
    );
    // Another use needs its own access token: refreshed with the rotated one.
    second.token(TokenUse::Smtp).await.unwrap();
    let state = fake.state().await;
    assert_eq!(state["refreshes"], 2);
    let again = state["issued_refresh_tokens"][1].as_str().unwrap();
    assert_eq!(setup.stored_refresh_token().as_deref(), Some(again));
    let record = setup.vault.load("support").unwrap().unwrap();
    assert_eq!(
        record.health.refresh_token_origin,
        Some(super::vault::RefreshTokenOrigin::Rotated)
    );

    // A new refresh token in the config (the admin's) replaces the stored one.
    let seed = config.refresh_token.clone().unwrap();
    let SecretSource::File(path) = seed else {
        unreachable!()
    };
    std::fs::write(&path, "rt-new-from-the-admin").unwrap();
    fake.control(json!({"add_refresh_token": "rt-new-from-the-admin"}))
        .await;
    let third = setup.provider(&config);
    third.token(TokenUse::Graph).await.unwrap();
    assert_eq!(
        fake.state().await["requests"][2]["scope"],
        "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send offline_access"
    );
}

#[tokio::test]
async fn invalid_grant_is_revoked_with_the_providers_text_and_not_retried_at_once() {
    let fake = start("microsoft");
    fake.control(json!({"revoke": "all"})).await;
    let setup = Setup::new();
    let tokens = setup.provider(&fake.config(OAuthProvider::Microsoft));
    let e = tokens.token(TokenUse::Imap).await.unwrap_err();
    let TokenError::Revoked { error, description } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(error, "invalid_grant");
    assert!(
        description.as_deref().unwrap().starts_with("AADSTS70008:"),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        !text.contains(SEED) && !text.contains(CLIENT_SECRET),
        "{text}"
    );
    let health = setup.vault.load("support").unwrap().unwrap().health;
    assert!(
        health
            .last_refresh_error
            .as_deref()
            .unwrap()
            .contains("AADSTS70008")
    );
    assert_eq!(health.last_refresh_error_kind.as_deref(), Some("revoked"));
    assert!(health.failing_since.is_some());
    // Within the backoff: the same answer, no new request.
    assert_eq!(tokens.token(TokenUse::Imap).await.unwrap_err(), e);
    assert_eq!(fake.state().await["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn transient_failures_back_off_then_recover() {
    let fake = start("microsoft");
    fake.control(json!({"fail": {"status": 503, "count": 1}}))
        .await;
    let setup = Setup::new();
    let tokens = setup.provider(&fake.config(OAuthProvider::Microsoft));
    let e = tokens.token(TokenUse::Graph).await.unwrap_err();
    assert!(
        matches!(&e, TokenError::Unavailable(t) if t.contains("503")),
        "{e:?}"
    );
    assert_eq!(tokens.token(TokenUse::Graph).await.unwrap_err(), e);
    assert_eq!(fake.state().await["requests"].as_array().unwrap().len(), 1);
    setup.advance(31);
    tokens.token(TokenUse::Graph).await.unwrap();
    let health = setup.vault.load("support").unwrap().unwrap().health;
    assert_eq!(health.last_refresh_error, None);
    assert_eq!(health.failing_since, None);
    assert_eq!(health.refreshes, 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured() {
    let fake = start("google");
    fake.control(json!({"fail": {"status": 429, "count": 1, "retry_after": 120}}))
        .await;
    let setup = Setup::new();
    let tokens = setup.provider(&fake.config(OAuthProvider::Google));
    let e = tokens.token(TokenUse::Gmail).await.unwrap_err();
    assert!(
        matches!(&e, TokenError::Unavailable(t) if t.contains("429") && t.contains("Retry-After 120")),
        "{e:?}"
    );
    // Past the usual first backoff (30 s) but not the 120 s asked for.
    setup.advance(60);
    assert_eq!(tokens.token(TokenUse::Gmail).await.unwrap_err(), e);
    assert_eq!(fake.state().await["requests"].as_array().unwrap().len(), 1);
    setup.advance(61);
    tokens.token(TokenUse::Gmail).await.unwrap();
    assert_eq!(fake.state().await["refreshes"], 1);
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_a_bad_client_secret_is_not_configured() {
    let fake = start("google");
    let setup = Setup::new();
    let config = fake.config(OAuthProvider::Google);
    let tokens = setup.provider(&config);
    let source = tokens.for_use(TokenUse::Imap);
    let first = source.token().await.unwrap();
    source.refused(&first);
    let second = source.token().await.unwrap();
    assert_ne!(first.expose(), second.expose());
    assert_eq!(fake.state().await["refreshes"], 2);

    fake.control(json!({"client_secret": "another"})).await;
    source.refused(&second);
    let e = source.token().await.unwrap_err();
    assert!(
        matches!(&e, TokenError::NotConfigured(t) if t.starts_with("invalid_client")),
        "{e:?}"
    );
}
