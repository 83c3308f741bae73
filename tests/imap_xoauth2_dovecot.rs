//! IMAP login with OAuth2 (SASL XOAUTH2) against a real Dovecot whose
//! oauth2 passdb asks an RFC 7662 introspection endpoint (the Python fake)
//! about every token: a good token logs in, with SASL-IR or through the `+`
//! continuation; a refused token is reported to the token source and a
//! fresh one is tried once; two refused tokens are an auth error with the
//! server's text; no token or XOAUTH2 message is in any error or log line.
mod support;

use std::sync::Arc;
use std::time::Duration;

use mailgate::inbound::pull::providers::imap::{ImapSettings, ImapUpstream};
use mailgate::inbound::pull::upstream::{ConnectSettings, FetchError, Upstream};
use mailgate::mail::{AfterImport, Credential, Security};
use support::dovecot::{Dovecot, USER};
use support::introspection::Introspection;
use support::tokens::{Logs, StaticTokens, xoauth2_message};

const GOOD: &str = "at-good-7Hq2fLx9Zp4Rw1";
const FRESH: &str = "at-fresh-Kd83mQv0Tz5Ys6";
const STALE: &str = "at-stale-Bn40cWe2Ju7Pa3";
const WRONG: &str = "at-wrong-Xr19vHk6Lm2Qe8";

fn settings(d: &Dovecot, security: Security, tokens: Arc<StaticTokens>) -> ImapSettings {
    ImapSettings {
        connect: ConnectSettings {
            host: "localhost".into(),
            port: if security == Security::Tls {
                d.imaps_port
            } else {
                d.imap_port
            },
            security,
            user: USER.into(),
            credential: Credential::OAuth2(tokens),
            ca_file: Some(d.ca_file.clone()),
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(30),
        },
        folder: "INBOX".into(),
        after: AfterImport::Label {
            processed: "Mailgate".into(),
            rejected: "RejectedByMailgate".into(),
        },
        max_message_size: 1024 * 1024,
    }
}

#[tokio::test]
async fn a_good_token_logs_in_over_tls_and_starttls() {
    let fake = Introspection::start(&[(USER, GOOD)]);
    let d = Dovecot::start_oauth2(&fake.url());
    d.save(
        "INBOX",
        b"From: c@example.test\r\nSubject: hi\r\n\r\nbody\r\n",
    );
    let (logs, _guard) = Logs::capture();
    for security in [Security::Tls, Security::StartTls] {
        let tokens = StaticTokens::new(&[GOOD]);
        let mut up = ImapUpstream::open(&settings(&d, security, tokens.clone()))
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}\n{}", d.log()));
        assert_eq!(up.list_new().await.unwrap().len(), 1);
        up.finish().await.unwrap();
        assert!(tokens.refused().is_empty());
        assert_eq!(tokens.asked(), 1);
    }
    let calls = fake.wait_calls(2);
    assert_eq!(calls, vec![(GOOD.to_string(), true); 2], "{}", d.log());
    let logged = logs.text();
    assert!(logged.contains("IMAP login"), "the capture works: {logged}");
    assert!(!logged.contains(GOOD) && !logged.contains(&xoauth2_message(USER, GOOD)));
}

#[tokio::test]
async fn without_sasl_ir_the_token_goes_after_the_continuation() {
    let fake = Introspection::start(&[(USER, GOOD)]);
    // No SASL-IR announced: the client must wait for the server's "+".
    let d = Dovecot::start_oauth2_announcing(&fake.url(), "IMAP4rev1 LITERAL+ IDLE");
    let greeting = d.greeting();
    assert!(greeting.contains("AUTH=XOAUTH2"), "{greeting}");
    assert!(!greeting.contains("SASL-IR"), "{greeting}");
    let tokens = StaticTokens::new(&[GOOD]);
    let up = ImapUpstream::open(&settings(&d, Security::Tls, tokens.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    up.finish().await.unwrap();
    assert_eq!(fake.wait_calls(1), vec![(GOOD.to_string(), true)]);
    assert!(tokens.refused().is_empty());
}

#[tokio::test]
async fn a_stale_token_is_refused_once_and_a_fresh_one_used() {
    // STALE is not (or no longer) active at the introspection endpoint.
    let fake = Introspection::start(&[(USER, FRESH)]);
    let d = Dovecot::start_oauth2(&fake.url());
    let (logs, _guard) = Logs::capture();
    let tokens = StaticTokens::new(&[STALE, FRESH]);
    let up = ImapUpstream::open(&settings(&d, Security::Tls, tokens.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    up.finish().await.unwrap();
    assert_eq!(tokens.refused(), vec![STALE.to_string()]);
    assert_eq!(tokens.asked(), 2);
    assert_eq!(
        fake.wait_calls(2),
        vec![(STALE.to_string(), false), (FRESH.to_string(), true)]
    );
    let logged = logs.text();
    for secret in [STALE, FRESH] {
        assert!(!logged.contains(secret), "{logged}");
        assert!(!logged.contains(&xoauth2_message(USER, secret)), "{logged}");
    }
}

#[tokio::test]
async fn two_refused_tokens_are_an_auth_error_with_the_servers_text() {
    let fake = Introspection::start(&[(USER, GOOD)]);
    let d = Dovecot::start_oauth2(&fake.url());
    let (logs, _guard) = Logs::capture();
    let tokens = StaticTokens::new(&[STALE, WRONG]);
    let err = ImapUpstream::open(&settings(&d, Security::StartTls, tokens.clone()))
        .await
        .map(|_| ())
        .unwrap_err();
    match &err {
        FetchError::Auth { user, detail } => {
            assert_eq!(user, USER);
            // Dovecot's tagged NO, and its XOAUTH2 error challenge.
            assert!(
                detail.contains("AUTHENTICATIONFAILED") || detail.contains("Authentication failed"),
                "{detail}"
            );
            assert!(detail.contains("\"status\":\"401\""), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.kind(), "auth");
    assert_eq!(tokens.refused(), vec![STALE.to_string(), WRONG.to_string()]);
    assert_eq!(tokens.asked(), 2, "one retry only");
    assert_eq!(
        fake.wait_calls(2),
        vec![(STALE.to_string(), false), (WRONG.to_string(), false)]
    );
    let shown = format!("{err}{err:?}{}", logs.text());
    for secret in [STALE, WRONG] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(&xoauth2_message(USER, secret)), "{shown}");
    }
}

#[tokio::test]
async fn no_token_source_and_no_xoauth2_at_the_server() {
    // A server without the oauth2 passdb offers no AUTH=XOAUTH2.
    let d = Dovecot::start();
    let tokens = StaticTokens::new(&[GOOD]);
    let err = ImapUpstream::open(&settings(&d, Security::Tls, tokens.clone()))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Unsupported { what } if what.contains("AUTH=XOAUTH2")),
        "{err:?}"
    );
    assert_eq!(
        tokens.asked(),
        0,
        "no token is fetched for a server that cannot take it"
    );

    // A token source that has no token: its error, as an auth failure.
    let fake = Introspection::start(&[(USER, GOOD)]);
    let d = Dovecot::start_oauth2(&fake.url());
    let tokens = StaticTokens::new(&[]);
    let err = ImapUpstream::open(&settings(&d, Security::Tls, tokens))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), "io", "{err:?}");
    assert!(fake.calls().is_empty());
}
