//! Parsing one SMTP command line into a [`Command`].
//!
//! Pure syntax: whether a command is allowed *now* (sequence, limits, policy)
//! is the session's business. A parse failure carries the exact [`Reply`] to
//! send, so the mapping from syntax error to reply code lives next to the
//! grammar that produced it.

use super::address::{AddressError, Path, PathKind, parse_path};
use super::reply::Reply;

/// MAIL FROM `BODY=` parameter (RFC 6152).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// A parsed `MAIL FROM` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailFrom {
    pub path: Path,
    pub size: Option<usize>,
    /// True when `SIZE=` was too large to even represent.
    pub size_overflow: bool,
    pub body: Body,
    pub smtputf8: bool,
}

/// One SMTP command (verbs are case-insensitive on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(Path),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH`: its arguments, or the syntax error to answer once the session
    /// has decided AUTH is allowed at all (the MX answers 502 to any AUTH).
    Auth(Result<AuthStart, Reply>),
}

/// The SASL mechanisms the server implements (RFC 4616 PLAIN, and LOGIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

/// The arguments of an `AUTH` command (RFC 4954): the mechanism and the
/// optional initial response, still base64 (`=` stands for an empty one).
/// Its Debug never shows the response, which carries the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthStart {
    pub mechanism: Mechanism,
    pub initial_response: Option<Vec<u8>>,
}

impl std::fmt::Debug for AuthStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStart")
            .field("mechanism", &self.mechanism)
            .field(
                "initial_response",
                &self.initial_response.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn syntax(text: &str) -> Reply {
    Reply::new(501, Some((5, 5, 4)), text)
}

impl Command {
    /// Parses a command line without its line ending.
    pub fn parse(line: &[u8]) -> Result<Command, Reply> {
        let line = trim_end(line);
        let (verb, args) = match line.iter().position(|c| *c == b' ') {
            Some(sp) => line.split_at(sp),
            None => (line, &[][..]),
        };
        let args = trim_start(args);
        let no_args = |cmd: Command, name: &str| {
            if args.is_empty() {
                Ok(cmd)
            } else {
                Err(syntax(&format!("Syntax: {name} takes no arguments")))
            }
        };
        let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
        if is("EHLO") {
            parse_domain(args, "EHLO").map(Command::Ehlo)
        } else if is("HELO") {
            parse_domain(args, "HELO").map(Command::Helo)
        } else if is("MAIL") {
            parse_mail(args)
        } else if is("RCPT") {
            parse_rcpt(args)
        } else if is("DATA") {
            no_args(Command::Data, "DATA")
        } else if is("RSET") {
            no_args(Command::Rset, "RSET")
        } else if is("NOOP") {
            Ok(Command::Noop)
        } else if is("QUIT") {
            no_args(Command::Quit, "QUIT")
        } else if is("VRFY") {
            Ok(Command::Vrfy)
        } else if is("EXPN") {
            Ok(Command::Expn)
        } else if is("HELP") {
            Ok(Command::Help)
        } else if is("STARTTLS") {
            no_args(Command::StartTls, "STARTTLS")
        } else if is("AUTH") {
            Ok(Command::Auth(parse_auth(args)))
        } else {
            Err(Reply::new(
                500,
                Some((5, 5, 2)),
                "Error: command not recognized",
            ))
        }
    }
}

/// EHLO/HELO argument: leniently any printable ASCII token (clients send
/// bare hostnames, `localhost`, address literals, names with `_`).
fn parse_domain(args: &[u8], verb: &str) -> Result<String, Reply> {
    if args.is_empty() || !args.iter().all(|c| (0x20..0x7f).contains(c)) {
        return Err(syntax(&format!("Syntax: {verb} hostname")));
    }
    // All bytes are printable ASCII, so this cannot fail.
    std::str::from_utf8(args)
        .map(str::to_owned)
        .map_err(|_| syntax(&format!("Syntax: {verb} hostname")))
}

/// Strips a case-insensitive keyword such as `FROM:` and following spaces.
fn strip_keyword<'a>(args: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword.as_bytes()) {
        return None;
    }
    args.get(keyword.len()..).map(trim_start)
}

fn parse_mail(args: &[u8]) -> Result<Command, Reply> {
    let Some(rest) = strip_keyword(args, "FROM:") else {
        return Err(syntax("Syntax: MAIL FROM:<address>"));
    };
    let (path, rest) = parse_path(rest, PathKind::Reverse).map_err(|e| match e {
        AddressError::Syntax => Reply::new(501, Some((5, 1, 7)), "Bad sender address syntax"),
        AddressError::TooLong => Reply::new(501, Some((5, 1, 7)), "Sender address too long"),
    })?;
    let mut mail = MailFrom {
        path,
        size: None,
        size_overflow: false,
        body: Body::SevenBit,
        smtputf8: false,
    };
    for (key, value) in params(rest)? {
        if key.eq_ignore_ascii_case(b"SIZE") {
            let digits = value.filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit));
            let Some(digits) = digits else {
                return Err(syntax("Syntax: SIZE=<number>"));
            };
            let parsed = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            mail.size_overflow = parsed.is_none();
            mail.size = parsed;
        } else if key.eq_ignore_ascii_case(b"BODY") {
            mail.body = match value {
                Some(v) if v.eq_ignore_ascii_case(b"7BIT") => Body::SevenBit,
                Some(v) if v.eq_ignore_ascii_case(b"8BITMIME") => Body::EightBitMime,
                _ => return Err(unsupported_param()),
            };
        } else if key.eq_ignore_ascii_case(b"SMTPUTF8") && value.is_none() {
            mail.smtputf8 = true;
        } else {
            return Err(unsupported_param());
        }
    }
    Ok(Command::Mail(mail))
}

fn parse_rcpt(args: &[u8]) -> Result<Command, Reply> {
    let Some(rest) = strip_keyword(args, "TO:") else {
        return Err(syntax("Syntax: RCPT TO:<address>"));
    };
    let (path, rest) = parse_path(rest, PathKind::Forward).map_err(|e| match e {
        AddressError::Syntax => Reply::new(501, Some((5, 1, 3)), "Bad recipient address syntax"),
        AddressError::TooLong => Reply::new(501, Some((5, 1, 3)), "Recipient address too long"),
    })?;
    // No RCPT parameters are advertised (no DSN), so any is unsupported.
    if !params(rest)?.is_empty() {
        return Err(unsupported_param());
    }
    Ok(Command::Rcpt(path))
}

/// `AUTH mechanism [initial-response]`. An unknown mechanism is 504; the
/// initial response is checked when it is decoded.
fn parse_auth(args: &[u8]) -> Result<AuthStart, Reply> {
    let mut words = args.split(|c| *c == b' ').filter(|w| !w.is_empty());
    let (Some(name), initial, None) = (words.next(), words.next(), words.next()) else {
        return Err(syntax("Syntax: AUTH mechanism [initial-response]"));
    };
    let mechanism = if name.eq_ignore_ascii_case(b"PLAIN") {
        Mechanism::Plain
    } else if name.eq_ignore_ascii_case(b"LOGIN") {
        Mechanism::Login
    } else {
        return Err(Reply::new(
            504,
            Some((5, 5, 4)),
            "Error: unrecognized authentication type",
        ));
    };
    Ok(AuthStart {
        mechanism,
        initial_response: initial.map(<[u8]>::to_vec),
    })
}

fn unsupported_param() -> Reply {
    Reply::new(555, Some((5, 5, 4)), "Unsupported parameter")
}

type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// ESMTP parameters after a path: `SP keyword["=" value]`, space separated.
fn params(rest: &[u8]) -> Result<Vec<Param<'_>>, Reply> {
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.first() != Some(&b' ') {
        return Err(syntax("Syntax: garbage after address"));
    }
    let mut out = Vec::new();
    for word in rest.split(|c| *c == b' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.iter().position(|c| *c == b'=') {
            Some(eq) => {
                let (k, v) = word.split_at(eq);
                (k, v.get(1..))
            }
            None => (word, None),
        };
        let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
            && key.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        let value_ok = value.is_none_or(|v| v.iter().all(|c| (33..=126).contains(c) && *c != b'='));
        if !key_ok || !value_ok {
            return Err(syntax("Syntax: bad parameter"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|c| matches!(c, b' ' | b'\t')).count();
    s.get(n..).unwrap_or_default()
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count();
    s.get(..s.len() - n).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (u16, Option<(u8, u16, u16)>) {
        let r = Command::parse(line.as_bytes()).unwrap_err();
        (r.code, r.enhanced)
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            Command::parse(b"eHlO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(Command::parse(b"quit"), Ok(Command::Quit));
        assert_eq!(Command::parse(b"DATA  "), Ok(Command::Data));
        assert_eq!(Command::parse(b"noop anything"), Ok(Command::Noop));
        assert_eq!(Command::parse(b"StartTLS"), Ok(Command::StartTls));
    }

    #[test]
    fn unknown_and_syntax_codes() {
        assert_eq!(code("FROB"), (500, Some((5, 5, 2))));
        assert_eq!(code(""), (500, Some((5, 5, 2))));
        assert_eq!(code("EHLO"), (501, Some((5, 5, 4))));
        assert_eq!(code("DATA now"), (501, Some((5, 5, 4))));
        assert_eq!(code("STARTTLS x"), (501, Some((5, 5, 4))));
        assert_eq!(code("MAIL TO:<a@b>"), (501, Some((5, 5, 4))));
        assert_eq!(code("MAIL FROM:a@b.example"), (501, Some((5, 1, 7))));
        assert_eq!(code("RCPT TO:<nobody>"), (501, Some((5, 1, 3))));
        assert_eq!(
            code("MAIL FROM:<a@b.example>SIZE=1"),
            (501, Some((5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b.example> SIZE=x"),
            (501, Some((5, 5, 4)))
        );
    }

    #[test]
    fn mail_params() {
        let Ok(Command::Mail(m)) =
            Command::parse(b"MAIL FROM: <a@b.example> size=1000 BODY=8bitmime SMTPUTF8")
        else {
            panic!()
        };
        assert_eq!(m.path.address, "a@b.example");
        assert_eq!(m.size, Some(1000));
        assert_eq!(m.body, Body::EightBitMime);
        assert!(m.smtputf8);
        let Ok(Command::Mail(m)) = Command::parse(b"MAIL FROM:<> SIZE=99999999999999999999999")
        else {
            panic!()
        };
        assert!(m.size_overflow);
        assert_eq!(m.path.address, "");
    }

    #[test]
    fn auth_arguments() {
        let auth = |line: &str| match Command::parse(line.as_bytes()) {
            Ok(Command::Auth(result)) => result,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            auth("auth plain  AGEAYg=="),
            Ok(AuthStart {
                mechanism: Mechanism::Plain,
                initial_response: Some(b"AGEAYg==".to_vec()),
            })
        );
        assert_eq!(
            auth("AUTH Login"),
            Ok(AuthStart {
                mechanism: Mechanism::Login,
                initial_response: None,
            })
        );
        let code = |line| auth(line).map_err(|r| (r.code, r.enhanced)).unwrap_err();
        assert_eq!(code("AUTH CRAM-MD5"), (504, Some((5, 5, 4))));
        assert_eq!(code("AUTH"), (501, Some((5, 5, 4))));
        assert_eq!(code("AUTH PLAIN a b"), (501, Some((5, 5, 4))));
        let debug = format!("{:?}", auth("AUTH PLAIN AGEAYg=="));
        assert!(!debug.contains("AGEAYg"), "{debug}");
    }

    #[test]
    fn unknown_params_are_555() {
        assert_eq!(
            code("MAIL FROM:<a@b.example> RET=FULL"),
            (555, Some((5, 5, 4)))
        );
        assert_eq!(
            code("MAIL FROM:<a@b.example> BODY=BINARYMIME"),
            (555, Some((5, 5, 4)))
        );
        assert_eq!(
            code("RCPT TO:<a@b.example> NOTIFY=NEVER"),
            (555, Some((5, 5, 4)))
        );
    }
}
