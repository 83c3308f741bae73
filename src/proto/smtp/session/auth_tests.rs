//! AUTH on a submission session, byte for byte: the reply codes of every
//! refusal, both mechanisms in both forms, the hand-over to the caller and
//! back, and that a password never shows in output or Debug. Drives the
//! session with the helpers of `tests.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::tests::{Outcome, TestPolicy, config, drive_auth, session_tls};
use super::*;
use crate::proto::testing::Rng;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55";

fn submission() -> SessionConfig {
    SessionConfig {
        auth: AuthOffer::Required,
        ..config()
    }
}

/// A submission session on an implicit-TLS listener.
fn tls_session() -> Session {
    session_tls(submission(), true)
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The PLAIN message for `authzid NUL user NUL password`.
fn plain(authzid: &str, user: &str, password: &str) -> String {
    b64(format!("{authzid}\0{user}\0{password}").as_bytes())
}

/// Accepts exactly USER / PASSWORD.
fn verdict(c: &Credentials) -> AuthResult {
    if c.user == USER && c.password.expose() == PASSWORD {
        AuthResult::Accepted
    } else {
        AuthResult::Rejected
    }
}

fn drive(s: &mut Session, input: &str) -> Outcome {
    drive_auth(s, &[input.as_bytes()], &mut verdict)
}

#[test]
fn auth_is_advertised_only_under_tls() {
    let out = drive(&mut session_tls(submission(), false), "EHLO c\r\n");
    assert!(!out.output.contains("AUTH"), "{}", out.output);
    assert!(out.output.contains("250-STARTTLS\r\n"));
    let out = drive(&mut tls_session(), "EHLO c\r\n");
    assert!(
        out.output.contains("250-AUTH PLAIN LOGIN\r\n"),
        "{}",
        out.output
    );
    // After STARTTLS, the new EHLO offers it.
    let mut s = session_tls(submission(), false);
    let out = drive(&mut s, "EHLO c\r\nSTARTTLS\r\n");
    assert!(out.starttls);
    let out = drive(&mut s, "EHLO c\r\n");
    assert!(
        out.output.contains("250-AUTH PLAIN LOGIN\r\n"),
        "{}",
        out.output
    );
    assert!(!out.output.contains("STARTTLS"));
}

#[test]
fn auth_before_tls_is_538() {
    let mut s = session_tls(submission(), false);
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\n",
        plain("", USER, PASSWORD)
    );
    let out = drive(&mut s, &input);
    assert_eq!(out.codes(), [250, 538, 538]);
    assert!(
        out.output
            .contains("538 5.7.11 Encryption required for requested authentication mechanism\r\n")
    );
    assert!(out.auths.is_empty());
    assert_eq!(s.auth_user(), None);
}

#[test]
fn mail_before_auth_is_530() {
    for tls in [false, true] {
        let out = drive(
            &mut session_tls(submission(), tls),
            "EHLO c\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n",
        );
        assert_eq!(out.codes(), [250, 530, 503]);
        assert!(out.output.contains("530 5.7.0 Authentication required\r\n"));
    }
    // Without EHLO the sequence error comes first, as on the MX.
    let out = drive(&mut tls_session(), "MAIL FROM:<a@example.com>\r\n");
    assert_eq!(out.codes(), [503]);
}

#[test]
fn plain_with_initial_response() {
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nhi\r\n.\r\n",
        plain("", USER, PASSWORD)
    );
    let out = drive(&mut s, &input);
    assert_eq!(out.codes(), [250, 235, 250, 250, 354, 250]);
    assert!(
        out.output
            .contains("235 2.7.0 Authentication successful\r\n")
    );
    assert_eq!(out.auths.len(), 1);
    assert_eq!(out.auths[0].mechanism, Mechanism::Plain);
    assert_eq!(out.auths[0].user, USER);
    assert_eq!(out.auths[0].password.expose(), PASSWORD);
    assert_eq!(s.auth_user(), Some(USER));
    assert_eq!(out.messages[0].0.auth_user.as_deref(), Some(USER));
    assert!(out.messages[0].0.tls);
}

#[test]
fn plain_without_initial_response() {
    let mut s = tls_session();
    let out = drive(&mut s, "EHLO c\r\nauth plain\r\n");
    assert!(
        out.output.ends_with("250 HELP\r\n334 \r\n"),
        "{:?}",
        out.output
    );
    assert!(out.auths.is_empty());
    let out = drive(&mut s, &format!("{}\r\n", plain(USER, USER, PASSWORD)));
    assert_eq!(out.output, "235 2.7.0 Authentication successful\r\n");
    assert_eq!(out.auths[0].user, USER);
    assert_eq!(s.auth_user(), Some(USER));
}

#[test]
fn login_without_and_with_initial_response() {
    let mut s = tls_session();
    let out = drive(&mut s, "EHLO c\r\nAUTH LOGIN\r\n");
    assert!(out.output.ends_with("250 HELP\r\n334 VXNlcm5hbWU6\r\n"));
    let out = drive(&mut s, &format!("{}\r\n", b64(USER.as_bytes())));
    assert_eq!(out.output, "334 UGFzc3dvcmQ6\r\n");
    let out = drive(&mut s, &format!("{}\r\n", b64(PASSWORD.as_bytes())));
    assert_eq!(out.output, "235 2.7.0 Authentication successful\r\n");
    assert_eq!(out.auths[0].mechanism, Mechanism::Login);
    assert_eq!(out.auths[0].user, USER);
    assert_eq!(out.auths[0].password.expose(), PASSWORD);

    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH LOGIN {}\r\n{}\r\n",
        b64(USER.as_bytes()),
        b64(PASSWORD.as_bytes())
    );
    let out = drive(&mut s, &input);
    assert!(
        out.output
            .ends_with("250 HELP\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n")
    );
    assert_eq!(s.auth_user(), Some(USER));
}

#[test]
fn sequence_errors_are_503() {
    // Before EHLO.
    let input = format!("AUTH PLAIN {}\r\n", plain("", USER, PASSWORD));
    let out = drive(&mut tls_session(), &input);
    assert_eq!(out.codes(), [503]);
    assert!(out.output.starts_with("503 5.5.1 "));
    assert!(out.auths.is_empty());
    // After a successful AUTH, and inside a transaction.
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {p}\r\nAUTH PLAIN {p}\r\nMAIL FROM:<a@example.com>\r\nAUTH LOGIN\r\n",
        p = plain("", USER, PASSWORD)
    );
    let out = drive(&mut tls_session(), &input);
    assert_eq!(out.codes(), [250, 235, 503, 250, 503]);
    assert!(
        out.output
            .contains("503 5.5.1 Error: already authenticated\r\n")
    );
    assert!(
        out.output
            .contains("503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n")
    );
    assert_eq!(out.auths.len(), 1);
}

#[test]
fn mechanism_and_syntax_errors() {
    let out = drive(
        &mut tls_session(),
        "EHLO c\r\nAUTH CRAM-MD5\r\nAUTH XOAUTH2 abc\r\nAUTH\r\nAUTH PLAIN a b\r\n",
    );
    assert_eq!(out.codes(), [250, 504, 504, 501, 501]);
    assert!(out.output.contains("504 5.5.4 "));
    assert!(out.output.contains("501 5.5.4 "));
}

#[test]
fn bad_base64_and_malformed_plain_are_501() {
    let bad = [
        "AUTH PLAIN !!!notbase64".to_owned(),
        "AUTH PLAIN YWxpY2U".to_owned(), // missing padding
        format!("AUTH PLAIN {}", b64(b"alice")),
        format!("AUTH PLAIN {}", b64(b"\0alice")),
        format!("AUTH PLAIN {}", b64(b"\0alice\0")),
        format!("AUTH PLAIN {}", b64(b"\0\0pw")),
        format!("AUTH PLAIN {}", b64(b"a\0alice\0pw\0x")),
        format!("AUTH PLAIN {}", b64(b"\0al\xffce\0pw")),
        "AUTH PLAIN =".to_owned(),
        format!("AUTH LOGIN {}", b64(b"al\0ice")),
        format!("AUTH LOGIN {}", b64(b"\xff")),
    ];
    for line in &bad {
        let out = drive(&mut tls_session(), &format!("EHLO c\r\n{line}\r\nNOOP\r\n"));
        assert_eq!(out.codes(), [250, 501, 250], "{line}");
        assert!(out.output.contains("501 5.5.2 "), "{line}: {}", out.output);
        assert!(out.auths.is_empty(), "{line}");
    }
    // The same as continuation responses.
    let out = drive(
        &mut tls_session(),
        "EHLO c\r\nAUTH PLAIN\r\n%%%\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), [250, 334, 501, 250]);
    let out = drive(&mut tls_session(), "EHLO c\r\nAUTH PLAIN\r\n\r\nNOOP\r\n");
    assert_eq!(out.codes(), [250, 334, 501, 250]);
    let out = drive(
        &mut tls_session(),
        "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\n#\r\nNOOP\r\n",
    );
    assert_eq!(out.codes(), [250, 334, 334, 501, 250]);
    assert!(out.output.contains("501 5.5.2 "));
}

#[test]
fn client_cancels_with_star() {
    for input in [
        "EHLO c\r\nAUTH PLAIN\r\n*\r\n",
        "EHLO c\r\nAUTH LOGIN\r\n*\r\n",
        "EHLO c\r\nAUTH LOGIN YWxpY2U=\r\n*\r\n",
        "EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\n",
    ] {
        let mut s = tls_session();
        let out = drive(&mut s, input);
        assert!(
            out.output
                .ends_with("501 5.0.0 Authentication cancelled\r\n"),
            "{input:?}: {}",
            out.output
        );
        assert!(out.auths.is_empty());
        // Back to commands; a new attempt works.
        let out = drive(
            &mut s,
            &format!("AUTH PLAIN {}\r\n", plain("", USER, PASSWORD)),
        );
        assert_eq!(out.codes(), [235]);
    }
}

#[test]
fn authzid_must_be_empty_or_the_user() {
    let out = drive(
        &mut tls_session(),
        &format!("EHLO c\r\nAUTH PLAIN {}\r\n", plain("bob", USER, PASSWORD)),
    );
    assert_eq!(out.codes(), [250, 535]);
    assert!(
        out.output
            .ends_with("535 5.7.8 Authentication credentials invalid\r\n")
    );
    assert!(out.auths.is_empty());
}

#[test]
fn every_verdict_has_its_reply() {
    let mut s = tls_session();
    let attempt = |password: &str| format!("AUTH PLAIN {}\r\n", plain("", USER, password));
    let mut verdicts = [
        AuthResult::Rejected,
        AuthResult::TemporaryFailure,
        AuthResult::Accepted,
    ]
    .into_iter();
    let input = format!("EHLO c\r\n{}{}{}", attempt("a"), attempt("b"), attempt("c"));
    let out = drive_auth(&mut s, &[input.as_bytes()], &mut |_| {
        verdicts.next().unwrap()
    });
    assert_eq!(out.codes(), [250, 535, 454, 235]);
    assert!(out.output.contains(
        "535 5.7.8 Authentication credentials invalid\r\n\
         454 4.7.0 Temporary authentication failure\r\n\
         235 2.7.0 Authentication successful\r\n"
    ));
    let passwords: Vec<_> = out.auths.iter().map(|c| c.password.expose()).collect();
    assert_eq!(passwords, ["a", "b", "c"]);
    assert_eq!(s.auth_user(), Some(USER));
}

#[test]
fn rejected_then_accepted() {
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nAUTH LOGIN {}\r\n{}\r\n",
        plain("", USER, "wrong"),
        b64(USER.as_bytes()),
        b64(PASSWORD.as_bytes())
    );
    let out = drive(&mut s, &input);
    assert_eq!(out.codes(), [250, 535, 334, 235]);
    assert_eq!(out.auths.len(), 2);
    assert_eq!(s.auth_user(), Some(USER));
}

#[test]
fn blocked_closes_without_reading_on() {
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nNOOP\r\n",
        plain("", USER, PASSWORD)
    );
    let out = drive_auth(&mut s, &[input.as_bytes()], &mut |_| AuthResult::Blocked);
    assert!(out.closed);
    assert!(
        out.output
            .ends_with("250 HELP\r\n421 4.7.0 Too many failed authentications, try later\r\n")
    );
    assert_eq!(s.auth_user(), None);
    s.feed(b"NOOP\r\n");
    assert!(matches!(s.poll(&TestPolicy), Event::Close));
}

#[test]
fn pipelined_commands_wait_for_the_verdict() {
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n",
        plain("", USER, PASSWORD)
    );
    s.feed(input.as_bytes());
    let Event::Authenticate(credentials) = s.poll(&TestPolicy) else {
        panic!("expected Authenticate")
    };
    assert_eq!(credentials.user, USER);
    let before = String::from_utf8(s.take_output()).unwrap();
    assert!(before.ends_with("250 HELP\r\n"), "{before}");
    // Nothing moves until the verdict, however often it is polled or fed.
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    s.feed(b"DATA\r\n");
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    assert!(s.take_output().is_empty());
    assert!(!s.in_transaction());
    s.auth_done(AuthResult::Accepted);
    assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n\
         250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    // A verdict when none is awaited changes nothing.
    s.auth_done(AuthResult::Blocked);
    assert!(s.take_output().is_empty());
    assert!(s.in_transaction());
}

#[test]
fn pipelined_commands_after_a_rejection_are_refused() {
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.com>\r\n",
        plain("", USER, "wrong")
    );
    let out = drive(&mut tls_session(), &input);
    assert_eq!(out.codes(), [250, 535, 530]);
}

#[test]
fn ehlo_and_rset_keep_the_authentication() {
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nRSET\r\nEHLO d\r\nHELO e\r\nMAIL FROM:<alice@example.com>\r\n",
        plain("", USER, PASSWORD)
    );
    let out = drive(&mut s, &input);
    assert_eq!(out.codes(), [250, 235, 250, 250, 250, 250]);
    assert_eq!(s.auth_user(), Some(USER));
}

#[test]
fn sender_policy_sees_the_user() {
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<forbidden@example.com>\r\nMAIL FROM:<alice@example.com>\r\n",
        plain("", USER, PASSWORD)
    );
    let out = drive(&mut tls_session(), &input);
    assert_eq!(out.codes(), [250, 235, 550, 250]);
    assert!(
        out.output
            .contains("550 5.7.1 alice may not send as forbidden@example.com\r\n")
    );
    // The MX asks it too, without a user.
    let out = drive(
        &mut session_tls(config(), false),
        "EHLO c\r\nMAIL FROM:<forbidden@x.example>\r\n",
    );
    assert!(
        out.output
            .contains("550 5.7.1 - may not send as forbidden@x.example\r\n")
    );
}

#[test]
fn failed_logins_count_toward_max_errors() {
    let mut cfg = submission();
    cfg.max_errors = 2;
    let mut s = session_tls(cfg, true);
    let attempt = format!("AUTH PLAIN {}\r\n", plain("", USER, "wrong"));
    let out = drive(&mut s, &format!("EHLO c\r\n{attempt}{attempt}{attempt}"));
    assert_eq!(out.codes(), [250, 535, 535, 421]);
    assert!(out.output.ends_with("421 4.7.0 Error: too many errors\r\n"));
    assert!(out.closed);
    assert_eq!(out.auths.len(), 2);
}

#[test]
fn sasl_lines_count_as_commands() {
    let mut cfg = submission();
    cfg.max_commands = 3;
    let input = format!(
        "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
        b64(USER.as_bytes()),
        b64(PASSWORD.as_bytes())
    );
    let out = drive(&mut session_tls(cfg, true), &input);
    assert_eq!(out.codes(), [250, 334, 334, 421]);
    assert!(
        out.output
            .ends_with("421 4.7.0 Error: too many commands\r\n")
    );
    assert!(out.auths.is_empty());
}

#[test]
fn sasl_lines_obey_length_and_line_ending_rules() {
    let mut cfg = submission();
    cfg.max_line_length = 40;
    let mut s = session_tls(cfg, true);
    let long = "QUFB".repeat(20);
    // A too-long response ends the exchange; the next line is a command.
    let out = drive(
        &mut s,
        &format!("EHLO c\r\nAUTH PLAIN\r\n{long}\r\nNOOP\r\n"),
    );
    assert_eq!(out.codes(), [250, 334, 500, 250]);
    assert!(out.output.contains("500 5.5.6 "));
    // Same when it arrives in pieces.
    let out = drive_auth(
        &mut s,
        &[
            b"AUTH PLAIN\r\n",
            long.as_bytes(),
            long.as_bytes(),
            b"\r\nNOOP\r\n",
        ],
        &mut verdict,
    );
    assert_eq!(out.codes(), [334, 500, 250]);
    // A bare LF closes, as for commands (BareLf::Reject).
    let out = drive(
        &mut tls_session(),
        &format!("EHLO c\r\nAUTH PLAIN\r\n{}\n", plain("", USER, PASSWORD)),
    );
    assert!(out.closed);
    assert!(out.auths.is_empty());
    assert!(out.output.ends_with("Error: bare <LF> received\r\n"));
    // BareLf::Normalize accepts it.
    let mut cfg = submission();
    cfg.bare_lf = BareLf::Normalize;
    let out = drive(
        &mut session_tls(cfg, true),
        &format!(
            "EHLO c\nAUTH LOGIN\n{}\n{}\n",
            b64(USER.as_bytes()),
            b64(PASSWORD.as_bytes())
        ),
    );
    assert_eq!(out.codes(), [250, 334, 334, 235]);
}

#[test]
fn off_mode_is_unchanged() {
    for tls in [false, true] {
        let mut s = session_tls(config(), tls);
        let input = format!(
            "EHLO c\r\nAUTH PLAIN {}\r\nAUTH LOGIN\r\nAUTH\r\nAUTH CRAM-MD5\r\nHELP\r\nMAIL FROM:<a@b.example>\r\n",
            plain("", USER, PASSWORD)
        );
        let out = drive(&mut s, &input);
        assert_eq!(out.codes(), [250, 502, 502, 502, 502, 214, 250]);
        assert!(!out.output.contains("AUTH"), "{}", out.output);
        assert!(
            out.output
                .contains("502 5.5.1 Error: authentication not available\r\n")
        );
        assert!(out.output.contains(
            "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS\r\n"
        ));
        assert!(out.auths.is_empty());
        assert_eq!(s.auth_user(), None);
    }
}

#[test]
fn password_never_shows() {
    let secret_forms = [
        PASSWORD.to_owned(),
        b64(PASSWORD.as_bytes()),
        plain("", USER, PASSWORD),
    ];
    let check = |what: &str, text: &str| {
        for form in &secret_forms {
            assert!(!text.contains(form.as_str()), "{what} shows {form}: {text}");
        }
    };
    // PLAIN, with the exchange pipelined: Debug at every stage.
    let mut s = tls_session();
    s.feed(
        format!(
            "EHLO c\r\nAUTH PLAIN {}\r\nNOOP\r\n",
            plain("", USER, PASSWORD)
        )
        .as_bytes(),
    );
    check("session with input buffered", &format!("{s:?}"));
    let Event::Authenticate(credentials) = s.poll(&TestPolicy) else {
        panic!()
    };
    check("credentials", &format!("{credentials:?}"));
    check("session awaiting the verdict", &format!("{s:?}"));
    s.auth_done(AuthResult::Accepted);
    let mut output = Vec::new();
    while !matches!(s.poll(&TestPolicy), Event::NeedInput) {}
    output.extend(s.take_output());
    check("session after", &format!("{s:?}"));
    // LOGIN, one byte at a time, with a Debug after every poll.
    let mut s = tls_session();
    let input = format!(
        "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
        b64(USER.as_bytes()),
        b64(PASSWORD.as_bytes())
    );
    for byte in input.as_bytes() {
        s.feed(&[*byte]);
        check("session mid-exchange", &format!("{s:?}"));
        loop {
            match s.poll(&TestPolicy) {
                Event::NeedInput => break,
                Event::Authenticate(c) => {
                    check("event", &format!("{:?}", Event::Authenticate(c.clone())));
                    s.auth_done(AuthResult::Rejected);
                }
                other => panic!("{other:?}"),
            }
            check("session mid-exchange", &format!("{s:?}"));
        }
        output.extend(s.take_output());
    }
    let output = String::from_utf8(output).unwrap();
    check("output", &output);
    assert!(output.contains("535 5.7.8 "));
}

#[test]
fn auth_exchange_is_independent_of_chunking() {
    let input = format!(
        "EHLO c\r\nAUTH LOGIN\r\n{u}\r\n{bad}\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n{p}\r\n\
         MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
        u = b64(USER.as_bytes()),
        bad = b64(b"nope"),
        p = plain(USER, USER, PASSWORD)
    );
    let input = input.as_bytes();
    let whole = drive_auth(&mut tls_session(), &[input], &mut verdict);
    assert_eq!(
        whole.codes(),
        [
            250, 334, 334, 535, 334, 501, 334, 235, 250, 250, 354, 250, 221
        ]
    );
    let summary = |out: &Outcome| {
        let auths: Vec<_> = out
            .auths
            .iter()
            .map(|c| (c.mechanism, c.user.clone(), c.password.expose().to_owned()))
            .collect();
        let messages: Vec<_> = out
            .messages
            .iter()
            .map(|(env, body)| (env.auth_user.clone(), body.clone()))
            .collect();
        (out.output.clone(), auths, messages, out.closed)
    };
    let expected = summary(&whole);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        summary(&drive_auth(&mut tls_session(), &bytes, &mut verdict)),
        expected
    );
    let mut rng = Rng::new(11);
    for _ in 0..200 {
        let chunks = rng.chunks(input, 17);
        let split = drive_auth(&mut tls_session(), &chunks, &mut verdict);
        assert_eq!(summary(&split), expected);
    }
}

/// The smtp_sasl fuzz target's property on seeded random input: a
/// submission session (with and without TLS) fed SASL-flavoured bytes in
/// random chunks, every Authenticate answered with a random verdict. No
/// panic, buffers and output bounded, credentials only ever under TLS after
/// EHLO, every message authenticated, the password never in the output, and
/// Close stays closed.
#[test]
fn random_auth_input_never_panics() {
    let plain_ok = format!("AUTH PLAIN {}\r\n", plain("", USER, PASSWORD));
    let plain_authzid = format!("AUTH PLAIN {}\r\n", plain(USER, USER, PASSWORD));
    let user_line = format!("{}\r\n", b64(USER.as_bytes()));
    let pass_line = format!("{}\r\n", b64(PASSWORD.as_bytes()));
    let plain_line = format!("{}\r\n", plain("", USER, PASSWORD));
    let login = format!("EHLO a\r\nAUTH LOGIN\r\n{user_line}{pass_line}");
    let transaction =
        b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n";
    let tokens: &[&[u8]] = &[
        b"EHLO a\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"AUTH LOGIN YWxpY2U=\r\n",
        b"AUTH PLAIN =\r\n",
        b"AUTH CRAM-MD5\r\n",
        plain_ok.as_bytes(),
        plain_authzid.as_bytes(),
        user_line.as_bytes(),
        pass_line.as_bytes(),
        plain_line.as_bytes(),
        login.as_bytes(),
        transaction,
        transaction,
        b"*\r\n",
        b"=\r\n",
        b"MAIL FROM:<alice@example.com>\r\n",
        b"RCPT TO:<x@example.com>\r\n",
        b"DATA\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b".\r\n",
        b"\r\n",
        b"\n",
        b"\0",
        b"==",
        b"AAAA",
        b" ",
    ];
    let verdicts = [
        AuthResult::Accepted,
        AuthResult::Rejected,
        AuthResult::TemporaryFailure,
        AuthResult::Blocked,
    ];
    let mut rng = Rng::new(0x5a51_cafe_f00d_0001);
    // How often the interesting paths were reached (the run must reach them).
    let (mut authenticated, mut messages) = (0, 0);
    for iter in 0..3000 {
        let mut cfg = submission();
        cfg.bare_lf = if iter % 3 == 0 {
            BareLf::Reject
        } else {
            BareLf::Normalize
        };
        cfg.max_line_length = 64;
        cfg.max_message_size = 300;
        cfg.max_commands = 50;
        cfg.max_errors = 20;
        let mut s = session_tls(cfg, iter % 2 == 0);
        let input = rng.soup(tokens, 120);
        let mut rest = &input[..];
        let mut output = Vec::new();
        let mut closed = false;
        'feed: while !rest.is_empty() {
            let n = rng.size(64).min(rest.len());
            s.feed(&rest[..n]);
            rest = &rest[n..];
            loop {
                let event = s.poll(&TestPolicy);
                assert!(s.input.len() <= 64 + 64, "input grew to {}", s.input.len());
                match event {
                    Event::NeedInput => break,
                    Event::Authenticate(_) => {
                        assert!(s.is_tls());
                        assert!(s.helo().is_some());
                        let v = verdicts[rng.next_u64() as usize % verdicts.len()];
                        authenticated += usize::from(v == AuthResult::Accepted);
                        s.auth_done(v);
                    }
                    Event::Message(env, body) => {
                        assert!(body.len() <= 300);
                        assert!(env.auth_user.is_some());
                        messages += 1;
                        s.message_done(Reply::new(250, Some((2, 0, 0)), "ok"));
                    }
                    Event::Oversize(env, _) => assert!(env.auth_user.is_some()),
                    Event::StartTls => s.tls_established(),
                    Event::Close => {
                        closed = true;
                        break 'feed;
                    }
                }
            }
            output.extend(s.take_output());
        }
        output.extend(s.take_output());
        assert!(output.len() <= 60 * 300, "output {}", output.len());
        let text = String::from_utf8_lossy(&output);
        assert!(!text.contains(PASSWORD) && !text.contains(pass_line.trim_end()));
        if closed {
            s.feed(b"NOOP\r\n");
            assert!(matches!(s.poll(&TestPolicy), Event::Close));
            assert!(s.take_output().is_empty());
        }
    }
    assert!(
        authenticated > 100 && messages > 10,
        "{authenticated} {messages}"
    );
}
