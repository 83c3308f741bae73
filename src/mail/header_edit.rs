//! Changing a few fields of a message's header block while every other byte
//! stays exactly as the sender wrote it.
//!
//! Mail submitted by an organisation's own systems is relayed, not
//! re-composed: their headers (X-*, List-*, MIME structure, trace fields)
//! must reach the relay byte for byte. The gateway only takes fields out
//! (`Bcc`, a replaced `Reply-To`) and puts its own in front. Field
//! boundaries come from mail-parser's header offsets, so folded lines,
//! odd spacing and encoded words are handled the way the parser sees them.

use mail_parser::MessageParser;

/// A message's top-level header fields, read once: (name, start, end)
/// byte ranges, `end` past the field's line break.
pub struct Headers<'a> {
    raw: &'a [u8],
    fields: Vec<(String, usize, usize)>,
}

impl<'a> Headers<'a> {
    pub fn parse(raw: &'a [u8]) -> Headers<'a> {
        let fields = MessageParser::default()
            .parse_headers(raw)
            .and_then(|m| m.parts.into_iter().next())
            .map(|part| {
                part.headers
                    .iter()
                    .map(|h| {
                        let start = (h.offset_field as usize).min(raw.len());
                        let end = line_end(raw, (h.offset_end as usize).max(start));
                        (h.name.as_str().to_string(), start, end)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Headers { raw, fields }
    }

    /// Whether the header block holds a field of this name (any case).
    pub fn has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _, _)| n.eq_ignore_ascii_case(name))
    }

    /// The values of every field of this name (any case), in order: the
    /// text after the colon, unfolded (line breaks and the whitespace
    /// after them become one space), trimmed; bytes that are not UTF-8
    /// replaced. Encoded words are left as written.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = String> + 's {
        self.fields
            .iter()
            .filter(move |(n, _, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, start, end)| {
                let field = &self.raw[*start..*end];
                let value = match memchr::memchr(b':', field) {
                    Some(colon) => &field[colon + 1..],
                    None => &[][..],
                };
                let text = String::from_utf8_lossy(value);
                text.split(['\r', '\n'])
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }

    /// The message with every field named in `remove` taken out (with its
    /// continuation lines) and `prepend` written in front, in order.
    /// Nothing else changes: body, other fields, their order and their line
    /// breaks.
    pub fn edit(&self, remove: &[&str], prepend: &[(&str, String)]) -> Vec<u8> {
        let raw = self.raw;
        let mut out = Vec::with_capacity(raw.len() + 64 * prepend.len());
        for (name, value) in prepend {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(one_line(value).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut from = 0;
        for (name, start, end) in &self.fields {
            if *start < from || !remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.extend_from_slice(&raw[from..*start]);
            from = *end;
        }
        out.extend_from_slice(&raw[from..]);
        out
    }
}

/// The position after the line break that ends the line holding `at`
/// (the value offsets stop before or on the CRLF).
fn line_end(raw: &[u8], at: usize) -> usize {
    let at = at.min(raw.len());
    if at > 0 && raw.get(at - 1) == Some(&b'\n') {
        return at;
    }
    match memchr::memchr(b'\n', &raw[at..]) {
        Some(p) => at + p + 1,
        None => raw.len(),
    }
}

/// A field value safe to write on one header line: line breaks and other
/// controls become spaces.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(raw: &[u8], remove: &[&str], prepend: &[(&str, String)]) -> Vec<u8> {
        Headers::parse(raw).edit(remove, prepend)
    }

    fn has_field(raw: &[u8], name: &str) -> bool {
        Headers::parse(raw).has(name)
    }

    const MAIL: &[u8] = b"From: Shop <shop@example.com>\r\n\
To: customer@example.org\r\n\
Bcc: boss@example.com,\r\n  audit@example.com\r\n\
X-Shop-Order:   4711 \r\n\
Subject: =?utf-8?q?Ihre_Bestellung?=\r\n\
List-Unsubscribe: <mailto:unsub@example.com>\r\n\
bcc: second@example.com\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bcc: this line is body, not a header\r\n";

    #[test]
    fn reads_values_unfolded_in_any_case() {
        let h = Headers::parse(MAIL);
        let bcc: Vec<String> = h.values("BCC").collect();
        assert_eq!(
            bcc,
            ["boss@example.com, audit@example.com", "second@example.com"]
        );
        assert_eq!(h.values("x-shop-order").collect::<Vec<_>>(), ["4711"]);
        assert_eq!(h.values("X-Missing").count(), 0);
    }

    #[test]
    fn removes_every_bcc_with_its_continuation_and_keeps_the_rest_byte_for_byte() {
        let out = edit(MAIL, &["Bcc"], &[]);
        let expected = b"From: Shop <shop@example.com>\r\n\
To: customer@example.org\r\n\
X-Shop-Order:   4711 \r\n\
Subject: =?utf-8?q?Ihre_Bestellung?=\r\n\
List-Unsubscribe: <mailto:unsub@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bcc: this line is body, not a header\r\n";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn prepends_fields_in_order_on_single_lines() {
        let out = edit(
            MAIL,
            &[],
            &[
                ("Reply-To", "support@example.com".into()),
                ("X-Evil", "a\r\nBcc: injected".into()),
            ],
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(
            "Reply-To: support@example.com\r\nX-Evil: a  Bcc: injected\r\nFrom: Shop"
        ));
        assert!(out.ends_with(MAIL));
    }

    #[test]
    fn finds_fields_in_any_case_and_only_in_the_header() {
        assert!(has_field(MAIL, "bcc"));
        assert!(has_field(MAIL, "x-shop-order"));
        assert!(!has_field(MAIL, "Reply-To"));
        assert!(!has_field(
            b"From: a@b.c\r\n\r\nReply-To: x@y.z\r\n",
            "reply-to"
        ));
    }

    #[test]
    fn bare_lf_messages_and_a_last_field_without_line_break() {
        let raw = b"From: a@b.c\nBcc: x@y.z\nSubject: s";
        assert_eq!(
            edit(raw, &["bcc"], &[]),
            b"From: a@b.c\nSubject: s".to_vec()
        );
        let raw = b"From: a@b.c\r\nBcc: x@y.z";
        assert_eq!(edit(raw, &["bcc"], &[]), b"From: a@b.c\r\n".to_vec());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_keep_what_is_not_removed() {
        // A small LCG: this layer has no test helpers of its own.
        let mut state: u64 = 7;
        let mut below = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % n) as usize
        };
        for _ in 0..2000 {
            let len = below(200);
            let raw: Vec<u8> = (0..len).map(|_| b"Bcc: x\r\n\t :ab"[below(13)]).collect();
            let out = edit(&raw, &[], &[]);
            assert_eq!(out, raw);
            let removed = edit(&raw, &["bcc"], &[]);
            assert!(removed.len() <= raw.len());
        }
    }
}
