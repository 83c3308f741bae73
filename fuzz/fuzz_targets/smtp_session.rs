//! Drives a whole SMTP session with arbitrary client bytes.
//!
//! The first bytes choose the configuration and the chunk sizes, so libFuzzer
//! explores both protocol content and how it is split across reads. Checks:
//! no panic, output and buffered messages stay bounded, and once the session
//! says Close it stays closed.
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

/// Accepts exactly one domain.
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
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&nsizes, rest)) = rest.split_first() else {
        return;
    };
    let nsizes = usize::from(nsizes % 16) + 1;
    let (sizes, input) = rest.split_at(nsizes.min(rest.len()));
    let config = SessionConfig {
        hostname: "mx.example.com".into(),
        max_message_size: MAX_MESSAGE,
        max_recipients: 5,
        max_line_length: MAX_LINE,
        max_commands: MAX_COMMANDS,
        max_errors: 20,
        bare_lf: if flags & 1 == 0 {
            BareLf::Normalize
        } else {
            BareLf::Reject
        },
        starttls_available: flags & 2 == 0,
        auth: AuthOffer::Off,
    };
    let mut session = Session::new(Arc::new(config), flags & 4 != 0);
    session.greeting();
    let mut output = session.take_output().len();
    let mut closed = false;
    let mut pos = 0;
    let mut chunk = 0;
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
                Event::Message(envelope, body) => {
                    assert!(body.len() <= MAX_MESSAGE);
                    assert!(!envelope.recipients.is_empty() && envelope.recipients.len() <= 5);
                    let reply = if body.len() % 2 == 0 {
                        Reply::new(250, Some((2, 0, 0)), "queued")
                    } else {
                        Reply::new(451, Some((4, 3, 0)), "store failed")
                    };
                    session.message_done(reply);
                }
                Event::Oversize(_, info) => {
                    assert!(info.size > MAX_MESSAGE);
                    assert!(info.head.len() <= 64 * 1024);
                }
                // AUTH is off here (the smtp_sasl target covers it).
                Event::Authenticate(_) => session.auth_done(AuthResult::Rejected),
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
    // At most one reply per command line plus a few closing lines, and no
    // reply is longer than the EHLO/HELP ones.
    assert!(output <= (MAX_COMMANDS + 4) * 256, "output {output}");
});
