//! SMTP replies: a code, an optional RFC 3463 enhanced status code and text.
//!
//! Kept separate from the session so every component (session, listener,
//! ingest deciding a final 250/451) speaks the same type, and so the wire
//! format — including multi-line replies — is produced in exactly one place.

/// One SMTP reply, possibly multi-line (lines separated by `'\n'` in `text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            text: text.into(),
        }
    }

    /// 2xx and 3xx replies are positive (the command was accepted).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 5xx: permanent failure.
    pub fn is_permanent_failure(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// Writes the reply in wire format.
    ///
    /// Every `'\n'`-separated line of `text` becomes one reply line; all but
    /// the last use the `"250-"` continuation form. The enhanced code is
    /// repeated on every line (RFC 2034). Carriage returns and other control
    /// characters in `text` are dropped so a reply can never inject lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let text = self.text.strip_suffix('\n').unwrap_or(&self.text);
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none();
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if last { b' ' } else { b'-' });
            let start = out.len();
            if let Some((class, subject, detail)) = self.enhanced {
                out.extend_from_slice(format!("{class}.{subject}.{detail} ").as_bytes());
            }
            out.extend(
                line.bytes()
                    .filter(|b| *b == b'\t' || !b.is_ascii_control()),
            );
            // "250 " with nothing after it is not a valid reply line.
            while out.len() > start && out.last() == Some(&b' ') {
                out.pop();
            }
            if out.len() == start && last {
                out.pop();
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a byte vector (convenience for tests and logging).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, Some((2, 1, 5)), "Recipient OK");
        assert_eq!(r.to_bytes(), b"250 2.1.5 Recipient OK\r\n");
        assert!(r.is_positive());
    }

    #[test]
    fn multi_line_repeats_enhanced_code() {
        let r = Reply::new(550, Some((5, 7, 1)), "first\nsecond\nthird");
        assert_eq!(
            r.to_bytes(),
            b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
        assert!(!r.is_positive());
    }

    #[test]
    fn multi_line_without_enhanced_code() {
        let r = Reply::new(250, None, "mx.example\nPIPELINING\nHELP\n");
        assert_eq!(
            r.to_bytes(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 HELP\r\n"
        );
    }

    #[test]
    fn control_characters_cannot_inject_lines() {
        let r = Reply::new(250, None, "a\r\r250 fake\x00");
        assert_eq!(r.to_bytes(), b"250 a250 fake\r\n");
    }

    #[test]
    fn empty_text() {
        assert_eq!(Reply::new(250, None, "").to_bytes(), b"250\r\n");
        assert_eq!(
            Reply::new(250, Some((2, 0, 0)), "").to_bytes(),
            b"250 2.0.0\r\n"
        );
    }

    #[test]
    fn positivity() {
        assert!(Reply::new(354, None, "go").is_positive());
        assert!(!Reply::new(421, None, "bye").is_positive());
        assert!(!Reply::new(199, None, "?").is_positive());
        assert!(Reply::new(552, None, "big").is_permanent_failure());
    }
}
