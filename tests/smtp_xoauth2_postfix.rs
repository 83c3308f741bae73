//! The SMTP relay with OAuth2 (SASL XOAUTH2) against a real Postfix
//! submission service whose SASL is Dovecot's, with Dovecot's oauth2 passdb
//! asking an RFC 7662 introspection fake about every token (the pytest
//! harness, run by tests/integration/serve_postfix_oauth2.py): the message
//! lands in the Maildir; a refused token is reported and a fresh one used
//! once; two refused tokens keep the mail queued with Postfix's reply; a
//! token too long for an AUTH line goes after the 334; no token is in any
//! error or log line.
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate::config::Config;
use mailgate::mail::AccessTokens;
use mailgate::outbound::transport::smtp::{RelaySetupError, SmtpTransport};
use mailgate::outbound::transport::{Envelope, FailureKind, SendError, Transport};
use support::tokens::{Logs, StaticTokens, xoauth2_message};

const USER: &str = "alice@relay.test";
const RCPT: &str = "bob@relay.test";
const GOOD: &str = "at-smtp-good-Qw81Lp3Zx6";
const FRESH: &str = "at-smtp-fresh-Ty52Nb7Hk0";
const STALE: &str = "at-smtp-stale-Uv34Mc9Rj1";
const WRONG: &str = "at-smtp-wrong-Ie67Ds2Gf5";

fn long_token() -> String {
    // Microsoft's access tokens are JWTs well over a thousand characters.
    let mut t = String::from("at-long-");
    while t.len() < 1500 {
        t.push_str("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9");
    }
    t
}

/// The relay (Postfix + its auth Dovecot + the introspection fake).
struct Relay {
    child: Child,
    /// Closing it stops the relay and removes its directory.
    stdin: Option<ChildStdin>,
    info: serde_json::Value,
    calls: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Relay {
    fn start(tokens: &[String]) -> Relay {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/serve_postfix_oauth2.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script);
        for t in tokens {
            cmd.arg("--token").arg(format!("{USER}={t}"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting python3 serve_postfix_oauth2.py");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("serve_postfix_oauth2.py printed nothing (see its stderr)")
            .unwrap();
        let info: serde_json::Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("serve_postfix_oauth2.py said {first:?}: {e}"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut w = line.split(' ');
                if let (Some("CALL"), Some(token), Some(active)) = (w.next(), w.next(), w.next()) {
                    seen.lock()
                        .unwrap()
                        .push((token.to_string(), active == "true"));
                }
            }
        });
        Relay {
            child,
            stdin: Some(stdin),
            info,
            calls,
        }
    }

    fn config(&self) -> mailgate::config::relay::RelayConfig {
        let toml = format!(
            "[server]\nhostname=\"gw.example.test\"\ndomains=[\"example.test\"]\n\
             [[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\n\
             [mailbox.oauth2]\nprovider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n\
             [relay]\nhost=\"localhost\"\nport={}\nsecurity=\"starttls\"\nca_file=\"{}\"\n\
             auth=\"oauth2\"\nuser=\"{USER}\"\noauth2_mailbox=\"support\"\n\
             connect_timeout=\"20s\"\ncommand_timeout=\"30s\"\n",
            self.info["submission_port"],
            self.info["ca_file"].as_str().unwrap()
        );
        Config::parse(&toml).unwrap().relay.unwrap()
    }

    fn maildir(&self, address: &str) -> PathBuf {
        PathBuf::from(self.info["maildirs"][address].as_str().unwrap())
    }

    /// Messages delivered to `address` once there are `n` (Postfix
    /// delivers after it answered DATA).
    fn wait_messages(&self, address: &str, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut got = Vec::new();
            for sub in ["new", "cur"] {
                if let Ok(dir) = std::fs::read_dir(self.maildir(address).join(sub)) {
                    got.extend(dir.flatten().map(|e| std::fs::read(e.path()).unwrap()));
                }
            }
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn calls(&self, n: usize) -> Vec<(String, bool)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let calls = self.calls.lock().unwrap().clone();
            if calls.len() >= n || Instant::now() > deadline {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let read = |key: &str| {
            std::fs::read_to_string(self.info[key].as_str().unwrap()).unwrap_or_default()
        };
        format!("{}\n{}", read("postfix_log"), read("auth_log"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing stdin stops Postfix and Dovecot; wait for the cleanup.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Support <support@example.test>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.test>\r\n\r\nHello over XOAUTH2.\r\n"
    )
    .into_bytes()
}

fn envelope() -> Envelope {
    Envelope {
        from: "support@example.test".into(),
        recipients: vec![RCPT.into()],
    }
}

fn transport(relay: &Relay, tokens: &Arc<StaticTokens>) -> SmtpTransport {
    let source: Arc<dyn AccessTokens> = tokens.clone();
    SmtpTransport::from_config(&relay.config(), Some(source)).unwrap()
}

#[tokio::test]
async fn xoauth2_through_postfix_and_dovecot_sasl() {
    let long = long_token();
    let relay = Relay::start(&[GOOD.into(), FRESH.into(), long.clone()]);
    let (logs, _guard) = Logs::capture();

    // A good token: accepted, the message is delivered.
    let tokens = StaticTokens::new(&[GOOD]);
    let t = transport(&relay, &tokens);
    let offered = t
        .probe()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", relay.logs()));
    assert_eq!(offered.authenticated_as.as_deref(), Some(USER));
    assert!(
        offered.capabilities.iter().any(|c| c.contains("XOAUTH2")),
        "{:?}",
        offered.capabilities
    );
    let d = t.send(&envelope(), &message("good")).await.unwrap();
    assert_eq!(d.accepted, vec![RCPT.to_string()]);
    assert!(tokens.refused().is_empty());
    let got = relay.wait_messages(RCPT, 1);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: good"));
    assert_eq!(relay.calls(2), vec![(GOOD.to_string(), true); 2]);

    // A stale token: refused, reported, the fresh one sends the message.
    let tokens = StaticTokens::new(&[STALE, FRESH]);
    let t = transport(&relay, &tokens);
    t.send(&envelope(), &message("fresh"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", relay.logs()));
    assert_eq!(tokens.refused(), vec![STALE.to_string()]);
    assert_eq!(tokens.asked(), 2);
    assert_eq!(relay.wait_messages(RCPT, 2).len(), 2);
    assert_eq!(
        relay.calls(4)[2..],
        [(STALE.to_string(), false), (FRESH.to_string(), true)]
    );

    // A token too long for the AUTH line: sent after the 334.
    let tokens = StaticTokens::new(&[&long]);
    transport(&relay, &tokens)
        .send(&envelope(), &message("long"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", relay.logs()));
    assert_eq!(relay.wait_messages(RCPT, 3).len(), 3);
    assert_eq!(relay.calls(5)[4], (long.clone(), true));

    // Two refused tokens: a temporary auth failure with Postfix's reply,
    // nothing sent, each token reported.
    let tokens = StaticTokens::new(&[STALE, WRONG]);
    let err = transport(&relay, &tokens)
        .send(&envelope(), &message("never"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), FailureKind::Auth, "{err}");
    assert!(!err.is_permanent(), "the mail stays queued");
    let text = err.to_string();
    assert!(text.contains("535"), "{text}");
    assert!(text.contains("\"status\":\"401\""), "{text}");
    assert_eq!(tokens.refused(), vec![STALE.to_string(), WRONG.to_string()]);
    assert_eq!(tokens.asked(), 2, "one retry only");
    assert_eq!(relay.wait_messages(RCPT, 4).len(), 3);

    let shown = format!("{err}{err:?}{}", logs.text());
    for secret in [GOOD, FRESH, STALE, WRONG, long.as_str()] {
        assert!(!shown.contains(secret), "a token in: {shown}");
        assert!(!shown.contains(&xoauth2_message(USER, secret)), "{shown}");
    }
    assert!(matches!(err, SendError::Temporary { .. }));
}

#[test]
fn oauth2_without_a_token_source_is_a_setup_error() {
    let toml = "[server]\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\n\
                addresses=[\"support@example.test\"]\n[mailbox.oauth2]\nprovider=\"google\"\n\
                client_id=\"cid\"\nclient_secret_env=\"CS\"\n[relay]\nhost=\"h\"\nauth=\"oauth2\"\n\
                user=\"u@example.test\"\noauth2_mailbox=\"support\"\n";
    let relay = Config::parse(toml).unwrap().relay.unwrap();
    let err = SmtpTransport::from_config(&relay, None).unwrap_err();
    assert_eq!(err, RelaySetupError::NoTokens("support".into()));
    assert!(err.to_string().contains("relay.oauth2_mailbox"), "{err}");
}
