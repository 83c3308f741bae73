//! Drives a submission session (AUTH required) with arbitrary client bytes,
//! to explore the SASL exchange and everything around it.
//!
//! The first bytes choose TLS on or off (an implicit-TLS listener, or one
//! offering STARTTLS), the line-ending policy, the chunk sizes of the reads
//! and the verdicts given to each `Authenticate` in turn. Checks: no panic;
//! credentials are only ever asked for under TLS; every message comes from
//! an authenticated session; output stays bounded; once closed, closed.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mailgate::proto::smtp::reply::Reply;
use mailgate::proto::smtp::session::{
    AuthOffer, AuthResult, BareLf, Event, RecipientPolicy, Session, SessionConfig,
};

const MAX_MESSAGE: usize = 4096;
const MAX_LINE: usize = 128;
const MAX_COMMANDS: usize = 200;
const VERDICTS: [AuthResult; 4] = [
    AuthResult::Accepted,
    AuthResult::Rejected,
    AuthResult::TemporaryFailure,
    AuthResult::Blocked,
];

/// Accepts one domain; refuses senders outside it once authenticated.
struct OneDomain;

impl RecipientPolicy for OneDomain {
    fn check_recipient(&self, address: &str) -> Result<String, Reply> {
        match address.rsplit_once('@') {
            Some((local, domain)) if domain.eq_ignore_ascii_case("example.com") => {
                Ok(local.to_owned())
            }
            _ => Err(Reply::new(550, Some((5, 7, 1)), "relaying denied")),
        }
    }

    fn check_sender(&self, auth_user: Option<&str>, address: &str) -> Result<(), Reply> {
        assert!(auth_user.is_some(), "MAIL FROM reached without AUTH");
        if address.ends_with("@example.com") {
            Ok(())
        } else {
            Err(Reply::new(550, Some((5, 7, 1)), "sender not allowed"))
        }
    }
}

/// Splits off a length byte and that many (1..=16) bytes after it.
fn take_prefix(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = data.split_first()?;
    let n = usize::from(n % 16) + 1;
    Some(rest.split_at(n.min(rest.len())))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((sizes, rest)) = take_prefix(rest) else {
        return;
    };
    let Some((verdicts, input)) = take_prefix(rest) else {
        return;
    };
    let config = SessionConfig {
        hostname: "submit.example.com".into(),
        max_message_size: MAX_MESSAGE,
        max_recipients: 5,
        max_line_length: MAX_LINE,
        max_commands: MAX_COMMANDS,
        max_errors: 20,
        bare_lf: if flags & 2 == 0 {
            BareLf::Normalize
        } else {
            BareLf::Reject
        },
        starttls_available: flags & 1 == 0,
        auth: AuthOffer::Required,
    };
    let mut session = Session::new(Arc::new(config), flags & 1 != 0);
    session.greeting();
    let mut output = session.take_output().len();
    let mut closed = false;
    let mut pos = 0;
    let mut chunk = 0;
    let mut asked = 0;
    while pos < input.len() && !closed {
        let size = sizes
            .get(chunk % sizes.len().max(1))
            .map_or(input.len(), |s| usize::from(*s) + 1);
        chunk += 1;
        let end = (pos + size).min(input.len());
        session.feed(&input[pos..end]);
        pos = end;
        loop {
            match session.poll(&OneDomain) {
                Event::NeedInput => break,
                Event::Authenticate(credentials) => {
                    assert!(session.is_tls());
                    assert!(session.auth_user().is_none());
                    assert_eq!(format!("{:?}", credentials.password), "<redacted>");
                    let verdict = verdicts
                        .get(asked % verdicts.len().max(1))
                        .map_or(AuthResult::Rejected, |v| VERDICTS[usize::from(*v) % 4]);
                    asked += 1;
                    session.auth_done(verdict);
                    if verdict == AuthResult::Accepted {
                        assert_eq!(session.auth_user(), Some(credentials.user.as_str()));
                    }
                }
                Event::Message(envelope, body) => {
                    assert!(body.len() <= MAX_MESSAGE);
                    assert!(envelope.auth_user.is_some());
                    assert!(!envelope.recipients.is_empty() && envelope.recipients.len() <= 5);
                    session.message_done(Reply::new(250, Some((2, 0, 0)), "queued"));
                }
                Event::Oversize(envelope, info) => {
                    assert!(envelope.auth_user.is_some());
                    assert!(info.size > MAX_MESSAGE);
                }
                Event::StartTls => {
                    assert!(session.is_tls());
                    session.tls_established();
                }
                Event::Close => {
                    closed = true;
                    break;
                }
            }
        }
        output += session.take_output().len();
    }
    if closed {
        session.feed(b"NOOP\r\n");
        assert!(matches!(session.poll(&OneDomain), Event::Close));
        assert!(session.take_output().is_empty());
    }
    // At most one reply per line plus a few closing lines, none longer than
    // the EHLO/HELP replies.
    assert!(output <= (MAX_COMMANDS + 4) * 256, "output {output}");
});
