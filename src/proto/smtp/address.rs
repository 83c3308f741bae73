//! Parsing of SMTP paths (`<user@domain>` in MAIL FROM / RCPT TO).
//!
//! Separate from command parsing because the address grammar (RFC 5321
//! 4.1.2, extended by RFC 6531 for UTF-8) is the fiddly part: quoted local
//! parts may contain `>` and spaces, source routes must be stripped, and
//! non-ASCII is only allowed when the client asked for SMTPUTF8 — a decision
//! the session makes, so the parser only reports whether UTF-8 was seen.
//!
//! Leniency, on purpose: dot-strings may have empty atoms (`a..b@x`, seen in
//! the wild), domains may contain `_`, and a space after `FROM:`/`TO:` is
//! accepted by the command parser. Angle brackets are required: a bare
//! `MAIL FROM:user@example.com` is a syntax error (501), which keeps the
//! boundary between address and parameters unambiguous.

use thiserror::Error;

/// RFC 5321 4.5.3.1.3 limits a path to 256 octets; we apply it to the mailbox.
pub const MAX_ADDRESS_LEN: usize = 256;

/// A parsed reverse- or forward-path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// `local@domain` as sent (quotes kept, source route removed); empty for `<>`.
    pub address: String,
    /// The address contains non-ASCII (needs SMTPUTF8).
    pub utf8: bool,
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("bad address syntax")]
    Syntax,
    #[error("address too long")]
    TooLong,
}

/// What a path may be, beyond `<local@domain>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// MAIL FROM: `<>` allowed.
    Reverse,
    /// RCPT TO: `<postmaster>` without a domain allowed (RFC 5321 4.1.1.3).
    Forward,
}

/// Parses a path at the start of `input`; returns it and the unparsed rest.
pub fn parse_path(input: &[u8], kind: PathKind) -> Result<(Path, &[u8]), AddressError> {
    let Some(inner) = input.strip_prefix(b"<") else {
        return Err(AddressError::Syntax);
    };
    if kind == PathKind::Reverse
        && let Some(rest) = inner.strip_prefix(b">")
    {
        let path = Path {
            address: String::new(),
            utf8: false,
        };
        return Ok((path, rest));
    }
    let inner = skip_source_route(inner)?;
    let local_len = local_part_len(inner)?;
    let (local, after_local) = inner.split_at(local_len);
    let (mailbox_len, rest) = match after_local.split_first() {
        Some((b'@', domain)) => {
            let domain_len = domain_len(domain)?;
            let (_, rest) = domain.split_at(domain_len);
            (local_len + 1 + domain_len, rest)
        }
        Some((b'>', _))
            if kind == PathKind::Forward && local.eq_ignore_ascii_case(b"postmaster") =>
        {
            (local_len, after_local)
        }
        _ => return Err(AddressError::Syntax),
    };
    let Some(rest) = rest.strip_prefix(b">") else {
        return Err(AddressError::Syntax);
    };
    let mailbox = inner.get(..mailbox_len).ok_or(AddressError::Syntax)?;
    if mailbox.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong);
    }
    let address = std::str::from_utf8(mailbox).map_err(|_| AddressError::Syntax)?;
    let path = Path {
        address: address.to_owned(),
        utf8: !address.is_ascii(),
    };
    Ok((path, rest))
}

/// Skips `@a,@b:` (RFC 5321 A-d-l, obsolete but must be accepted).
fn skip_source_route(input: &[u8]) -> Result<&[u8], AddressError> {
    let mut rest = input;
    if !rest.starts_with(b"@") {
        return Ok(rest);
    }
    loop {
        let Some(after_at) = rest.strip_prefix(b"@") else {
            return Err(AddressError::Syntax);
        };
        let len = domain_len(after_at)?;
        let (_, after) = after_at.split_at(len);
        match after.split_first() {
            Some((b',', next)) => rest = next,
            Some((b':', next)) => return Ok(next),
            _ => return Err(AddressError::Syntax),
        }
    }
}

/// Length of a local part (dot-string or quoted-string) at the start of input.
fn local_part_len(input: &[u8]) -> Result<usize, AddressError> {
    if input.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match input.get(i) {
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => match input.get(i + 1) {
                    Some(c) if (32..=126).contains(c) => i += 2,
                    _ => return Err(AddressError::Syntax),
                },
                Some(c) if (32..=126).contains(c) || *c >= 0x80 => i += 1,
                _ => return Err(AddressError::Syntax),
            }
            if i > MAX_ADDRESS_LEN + 1 {
                return Err(AddressError::TooLong);
            }
        }
    }
    let len = input
        .iter()
        .position(|c| !(is_atext(*c) || *c == b'.'))
        .unwrap_or(input.len());
    if len == 0 {
        return Err(AddressError::Syntax);
    }
    Ok(len)
}

/// Length of a domain or address literal at the start of input.
fn domain_len(input: &[u8]) -> Result<usize, AddressError> {
    if input.first() == Some(&b'[') {
        let close = input
            .iter()
            .position(|c| *c == b']')
            .ok_or(AddressError::Syntax)?;
        let content = input.get(1..close).ok_or(AddressError::Syntax)?;
        if content.is_empty() || !content.iter().all(|c| (33..=126).contains(c) && *c != b'[') {
            return Err(AddressError::Syntax);
        }
        return Ok(close + 1);
    }
    let len = input
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.') || *c >= 0x80))
        .unwrap_or(input.len());
    let domain = input.get(..len).ok_or(AddressError::Syntax)?;
    if domain.is_empty() || domain.split(|c| *c == b'.').any(|label| label.is_empty()) {
        return Err(AddressError::Syntax);
    }
    Ok(len)
}

/// RFC 5322 atext, plus UTF-8 bytes (RFC 6531); validity of the UTF-8 is
/// checked once for the whole address.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str, kind: PathKind) -> (String, bool, String) {
        let (p, rest) = parse_path(input.as_bytes(), kind).expect(input);
        (p.address, p.utf8, String::from_utf8(rest.to_vec()).unwrap())
    }

    #[test]
    fn simple_and_rest() {
        assert_eq!(
            ok("<a.b+c@Example.COM> SIZE=10", PathKind::Reverse),
            ("a.b+c@Example.COM".into(), false, " SIZE=10".into())
        );
    }

    #[test]
    fn null_path_only_for_reverse() {
        assert_eq!(ok("<>", PathKind::Reverse).0, "");
        assert_eq!(
            parse_path(b"<>", PathKind::Forward),
            Err(AddressError::Syntax)
        );
    }

    #[test]
    fn source_route_is_stripped() {
        assert_eq!(
            ok("<@a.example,@b.example:user@d.example>", PathKind::Forward).0,
            "user@d.example"
        );
        assert!(parse_path(b"<@a.example;user@d>", PathKind::Forward).is_err());
    }

    #[test]
    fn quoted_local_part_may_contain_specials() {
        assert_eq!(
            ok(r#"<"john \"doe\" >x"@example.com>"#, PathKind::Forward).0,
            r#""john \"doe\" >x"@example.com"#
        );
        assert!(parse_path(b"<\"unterminated@example.com>", PathKind::Forward).is_err());
    }

    #[test]
    fn postmaster_without_domain_only_for_rcpt() {
        assert_eq!(ok("<Postmaster>", PathKind::Forward).0, "Postmaster");
        assert!(parse_path(b"<Postmaster>", PathKind::Reverse).is_err());
        assert!(parse_path(b"<bob>", PathKind::Forward).is_err());
    }

    #[test]
    fn address_literals() {
        assert_eq!(ok("<u@[192.0.2.1]>", PathKind::Forward).0, "u@[192.0.2.1]");
        assert_eq!(
            ok("<u@[IPv6:2001:db8::1]>", PathKind::Forward).0,
            "u@[IPv6:2001:db8::1]"
        );
        assert!(parse_path(b"<u@[]>", PathKind::Forward).is_err());
    }

    #[test]
    fn utf8_is_reported_and_validated() {
        let (addr, utf8, _) = ok("<jörg@bücher.example>", PathKind::Forward);
        assert_eq!(addr, "jörg@bücher.example");
        assert!(utf8);
        assert!(parse_path(b"<j\xffrg@example.com>", PathKind::Forward).is_err());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "user@example.com",
            "<user@example.com",
            "<user>",
            "<@example.com>",
            "<user@>",
            "<user@a..b>",
            "<user@.a>",
            "<us er@example.com>",
            "<user@exa mple.com>",
            "",
            "<",
        ] {
            assert!(
                parse_path(bad.as_bytes(), PathKind::Forward).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn too_long() {
        let long = format!("<{}@example.com>", "a".repeat(250));
        assert_eq!(
            parse_path(long.as_bytes(), PathKind::Forward),
            Err(AddressError::TooLong)
        );
        let fits = format!("<{}@example.com>", "a".repeat(256 - 12));
        assert!(parse_path(fits.as_bytes(), PathKind::Forward).is_ok());
    }
}
