//! Client-supplied text made safe for a log line.
//!
//! SMTPUTF8 addresses, Message-IDs and other values a client chooses reach
//! our logs. Raw control characters (C0, DEL, C1 such as NEL or the 8-bit
//! CSI), the Unicode line and paragraph separators and the bidirectional
//! overrides and isolates would let a client start fake log lines, drive a
//! terminal, or make a line read differently than it is stored (the
//! "Trojan Source" trick). [`Printable`] writes such characters as
//! `\u{..}` and a backslash as `\\`, so the escaping is unambiguous: a
//! client cannot forge an escape either. Everything else, including normal
//! non-ASCII letters, is written as is.

use std::fmt::{self, Write};

/// Displays a string with controls, separators and bidi marks escaped.
/// Use it for every client-supplied value in a log field:
/// `tracing::info!(from = %Printable(&address), ...)`.
#[derive(Clone, Copy)]
pub struct Printable<'a>(pub &'a str);

/// A character that must not reach a log line raw.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        // Write runs of harmless characters in one go.
        while let Some((i, c)) = rest
            .char_indices()
            .find(|&(_, c)| c == '\\' || needs_escape(c))
        {
            f.write_str(&rest[..i])?;
            if c == '\\' {
                f.write_str("\\\\")?;
            } else {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        fmt::Display::fmt(self, f)?;
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Printable(s).to_string()
    }

    #[test]
    fn plain_and_non_ascii_text_is_unchanged() {
        assert_eq!(p("alice@example.com"), "alice@example.com");
        assert_eq!(p("jörg@bücher.example 日本"), "jörg@bücher.example 日本");
        assert_eq!(p(""), "");
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(p("a\r\nb"), "a\\u{d}\\u{a}b");
        assert_eq!(p("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(p("x\u{7f}\u{0}"), "x\\u{7f}\\u{0}");
        // C1: NEL and the 8-bit CSI.
        assert_eq!(p("a\u{85}b\u{9b}c"), "a\\u{85}b\\u{9b}c");
    }

    #[test]
    fn separators_and_bidi_are_escaped() {
        assert_eq!(p("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
        for c in ('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            let out = p(&format!("x{c}y"));
            assert_eq!(out, format!("x\\u{{{:x}}}y", u32::from(c)));
        }
        // Next to them, ordinary format characters stay (ZWJ in emoji).
        assert_eq!(p("👩\u{200D}💻"), "👩\u{200D}💻");
    }

    #[test]
    fn backslash_is_escaped_so_escapes_cannot_be_forged() {
        assert_eq!(p(r"a\u{a}b"), r"a\\u{a}b");
        assert_ne!(p("a\nb"), p(r"a\u{a}b"));
    }

    #[test]
    fn output_never_contains_a_character_that_needs_escaping() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = p(&all);
        assert!(!out.chars().any(needs_escape));
        assert_eq!(format!("{:?}", Printable("a\nb")), "\"a\\u{a}b\"");
    }
}
