//! POP3 (RFC 1939) as pure code over bytes: no sockets, no clock.
//!
//! [`ResponseParser`] turns the server's bytes, in whatever pieces they
//! arrive, into one [`Response`]: the status line (`+OK` / `-ERR`, at most
//! [`STATUS_LINE_MAX`] bytes) and, for multi-line commands answered with
//! `+OK`, the body up to the `.` line, dot-unstuffed, line ends kept as the
//! server sent them. The body never holds more than the caller's cap: past
//! it the parser either fails at once or keeps scanning for the end while
//! dropping the excess ([`Overflow`]). Bytes after the response are not
//! consumed; the caller keeps them for the next one.
//!
//! Servers that end lines with a bare `<LF>` are tolerated: `<LF>` ends a
//! line (the status line, a body line, the final `.` line) just as
//! `<CR><LF>` does. A bare `<CR>` is content.
//!
//! The helpers below parse what the client needs out of responses (UIDL /
//! LIST listings, STAT, CAPA) and build command lines that cannot carry a
//! line break.

use memchr::memchr;

/// Longest status line accepted, line end included. RFC 2449 says 512;
/// real servers are sometimes chattier.
pub const STATUS_LINE_MAX: usize = 4096;

/// What the body cap does once a multi-line response outgrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Fail at once ([`ProtoError::BodyTooLarge`]); the session is then out
    /// of step with the server and must be dropped.
    Fail,
    /// Keep the first `max` bytes, drop the rest, and go on to the end of
    /// the response ([`Response::truncated`] is set). The session stays usable.
    Truncate,
}

/// The shape of the response to the command just sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One status line (USER, PASS, STAT, DELE, QUIT, STLS, the greeting).
    Single,
    /// A status line, and after `+OK` a body ending with a `.` line
    /// (CAPA, UIDL, LIST, RETR, TOP). `max` caps the unstuffed body.
    Multi { max: usize, overflow: Overflow },
}

/// One complete server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `+OK` (true) or `-ERR` (false).
    pub ok: bool,
    /// The rest of the status line, control characters replaced: safe to
    /// show in errors and logs.
    pub text: String,
    /// The unstuffed body of a multi-line `+OK` response; `None` otherwise.
    pub body: Option<Vec<u8>>,
    /// Bytes were dropped under [`Overflow::Truncate`].
    pub truncated: bool,
}

/// Progress after some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// All input was consumed; the response is not complete yet.
    NeedMore,
    /// The response is complete. The first `used` bytes of the last input
    /// belonged to it; the rest belongs to whatever follows.
    Done { response: Response, used: usize },
}

/// Why the server's bytes are not a valid response. After any of these the
/// parser refuses further input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("status line longer than {STATUS_LINE_MAX} bytes")]
    StatusTooLong,
    #[error("status line is neither +OK nor -ERR: {0:?}")]
    BadStatus(String),
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("malformed listing line: {0:?}")]
    BadListing(String),
    #[error("malformed STAT reply: {0:?}")]
    BadStat(String),
    #[error("command argument contains a line break or NUL")]
    BadArgument,
    #[error("the response is already complete (or failed)")]
    Finished,
}

/// Where in the response grammar the parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the status line.
    Status,
    /// Body: at the start of a line.
    LineStart,
    /// Body: a `.` opened the line (dropped: unstuffing or the end).
    Dot,
    /// Body: `.` then `<CR>` opened the line; the `<CR>` is pending.
    DotCr,
    /// Body: inside a line.
    Mid,
    /// Complete or failed; no more input is taken.
    Finished,
}

/// Incremental parser for one response; make a new one per command.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    multi: bool,
    max: usize,
    overflow: Overflow,
    line: Vec<u8>,
    ok: bool,
    text: String,
    body: Vec<u8>,
    truncated: bool,
}

impl ResponseParser {
    pub fn new(expect: Expect) -> ResponseParser {
        let (multi, max, overflow) = match expect {
            Expect::Single => (false, 0, Overflow::Fail),
            Expect::Multi { max, overflow } => (true, max, overflow),
        };
        ResponseParser {
            state: State::Status,
            multi,
            max,
            overflow,
            line: Vec::new(),
            ok: false,
            text: String::new(),
            body: Vec::new(),
            truncated: false,
        }
    }

    /// Reserves room for a body of about `hint` bytes (e.g. the size LIST
    /// announced), never more than the cap.
    pub fn with_size_hint(mut self, hint: usize) -> ResponseParser {
        if self.multi {
            self.body.reserve_exact(hint.min(self.max));
        }
        self
    }

    /// Bytes of body held so far (after unstuffing).
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Memory reserved for the body; never above the cap.
    pub fn body_capacity(&self) -> usize {
        self.body.capacity()
    }

    /// Takes the next piece of input. Until the response is complete every
    /// byte is consumed; once it is, the bytes after it are left alone.
    pub fn feed(&mut self, input: &[u8]) -> Result<Feed, ProtoError> {
        if self.state == State::Finished {
            return Err(ProtoError::Finished);
        }
        let mut i = 0;
        while let Some(rest) = input.get(i..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Status => {
                    let (take, eol) = line_run(rest);
                    if self.line.len() + take > STATUS_LINE_MAX {
                        return Err(self.fail(ProtoError::StatusTooLong));
                    }
                    self.line
                        .extend_from_slice(rest.get(..take).unwrap_or(rest));
                    i += take;
                    if eol {
                        self.status()?;
                        if !(self.ok && self.multi) {
                            return Ok(self.complete(i));
                        }
                        self.state = State::LineStart;
                    }
                }
                State::LineStart => {
                    if rest.first() == Some(&b'.') {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Dot => match rest.first() {
                    Some(b'\n') => return Ok(self.complete(i + 1)),
                    Some(b'\r') => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    _ => self.state = State::Mid,
                },
                State::DotCr => {
                    if rest.first() == Some(&b'\n') {
                        return Ok(self.complete(i + 1));
                    }
                    self.push(b"\r")?;
                    self.state = State::Mid;
                }
                State::Mid => {
                    let (take, eol) = line_run(rest);
                    self.push(rest.get(..take).unwrap_or(rest))?;
                    i += take;
                    if eol {
                        self.state = State::LineStart;
                    }
                }
                State::Finished => return Err(ProtoError::Finished),
            }
        }
        Ok(Feed::NeedMore)
    }

    fn fail(&mut self, error: ProtoError) -> ProtoError {
        self.state = State::Finished;
        error
    }

    /// Parses the collected status line.
    fn status(&mut self) -> Result<(), ProtoError> {
        let mut line = self.line.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = if let Some(rest) = strip_prefix_ci(line, b"+OK") {
            self.ok = true;
            rest
        } else if let Some(rest) = strip_prefix_ci(line, b"-ERR") {
            self.ok = false;
            rest
        } else {
            let shown = clean_text(line.get(..80).unwrap_or(line));
            return Err(self.fail(ProtoError::BadStatus(shown)));
        };
        if !matches!(rest.first(), None | Some(b' ' | b'\t')) {
            let shown = clean_text(line.get(..80).unwrap_or(line));
            return Err(self.fail(ProtoError::BadStatus(shown)));
        }
        self.text = clean_text(rest.trim_ascii());
        self.line = Vec::new();
        Ok(())
    }

    /// Appends body bytes within the cap; grows the buffer by doubling but
    /// never past the cap.
    fn push(&mut self, bytes: &[u8]) -> Result<(), ProtoError> {
        let room = self.max.saturating_sub(self.body.len());
        let bytes = if bytes.len() <= room {
            bytes
        } else {
            match self.overflow {
                Overflow::Fail => {
                    let limit = self.max;
                    return Err(self.fail(ProtoError::BodyTooLarge { limit }));
                }
                Overflow::Truncate => {
                    self.truncated = true;
                    bytes.get(..room).unwrap_or_default()
                }
            }
        };
        let needed = self.body.len() + bytes.len();
        if needed > self.body.capacity() {
            let target = needed
                .max(self.body.capacity().saturating_mul(2))
                .max(1024)
                .min(self.max);
            self.body.reserve_exact(target - self.body.len());
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    fn complete(&mut self, used: usize) -> Feed {
        self.state = State::Finished;
        let body = (self.ok && self.multi).then(|| std::mem::take(&mut self.body));
        Feed::Done {
            response: Response {
                ok: self.ok,
                text: std::mem::take(&mut self.text),
                body,
                truncated: self.truncated,
            },
            used,
        }
    }
}

/// Length of the run up to and including the next `<LF>`, and whether it
/// ends with one.
fn line_run(input: &[u8]) -> (usize, bool) {
    match memchr(b'\n', input) {
        Some(pos) => (pos + 1, true),
        None => (input.len(), false),
    }
}

fn strip_prefix_ci<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| line.get(prefix.len()..).unwrap_or_default())
}

/// Server text made safe to display: lossy UTF-8, control characters as `?`.
pub fn clean_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A command line: `VERB[ ARG]*<CR><LF>`. Refuses arguments that could end
/// the line early (`<CR>`, `<LF>`, NUL). The error never shows the argument:
/// it may be the password.
pub fn command(verb: &str, args: &[&str]) -> Result<Vec<u8>, ProtoError> {
    let mut line =
        Vec::with_capacity(verb.len() + 2 + args.iter().map(|a| a.len() + 1).sum::<usize>());
    line.extend_from_slice(verb.as_bytes());
    for arg in args {
        if arg.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(ProtoError::BadArgument);
        }
        line.push(b' ');
        line.extend_from_slice(arg.as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    Ok(line)
}

/// Lines of a body, line ends removed, empty lines skipped.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.trim_ascii().is_empty())
}

/// A UIDL or LIST listing: `(message number, value)` per line, in the
/// server's order. The value is the first token after the number (UIDL: the
/// unique id, printable ASCII per RFC 1939; LIST: the size); anything after
/// it is ignored.
pub fn parse_listing(body: &[u8]) -> Result<Vec<(u32, &str)>, ProtoError> {
    lines(body)
        .map(|line| {
            let bad = || ProtoError::BadListing(clean_text(line.get(..80).unwrap_or(line)));
            let mut tokens = line
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|t| !t.is_empty());
            let number = tokens
                .next()
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(bad)?;
            let value = tokens
                .next()
                .filter(|t| t.iter().all(|b| b.is_ascii_graphic()))
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or_else(bad)?;
            Ok((number, value))
        })
        .collect()
}

/// The `+OK` text of STAT: `(messages, octets)`.
pub fn parse_stat(text: &str) -> Result<(u64, u64), ProtoError> {
    let mut tokens = text.split_ascii_whitespace().map(|t| t.parse::<u64>().ok());
    match (tokens.next().flatten(), tokens.next().flatten()) {
        (Some(messages), Some(octets)) => Ok((messages, octets)),
        _ => Err(ProtoError::BadStat(text.chars().take(80).collect())),
    }
}

/// The capability lines of a CAPA body (e.g. `TOP`, `UIDL`, `SASL PLAIN LOGIN`).
pub fn parse_capa(body: &[u8]) -> Vec<String> {
    lines(body)
        .map(|line| clean_text(line.trim_ascii()))
        .collect()
}

/// True if the capability list has `name` (first word, any case).
pub fn has_capability(capabilities: &[String], name: &str) -> bool {
    capabilities.iter().any(|c| {
        c.split_ascii_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case(name))
    })
}

/// True if `SASL` lists `mechanism`.
pub fn has_sasl(capabilities: &[String], mechanism: &str) -> bool {
    capabilities.iter().any(|c| {
        let mut words = c.split_ascii_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("SASL"))
            && words.any(|w| w.eq_ignore_ascii_case(mechanism))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Rng;

    const MULTI: Expect = Expect::Multi {
        max: 1 << 20,
        overflow: Overflow::Fail,
    };

    /// Feeds `input` in pieces of the given sizes (cycled; empty = whole).
    /// Returns the response (or error) and the total bytes it used.
    fn parse_chunked(
        expect: Expect,
        input: &[u8],
        sizes: &[usize],
    ) -> Result<Option<(Response, usize)>, ProtoError> {
        let mut parser = ResponseParser::new(expect);
        let mut pos = 0;
        let mut chunk = 0;
        while pos < input.len() {
            let size = sizes
                .get(chunk % sizes.len().max(1))
                .copied()
                .unwrap_or(input.len())
                .max(1);
            chunk += 1;
            let piece = &input[pos..(pos + size).min(input.len())];
            match parser.feed(piece)? {
                Feed::NeedMore => pos += piece.len(),
                Feed::Done { response, used } => {
                    assert!(used <= piece.len());
                    return Ok(Some((response, pos + used)));
                }
            }
        }
        Ok(None)
    }

    fn parse(expect: Expect, input: &[u8]) -> (Response, usize) {
        parse_chunked(expect, input, &[])
            .unwrap()
            .expect("complete response")
    }

    #[test]
    fn single_line_ok_and_err() {
        let (r, used) = parse(Expect::Single, b"+OK POP3 ready <1.2@host>\r\nrest");
        assert!(r.ok);
        assert_eq!(r.text, "POP3 ready <1.2@host>");
        assert_eq!(r.body, None);
        assert_eq!(used, 27);

        let (r, _) = parse(Expect::Single, b"-ERR [AUTH] Authentication failed.\r\n");
        assert!(!r.ok);
        assert_eq!(r.text, "[AUTH] Authentication failed.");

        let (r, _) = parse(Expect::Single, b"+OK\r\n");
        assert!(r.ok);
        assert_eq!(r.text, "");
        let (r, _) = parse(Expect::Single, b"-ERR\n");
        assert!(!r.ok);
    }

    #[test]
    fn bad_status_lines() {
        for line in [
            &b"+ go ahead\r\n"[..],
            b"OK\r\n",
            b"+OKAY\r\n",
            b"-ERRor\r\n",
            b"\r\n",
            b"* 1 EXISTS\r\n",
        ] {
            let err = parse_chunked(Expect::Single, line, &[]).unwrap_err();
            assert!(matches!(err, ProtoError::BadStatus(_)), "{line:?}: {err:?}");
        }
    }

    #[test]
    fn status_line_bounded() {
        let mut line = b"+OK ".to_vec();
        line.resize(STATUS_LINE_MAX - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert!(parse(Expect::Single, &line).0.ok);

        let mut long = b"+OK ".to_vec();
        long.resize(STATUS_LINE_MAX + 10, b'x');
        let mut parser = ResponseParser::new(Expect::Single);
        let mut err = None;
        for piece in long.chunks(7) {
            match parser.feed(piece) {
                Ok(Feed::NeedMore) => assert!(parser.line.len() <= STATUS_LINE_MAX),
                Ok(Feed::Done { .. }) => panic!("no line end"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(ProtoError::StatusTooLong));
        assert_eq!(parser.feed(b"\r\n"), Err(ProtoError::Finished));
    }

    #[test]
    fn multi_line_with_dot_stuffing() {
        let wire = b"+OK 42 octets\r\nSubject: x\r\n\r\n..leading dot\r\n...two\r\n..\r\n.x\r\nend\r\n.\r\n+OK next";
        let (r, used) = parse(MULTI, wire);
        assert!(r.ok);
        assert_eq!(r.text, "42 octets");
        assert_eq!(
            r.body.as_deref(),
            Some(&b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nx\r\nend\r\n"[..])
        );
        assert_eq!(&wire[used..], b"+OK next");
        assert!(!r.truncated);
    }

    #[test]
    fn multi_line_empty_and_err() {
        let (r, used) = parse(MULTI, b"+OK\r\n.\r\n");
        assert_eq!(r.body.as_deref(), Some(&b""[..]));
        assert_eq!(used, 8);
        // -ERR to a multi-line command has no body.
        let (r, used) = parse(MULTI, b"-ERR no such message\r\n.\r\n");
        assert!(!r.ok);
        assert_eq!(r.body, None);
        assert_eq!(used, 22);
    }

    #[test]
    fn dot_cr_inside_a_line_is_content() {
        let (r, _) = parse(MULTI, b"+OK\r\n.\rx\r\n.\r\r\n.\r\n");
        assert_eq!(r.body.as_deref(), Some(&b"\rx\r\n\r\r\n"[..]));
    }

    #[test]
    fn terminator_split_at_every_position() {
        let wire = b"+OK\r\nline one\r\n..dot\r\n\r\nlast\r\n.\r\n+OK after\r\n";
        let (expected, used) = parse(MULTI, wire);
        assert_eq!(
            expected.body.as_deref(),
            Some(&b"line one\r\n.dot\r\n\r\nlast\r\n"[..])
        );
        for a in 1..wire.len() {
            for b in a..wire.len() {
                let mut parser = ResponseParser::new(MULTI);
                let pieces = [&wire[..a], &wire[a..b], &wire[b..]];
                let mut offset = 0;
                let mut got = None;
                for piece in pieces {
                    match parser.feed(piece).unwrap() {
                        Feed::NeedMore => offset += piece.len(),
                        Feed::Done { response, used } => {
                            got = Some((response, offset + used));
                            break;
                        }
                    }
                }
                assert_eq!(got, Some((expected.clone(), used)), "split at {a},{b}");
            }
        }
        // And byte by byte.
        assert_eq!(
            parse_chunked(MULTI, wire, &[1]).unwrap(),
            Some((expected, used))
        );
    }

    #[test]
    fn bare_lf_server() {
        let wire = b"+OK here\nFrom: a@b\n\n..dot\nbody\n.\n";
        for sizes in [&[][..], &[1], &[2, 3]] {
            let (r, used) = parse_chunked(MULTI, wire, sizes).unwrap().unwrap();
            assert_eq!(r.text, "here");
            assert_eq!(r.body.as_deref(), Some(&b"From: a@b\n\n.dot\nbody\n"[..]));
            assert_eq!(used, wire.len());
        }
        // Mixed: CRLF status, LF lines, CRLF terminator.
        let (r, _) = parse(MULTI, b"+OK\r\na\nb\n.\r\n");
        assert_eq!(r.body.as_deref(), Some(&b"a\nb\n"[..]));
    }

    #[test]
    fn oversize_body_fails_without_growing() {
        let max = 100;
        let expect = Expect::Multi {
            max,
            overflow: Overflow::Fail,
        };
        let mut wire = b"+OK\r\n".to_vec();
        for _ in 0..50 {
            wire.extend_from_slice(b"0123456789\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        for size in [1, 5, 13, 64, wire.len()] {
            let mut parser = ResponseParser::new(expect).with_size_hint(1 << 30);
            let mut err = None;
            for piece in wire.chunks(size) {
                match parser.feed(piece) {
                    Ok(Feed::NeedMore) => {}
                    Ok(Feed::Done { .. }) => panic!("oversize accepted"),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
                assert!(parser.body_capacity() <= max);
            }
            assert_eq!(err, Some(ProtoError::BodyTooLarge { limit: max }));
            assert!(
                parser.body_capacity() <= max,
                "capacity {}",
                parser.body_capacity()
            );
            assert!(parser.body_len() <= max);
            assert_eq!(parser.feed(b".\r\n"), Err(ProtoError::Finished));
        }
        // Exactly at the cap is fine.
        let mut exact = b"+OK\r\n".to_vec();
        exact.extend_from_slice(&[b'a'; 98]);
        exact.extend_from_slice(b"\r\n.\r\n");
        let (r, _) = parse(expect, &exact);
        assert_eq!(r.body.map(|b| b.len()), Some(100));
    }

    #[test]
    fn oversize_body_truncated_keeps_going() {
        let expect = Expect::Multi {
            max: 16,
            overflow: Overflow::Truncate,
        };
        let wire = b"+OK\r\nSubject: a long header\r\n\r\nbody\r\n.\r\n+OK";
        for size in [1, 3, wire.len()] {
            let (r, used) = parse_chunked(expect, wire, &[size]).unwrap().unwrap();
            assert!(r.truncated);
            assert_eq!(r.body.as_deref(), Some(&b"Subject: a long "[..]));
            assert_eq!(&wire[used..], b"+OK");
        }
    }

    #[test]
    fn commands_refuse_line_breaks() {
        assert_eq!(command("RETR", &["3"]).unwrap(), b"RETR 3\r\n");
        assert_eq!(command("QUIT", &[]).unwrap(), b"QUIT\r\n");
        assert_eq!(command("PASS", &["a b"]).unwrap(), b"PASS a b\r\n");
        for bad in ["x\r\nDELE 1", "x\n", "x\0"] {
            let err = command("PASS", &[bad]).unwrap_err();
            assert_eq!(err, ProtoError::BadArgument);
            assert!(!err.to_string().contains('x'));
        }
    }

    #[test]
    fn listings_stat_capa() {
        let body = b"1 000000017b3c\r\n2 abc-DEF extra\r\n\r\n10\tz\n";
        assert_eq!(
            parse_listing(body).unwrap(),
            vec![(1, "000000017b3c"), (2, "abc-DEF"), (10, "z")]
        );
        assert_eq!(parse_listing(b"").unwrap(), vec![]);
        for bad in [
            &b"x 1\r\n"[..],
            b"1\r\n",
            b"0 a\r\n",
            b"1 \xff\r\n",
            b"-1 a\r\n",
        ] {
            assert!(
                matches!(parse_listing(bad), Err(ProtoError::BadListing(_))),
                "{bad:?}"
            );
        }
        assert_eq!(parse_stat("2 320").unwrap(), (2, 320));
        assert_eq!(parse_stat("0 0 extra").unwrap(), (0, 0));
        assert!(parse_stat("two").is_err());
        let caps = parse_capa(b"CAPA\r\nTOP\r\nUIDL\r\nSASL PLAIN LOGIN\r\nSTLS\r\n");
        assert!(has_capability(&caps, "stls"));
        assert!(has_capability(&caps, "UIDL"));
        assert!(!has_capability(&caps, "USER"));
        assert!(has_sasl(&caps, "plain"));
        assert!(!has_sasl(&caps, "XOAUTH2"));
    }

    #[test]
    fn control_characters_are_cleaned() {
        let (r, _) = parse(Expect::Single, b"-ERR bad\x1b[31m \xff\r\n");
        assert_eq!(r.text, "bad?[31m \u{fffd}");
    }

    /// Random bytes biased toward POP3 tokens, in random chunks: no panic,
    /// the result does not depend on the chunking, memory stays bounded.
    #[test]
    fn random_input_never_panics() {
        const TOKENS: &[&[u8]] = &[
            b"+OK",
            b"-ERR",
            b"+OK 1 octets\r\n",
            b".\r\n",
            b"\r\n.\r\n",
            b"\n.\n",
            b"..",
            b".",
            b"\r",
            b"\n",
            b"\r\n",
            b" ",
            b"x",
            b"\x00",
            b"\xff",
            b"1 abc\r\n",
        ];
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
        for iter in 0..3000 {
            let input = rng.soup(TOKENS, 120);
            let max = 1 + (iter % 64);
            let overflow = if iter % 2 == 0 {
                Overflow::Fail
            } else {
                Overflow::Truncate
            };
            let expect = if iter % 5 == 0 {
                Expect::Single
            } else {
                Expect::Multi { max, overflow }
            };
            let whole = parse_chunked(expect, &input, &[]);
            let mut sizes = Vec::new();
            for _ in 0..8 {
                sizes.push(rng.size(17));
            }
            let split = parse_chunked(expect, &input, &sizes);
            let bytewise = parse_chunked(expect, &input, &[1]);
            assert_eq!(whole, split, "input {input:?}");
            assert_eq!(whole, bytewise, "input {input:?}");
            if let Ok(Some((r, used))) = &whole {
                assert!(*used <= input.len());
                if let Some(body) = &r.body {
                    assert!(body.len() <= max);
                }
                if let Some(body) = &r.body {
                    let _ = parse_listing(body);
                    let _ = parse_capa(body);
                }
                let _ = parse_stat(&r.text);
            }
        }
    }
}
