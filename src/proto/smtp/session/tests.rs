//! The session's behaviour, byte for byte: every test feeds client input
//! and checks the replies, events and state the driver would see. The
//! helpers here are shared with `auth_tests.rs`.

use super::*;
use crate::proto::testing::Rng;

/// Accepts `@example.com` (mailbox = local part), except `unknown@`; a
/// sender `forbidden@...` is refused with 550 5.7.1 (see `check_sender`).
pub(super) struct TestPolicy;
impl RecipientPolicy for TestPolicy {
    fn check_recipient(&self, address: &str) -> Result<String, Reply> {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        if address.eq_ignore_ascii_case("postmaster") {
            return Ok("postmaster".into());
        }
        if !domain.eq_ignore_ascii_case("example.com") {
            return Err(Reply::new(550, Some((5, 7, 1)), "relaying denied"));
        }
        if local == "unknown" {
            return Err(Reply::new(550, Some((5, 1, 1)), "unknown user"));
        }
        Ok(local.to_owned())
    }

    fn check_sender(&self, auth_user: Option<&str>, address: &str) -> Result<(), Reply> {
        if address.starts_with("forbidden@") {
            let text = format!("{} may not send as {address}", auth_user.unwrap_or("-"));
            return Err(Reply::new(550, Some((5, 7, 1)), text));
        }
        Ok(())
    }
}

pub(super) fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.com".into(),
        max_message_size: 10_000,
        max_recipients: 3,
        max_line_length: 512,
        max_commands: 100,
        max_errors: 10,
        bare_lf: BareLf::Reject,
        starttls_available: true,
        auth: AuthOffer::Off,
    }
}

pub(super) fn session_with(config: SessionConfig) -> Session {
    session_tls(config, false)
}

/// A session after its greeting (taken), on a listener with or without TLS.
pub(super) fn session_tls(config: SessionConfig, tls: bool) -> Session {
    let mut s = Session::new(Arc::new(config), tls);
    s.greeting();
    s.take_output();
    s
}

fn session() -> Session {
    session_with(config())
}

/// What a driver saw: events (messages answered with 250) and output.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) messages: Vec<(Envelope, Vec<u8>)>,
    pub(super) oversize: Vec<(Envelope, OversizeInfo)>,
    /// Credentials of every `Event::Authenticate`, in order.
    pub(super) auths: Vec<Credentials>,
    pub(super) starttls: bool,
    pub(super) closed: bool,
    pub(super) output: String,
}

impl Outcome {
    /// Codes of the final lines of all replies, in order.
    pub(super) fn codes(&self) -> Vec<u16> {
        self.output
            .split("\r\n")
            .filter(|l| l.as_bytes().get(3) != Some(&b'-') && l.len() >= 3)
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }
}

/// Feeds `input` in one piece and polls until the session needs input.
fn drive(s: &mut Session, input: &[u8]) -> Outcome {
    drive_chunks(s, &[input])
}

fn drive_chunks(s: &mut Session, chunks: &[&[u8]]) -> Outcome {
    // AUTH is off in these tests: any credentials are wrong.
    drive_auth(s, chunks, &mut |_| AuthResult::Rejected)
}

/// Feeds `chunks` one by one, polling after each; `verdict` answers every
/// `Event::Authenticate`.
pub(super) fn drive_auth(
    s: &mut Session,
    chunks: &[&[u8]],
    verdict: &mut dyn FnMut(&Credentials) -> AuthResult,
) -> Outcome {
    let mut out = Outcome::default();
    let mut raw = Vec::new();
    'chunks: for chunk in chunks {
        s.feed(chunk);
        loop {
            match s.poll(&TestPolicy) {
                Event::NeedInput => break,
                Event::Message(env, body) => {
                    out.messages.push((env, body));
                    s.message_done(Reply::new(250, Some((2, 0, 0)), "queued as 1"));
                }
                Event::Oversize(env, info) => out.oversize.push((env, info)),
                Event::Authenticate(credentials) => {
                    raw.extend(s.take_output());
                    s.auth_done(verdict(&credentials));
                    out.auths.push(credentials);
                }
                Event::StartTls => {
                    out.starttls = true;
                    raw.extend(s.take_output());
                    s.tls_established();
                    break 'chunks;
                }
                Event::Close => {
                    out.closed = true;
                    break 'chunks;
                }
            }
        }
    }
    raw.extend(s.take_output());
    out.output = String::from_utf8(raw).unwrap();
    out
}

const TX: &[u8] = b"EHLO client.example\r\nMAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n";

#[test]
fn greeting() {
    let mut s = Session::new(Arc::new(config()), false);
    s.greeting();
    assert_eq!(s.take_output(), b"220 mx.example.com ESMTP mailgate\r\n");
}

#[test]
fn full_transaction() {
    let mut s = session();
    let mut input = TX.to_vec();
    input.extend_from_slice(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n");
    let out = drive(&mut s, &input);
    assert_eq!(out.codes(), [250, 250, 250, 354, 250, 221]);
    assert!(out.closed);
    let (env, body) = &out.messages[0];
    assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    assert_eq!(env.helo, "client.example");
    assert_eq!(env.mail_from, "alice@sender.example");
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.recipients[0].address, "bob@example.com");
    assert_eq!(env.recipients[0].mailbox, "bob");
    assert!(!env.tls);
    assert!(
        out.output
            .contains("250 2.0.0 queued as 1\r\n221 2.0.0 Bye\r\n")
    );
}

#[test]
fn mid_request_covers_partial_lines_and_message_content() {
    let mut s = session();
    assert!(!s.mid_request(), "nothing received yet");
    drive(&mut s, b"EHL");
    assert!(s.mid_request(), "half a command line");
    drive(&mut s, b"O client.example\r\n");
    assert!(!s.mid_request(), "the line was answered");
    drive(
        &mut s,
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n",
    );
    assert!(
        s.mid_request(),
        "after 354 the content is a request under way"
    );
    let out = drive(&mut s, b"Subject: x\r\n\r\nbody\r\n.\r\n");
    assert_eq!(out.messages.len(), 1);
    assert!(!s.mid_request(), "the message was answered");
}

#[test]
fn too_slow_answers_421_and_closes() {
    let mut s = session();
    s.too_slow();
    assert_eq!(
        s.take_output(),
        b"421 4.4.2 mx.example.com request too slow, closing\r\n"
    );
    assert!(
        drive(&mut s, b"NOOP\r\n").output.is_empty(),
        "closed: input ignored"
    );
}

#[test]
fn ehlo_lists_extensions() {
    let out = drive(&mut session(), b"EHLO c\r\n");
    assert_eq!(
        out.output,
        "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n250 HELP\r\n"
    );
    let out = drive(&mut session(), b"HELO c\r\n");
    assert_eq!(out.output, "250 mx.example.com\r\n");
}

#[test]
fn no_starttls_when_unavailable_or_already_tls() {
    let mut implicit = Session::new(Arc::new(config()), true);
    let out = drive(&mut implicit, b"EHLO c\r\nSTARTTLS\r\n");
    assert!(!out.output.contains("250-STARTTLS"));
    assert_eq!(out.codes(), [250, 503]);
    assert!(implicit.is_tls());
    let mut cfg = config();
    cfg.starttls_available = false;
    let out = drive(&mut session_with(cfg), b"EHLO c\r\nSTARTTLS\r\n");
    assert!(!out.output.contains("250-STARTTLS"));
    assert_eq!(out.codes(), [250, 502]);
    assert_eq!(drive(&mut session(), b"STARTTLS now\r\n").codes(), [501]);
}

#[test]
fn starttls_discards_pipelined_plaintext_and_resets() {
    let mut s = session();
    let out = drive(
        &mut s,
        b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n",
    );
    assert!(out.starttls);
    assert!(out.output.ends_with("220 2.0.0 Ready to start TLS\r\n"));
    assert!(s.is_tls());
    // The pipelined MAIL was dropped, and EHLO is required again.
    let out = drive(&mut s, b"MAIL FROM:<a@b.example>\r\nEHLO c\r\n");
    assert_eq!(out.codes(), [503, 250]);
    assert!(!out.output.contains("250-STARTTLS"));
    let out = drive(
        &mut s,
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert!(out.messages[0].0.tls);
    assert_eq!(drive(&mut s, b"STARTTLS\r\n").codes(), [503]);
}

#[test]
fn input_before_tls_established_is_discarded() {
    let mut s = session();
    s.feed(b"EHLO c\r\nSTARTTLS\r\n");
    assert!(matches!(s.poll(&TestPolicy), Event::StartTls));
    s.feed(b"NOOP\r\n");
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    s.tls_established();
    s.take_output();
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    assert!(s.take_output().is_empty());
}

#[test]
fn sequence_errors_are_503() {
    assert_eq!(
        drive(&mut session(), b"MAIL FROM:<a@b.example>\r\n").codes(),
        [503]
    );
    assert_eq!(
        drive(&mut session(), b"EHLO c\r\nRCPT TO:<a@example.com>\r\n").codes(),
        [250, 503]
    );
    assert_eq!(
        drive(&mut session(), b"EHLO c\r\nDATA\r\n").codes(),
        [250, 503]
    );
    assert_eq!(
        drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n"
        )
        .codes(),
        [250, 250, 503]
    );
    assert_eq!(
        drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n"
        )
        .codes(),
        [250, 250, 503]
    );
    // All recipients refused: 554 no valid recipients.
    let out = drive(
        &mut session(),
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 550, 554]);
    assert!(out.output.contains("550 5.7.1 relaying denied\r\n"));
}

#[test]
fn simple_commands() {
    let out = drive(
        &mut session(),
        b"NOOP\r\nRSET\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nAUTH PLAIN AGFAAGI=\r\nFROB\r\n\r\nquit\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 252, 502, 214, 502, 500, 500, 221]);
    assert!(out.output.contains("252 2.1.5 "));
    assert!(out.output.contains("214 2.0.0 "));
    assert!(out.output.contains("500 5.5.2 "));
    assert!(out.closed);
}

#[test]
fn rset_and_ehlo_clear_the_transaction() {
    let out = drive(
        &mut session(),
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<x@example.com>\r\n\
          MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<x@example.com>\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 250, 503, 250, 250, 503]);
}

#[test]
fn pipelined_batch_replies_in_order() {
    let mut s = session();
    let out = drive(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<unknown@example.com>\r\n\
          RCPT TO:<b@other.example>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 250, 550, 550, 250, 354]);
    assert!(out.output.contains("550 5.1.1 unknown user"));
    // Whatever follows DATA is content, even in the same read.
    let out = drive(&mut s, b"x\r\n.\r\nNOOP\r\n");
    assert_eq!(out.codes(), [250, 250]);
    let (env, body) = &out.messages[0];
    assert_eq!(env.mail_from, "");
    assert_eq!(
        env.recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>(),
        ["a@example.com", "Postmaster"]
    );
    assert_eq!(body, b"x\r\n");
}

#[test]
fn nothing_is_processed_while_a_message_awaits_commit() {
    let mut s = session();
    let mut input = TX.to_vec();
    input.extend_from_slice(b"hi\r\n.\r\nNOOP\r\nQUIT\r\n");
    s.feed(&input);
    let Event::Message(_, body) = s.poll(&TestPolicy) else {
        panic!()
    };
    assert_eq!(body, b"hi\r\n");
    let before = s.take_output();
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    assert!(s.take_output().is_empty());
    s.message_done(Reply::new(451, Some((4, 3, 0)), "store failed"));
    assert!(matches!(s.poll(&TestPolicy), Event::Close));
    let after = String::from_utf8(s.take_output()).unwrap();
    assert!(before.ends_with(b"354 End data with <CR><LF>.<CR><LF>\r\n"));
    assert_eq!(
        after,
        "451 4.3.0 store failed\r\n250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"
    );
}

#[test]
fn smuggled_commands_stay_content() {
    for (mode, seqs) in [
        (
            BareLf::Normalize,
            &[&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\n"][..],
        ),
        (BareLf::Reject, &[&b"\r.\r"[..], b"\r.\r\n"][..]),
    ] {
        for seq in seqs {
            let mut cfg = config();
            cfg.bare_lf = mode;
            let mut s = session_with(cfg);
            let mut input = TX.to_vec();
            input.extend_from_slice(b"Subject: x\r\n\r\nhello");
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n.\r\n");
            let out = drive(&mut s, &input);
            assert_eq!(out.messages.len(), 1, "{seq:?}");
            assert_eq!(out.codes(), [250, 250, 250, 354, 250], "{seq:?}");
            let body = &out.messages[0].1;
            assert!(body.ends_with(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n"), "{seq:?}");
            assert_eq!(out.messages[0].0.recipients.len(), 1);
        }
    }
}

#[test]
fn bare_lf_reject_in_data_and_commands() {
    let mut input = TX.to_vec();
    input.extend_from_slice(b"hello\n.\nMAIL FROM:<e@x.example>\r\n");
    let out = drive(&mut session(), &input);
    assert!(out.closed);
    assert!(out.messages.is_empty());
    assert!(
        out.output
            .ends_with("521 5.5.2 mx.example.com Error: bare <LF> received\r\n")
    );
    let out = drive(&mut session(), b"NOOP\nNOOP\r\n");
    assert_eq!(out.codes(), [521]);
    assert!(out.closed);
}

#[test]
fn bare_lf_normalize_in_data_and_commands() {
    let mut cfg = config();
    cfg.bare_lf = BareLf::Normalize;
    let mut s = session_with(cfg);
    let out = drive(
        &mut s,
        b"EHLO c\nMAIL FROM:<a@b.example>\nRCPT TO:<x@example.com>\nDATA\nline1\nline2\r\n.\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 250, 354, 250]);
    assert_eq!(out.messages[0].1, b"line1\r\nline2\r\n");
}

#[test]
fn decoding_is_independent_of_chunking() {
    let mut input = TX.to_vec();
    input.extend_from_slice(b"A: b\r\n\r\n..x\r\n\ry\r.\r\nz\r\n.\r\nNOOP\r\n");
    let whole = drive(&mut session(), &input);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let bytewise = drive_chunks(&mut session(), &bytes);
    assert_eq!(whole.output, bytewise.output);
    assert_eq!(whole.messages[0].1, bytewise.messages[0].1);
    assert_eq!(whole.messages[0].1, b"A: b\r\n\r\n.x\r\n\ry\r.\r\nz\r\n");
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let chunks = rng.chunks(&input, 13);
        let split = drive_chunks(&mut session(), &chunks);
        assert_eq!(split.output, whole.output);
        assert_eq!(split.messages[0].1, whole.messages[0].1);
    }
}

#[test]
fn oversize_message_is_drained_with_552() {
    let mut cfg = config();
    cfg.max_message_size = 100;
    let mut s = session_with(cfg);
    let mut input = TX.to_vec();
    input.extend_from_slice(b"Subject: big\r\n\r\n");
    let mut chunks: Vec<Vec<u8>> = vec![input];
    for _ in 0..100 {
        chunks.push(b"0123456789012345678901234567890123456789\r\n".to_vec());
    }
    chunks.push(b".\r\nNOOP\r\n".to_vec());
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let out = drive_chunks(&mut s, &refs);
    assert_eq!(out.codes(), [250, 250, 250, 354, 552, 250]);
    assert!(out.output.contains("552 5.3.4 "));
    assert!(out.messages.is_empty());
    let (env, info) = &out.oversize[0];
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(info.head, b"Subject: big\r\n\r\n");
    assert_eq!(info.size, 16 + 100 * 42);
    // The transaction is over.
    assert_eq!(drive(&mut s, b"RCPT TO:<a@example.com>\r\n").codes(), [503]);
}

#[test]
fn declared_size_too_big_is_552() {
    let out = drive(
        &mut session(),
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=10001\r\nMAIL FROM:<a@b.example> SIZE=10000\r\n",
    );
    assert_eq!(out.codes(), [250, 552, 250]);
    assert!(out.output.contains("552 5.3.4 "));
    let out = drive(
        &mut session(),
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=999999999999999999999999\r\n",
    );
    assert_eq!(out.codes(), [250, 552]);
}

#[test]
fn mail_parameters_reach_the_envelope() {
    let mut s = session();
    let out = drive(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=5 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n",
    );
    let env = &out.messages[0].0;
    assert_eq!(env.declared_size, Some(5));
    assert!(env.body_8bitmime && env.smtputf8);
    assert_eq!(
        drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example> XFOO=1\r\n"
        )
        .codes(),
        [250, 555]
    );
}

#[test]
fn smtputf8_address_rules() {
    let out = drive(
        &mut session(),
        "EHLO c\r\nMAIL FROM:<jörg@b.example>\r\n".as_bytes(),
    );
    assert_eq!(out.codes(), [250, 553]);
    assert!(out.output.contains("553 5.6.7 "));
    let out = drive(
        &mut session(),
        "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<jörg@example.com>\r\n".as_bytes(),
    );
    assert_eq!(out.codes(), [250, 250, 553]);
    let out = drive(
        &mut session(),
        "EHLO c\r\nMAIL FROM:<jörg@b.example> SMTPUTF8\r\nRCPT TO:<Ünïcode@example.com>\r\n"
            .as_bytes(),
    );
    assert_eq!(out.codes(), [250, 250, 250]);
}

#[test]
fn source_routes_and_quoted_local_parts() {
    let mut s = session();
    let out = drive(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<@relay.example:a@b.example>\r\nRCPT TO:<\"john doe\"@example.com>\r\nDATA\r\nx\r\n.\r\n",
    );
    let env = &out.messages[0].0;
    assert_eq!(env.mail_from, "a@b.example");
    assert_eq!(env.recipients[0].address, "\"john doe\"@example.com");
}

#[test]
fn address_length_limit() {
    let long = format!("EHLO c\r\nMAIL FROM:<{}@b.example>\r\n", "a".repeat(260));
    let out = drive(&mut session(), long.as_bytes());
    assert_eq!(out.codes(), [250, 501]);
    assert!(out.output.contains("501 5.1.7 "));
}

#[test]
fn max_recipients() {
    let out = drive(
        &mut session(),
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@example.com>\r\nRCPT TO:<2@example.com>\r\n\
          RCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\nRCPT TO:<1@example.com>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 250, 250, 250, 452, 250, 354, 250]);
    assert!(out.output.contains("452 4.5.3 "));
    assert_eq!(out.messages[0].0.recipients.len(), 3);
}

#[test]
fn max_commands() {
    let mut cfg = config();
    cfg.max_commands = 3;
    let out = drive(
        &mut session_with(cfg),
        b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), [250, 250, 250, 421]);
    assert!(
        out.output
            .ends_with("421 4.7.0 Error: too many commands\r\n")
    );
    assert!(out.closed);
}

#[test]
fn max_errors_is_a_session_total() {
    let mut cfg = config();
    cfg.max_errors = 3;
    let out = drive(
        &mut session_with(cfg),
        b"FOO\r\nNOOP\r\nBAR\r\nNOOP\r\nRCPT TO:<a@b>\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), [500, 250, 500, 250, 503, 421]);
    assert!(out.output.ends_with("421 4.7.0 Error: too many errors\r\n"));
    assert!(out.closed);
}

#[test]
fn line_too_long() {
    let mut cfg = config();
    cfg.max_line_length = 20;
    let mut s = session_with(cfg);
    // Exactly 20 bytes including CRLF is fine.
    let out = drive(&mut s, b"NOOP 4567890123456\r\n");
    assert_eq!(out.codes(), [250]);
    let out = drive(&mut s, b"NOOP 45678901234567\r\nNOOP\r\n");
    assert_eq!(out.codes(), [500, 250]);
    assert!(out.output.starts_with("500 5.5.6 "));
    // A long line arriving in pieces is discarded as it comes.
    let long = [b'x'; 1000];
    let out = drive_chunks(&mut s, &[b"NOOP ", &long, &long, b"\r\nQUIT\r\n"]);
    assert_eq!(out.codes(), [500, 221]);
    assert!(s.input.capacity() < 4096);
}

#[test]
fn timeout_and_shutdown() {
    let mut s = session();
    s.timed_out();
    assert_eq!(
        s.take_output(),
        b"421 4.4.2 mx.example.com idle timeout, closing\r\n"
    );
    assert!(matches!(s.poll(&TestPolicy), Event::Close));
    let mut s = session();
    s.shutting_down();
    assert!(s.take_output().starts_with(b"421 4.3.2 "));
    s.feed(b"NOOP\r\n");
    assert!(matches!(s.poll(&TestPolicy), Event::Close));
    assert!(s.take_output().is_empty());
}

/// Random bytes (biased toward SMTP-ish tokens) in random chunks: no
/// panic, buffers and output stay bounded.
#[test]
fn random_input_never_panics_and_stays_bounded() {
    const TOKENS: &[&[u8]] = &[
        b"EHLO a\r\n",
        b"HELO a\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<>\r\n",
        b"RCPT TO:<x@example.com>\r\n",
        b"RCPT TO:<y@other.example>\r\n",
        b"DATA\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b"QUIT\r\n",
        b".\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"..",
        b"\x00",
        b"\xff",
        b"<",
        b">",
        b"SIZE=9999999",
        b" ",
        b"x",
    ];
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    for iter in 0..2000 {
        let mut cfg = config();
        cfg.bare_lf = if iter % 2 == 0 {
            BareLf::Normalize
        } else {
            BareLf::Reject
        };
        cfg.max_line_length = 64;
        cfg.max_message_size = 300;
        cfg.max_commands = 50;
        let mut s = session_with(cfg);
        let input = rng.soup(TOKENS, 200);
        let mut rest = &input[..];
        let mut total_out = 0;
        'feed: while !rest.is_empty() {
            let n = rng.size(100).min(rest.len());
            s.feed(&rest[..n]);
            rest = &rest[n..];
            loop {
                let event = s.poll(&TestPolicy);
                assert!(
                    s.input.len() <= 64 + 100,
                    "input buffer grew to {}",
                    s.input.len()
                );
                match event {
                    Event::NeedInput => break,
                    Event::Message(_, body) => {
                        assert!(body.len() <= 300);
                        s.message_done(Reply::new(250, Some((2, 0, 0)), "ok"));
                    }
                    Event::Oversize(_, info) => assert!(info.head.len() <= HEAD_MAX_FOR_TEST),
                    Event::StartTls => s.tls_established(),
                    Event::Authenticate(_) => unreachable!("AUTH is off"),
                    Event::Close => break 'feed,
                }
            }
            total_out += s.take_output().len();
        }
        total_out += s.take_output().len();
        // Every reply is answer to a command (≤ 50 + a few closing lines).
        assert!(total_out <= 60 * 300, "output {total_out}");
    }
}

const HEAD_MAX_FOR_TEST: usize = crate::proto::smtp::data::HEAD_MAX;
