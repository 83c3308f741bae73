//! When is a message "the same message again"?
//!
//! A Message-ID alone is not enough: ids are reused by broken mailers and
//! can be planted by a stranger who sends a message with a guessed id first,
//! which would make the genuine mail vanish as a "duplicate". So a dedup key
//! (the Message-ID, or a hash of the bytes for mail without one) is paired
//! with a fingerprint of what makes the mail the same: sender, subject,
//! date and content as parsed, or the bytes without trace headers for mail
//! we could not parse. Same key and same fingerprint is a duplicate; same
//! key and another fingerprint is a collision, kept as its own message.

use sha2::{Digest, Sha256};

use super::request::Item;
use crate::mail::ParsedMail;

/// The hashes dedup needs for one request (one received message): its
/// content key, raw fingerprint and parsed fingerprint, each computed once
/// whatever the number of target mailboxes. Ingest computes them on the
/// blocking pool before the commit, so the single writer thread does not
/// hash a large message; [`Digests::fill`] computes what is still missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// sha256 of all the bytes: the key of mail without a Message-ID.
    pub content: Option<String>,
    /// The bytes without trace headers: rejections kept with their bytes.
    pub raw: Option<String>,
    /// The parsed message: ticket messages (every item of a request carries
    /// the same parsed mail).
    pub message: Option<String>,
}

impl Digests {
    pub fn for_request(raw: &[u8], items: &[Item]) -> Digests {
        let mut digests = Digests::default();
        digests.fill(raw, items);
        digests
    }

    /// Computes whatever `items` need that is not there yet.
    pub fn fill(&mut self, raw: &[u8], items: &[Item]) {
        for item in items {
            let (needs_content, needs_raw) = match item {
                Item::Message { mail, .. } => {
                    if self.message.is_none() {
                        self.message = Some(message_fingerprint(mail));
                    }
                    (mail.message_id.is_none(), false)
                }
                Item::Reject {
                    message_id,
                    keep_raw: true,
                    ..
                } => (message_id.is_none(), true),
                Item::Reject { .. } => (false, false),
            };
            if needs_content && self.content.is_none() {
                self.content = Some(content_key(raw));
            }
            if needs_raw && self.raw.is_none() {
                self.raw = Some(raw_fingerprint(raw));
            }
        }
    }
}

/// The key of mail without a Message-ID: a hash of all its bytes.
pub fn content_key(raw: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(raw))
}

/// The key under which a colliding message (same id, other content) is
/// remembered, so that its own copies are still duplicates.
pub fn collision_key(key: &str, fingerprint: &str) -> String {
    format!("{key}#{fingerprint}")
}

/// What makes a parsed message the same message, wherever it travelled:
/// not its trace headers, not its transfer encoding. The parser computes it
/// (with the decoded attachments, see [`fingerprint_with`]); a message built
/// by hand is fingerprinted from its fields.
pub fn message_fingerprint(mail: &ParsedMail) -> String {
    match &mail.fingerprint {
        Some(f) => f.clone(),
        None => fingerprint_with(
            mail,
            mail.attachments
                .iter()
                .map(|a| (a.content_type.as_str(), &[][..])),
        ),
    }
}

/// The fingerprint of `mail` whose attachments decode to `attachments`
/// (content type, bytes), in order.
pub fn fingerprint_with<'a>(
    mail: &ParsedMail,
    attachments: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    field("from", mail.from.address.to_ascii_lowercase().as_bytes());
    field("subject", mail.subject.as_bytes());
    field("date", mail.date.as_deref().unwrap_or("").as_bytes());
    field("text", mail.text.as_bytes());
    field("html", mail.html.as_deref().unwrap_or("").as_bytes());
    for (content_type, bytes) in attachments {
        field("attachment", content_type.as_bytes());
        field("attachment-bytes", bytes);
    }
    hex(h)
}

/// Header fields added on the way (by MTAs, filters, the final delivery)
/// that differ between two copies of one message.
fn is_trace_field(name: &[u8]) -> bool {
    const TRACE: [&str; 8] = [
        "received",
        "return-path",
        "delivered-to",
        "x-original-to",
        "x-received",
        "authentication-results",
        "x-envelope-from",
        "x-envelope-to",
    ];
    const TRACE_PREFIX: [&str; 4] = ["arc-", "x-spam", "x-virus", "x-ms-exchange-"];
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    TRACE.contains(&name.as_str()) || TRACE_PREFIX.iter().any(|p| name.starts_with(p))
}

/// The bytes of a message without its trace header fields, hashed: for
/// mail that could not be parsed, or refused before parsing.
pub fn raw_fingerprint(raw: &[u8]) -> String {
    let mut h = Sha256::new();
    let mut rest = raw;
    let mut skipping = false;
    loop {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if line.is_empty() {
            break;
        }
        let blank = line == b"\r\n" || line == b"\n";
        if blank {
            h.update(rest);
            break;
        }
        let continuation = line[0] == b' ' || line[0] == b'\t';
        if !continuation {
            skipping = line
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|colon| is_trace_field(&line[..colon]));
        }
        if !skipping {
            h.update(line);
        }
        rest = next;
    }
    hex(h)
}

/// A fingerprint from the few fields kept of mail that was not kept
/// (oversize): enough to tell a resend of the same from another message.
pub fn fields_fingerprint(from: Option<&str>, subject: Option<&str>, size: u64) -> String {
    let mut h = Sha256::new();
    h.update(from.unwrap_or("").to_ascii_lowercase().as_bytes());
    h.update([0]);
    h.update(subject.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(size.to_be_bytes());
    hex(h)
}

fn hex(h: Sha256) -> String {
    // 128 bits are plenty to tell messages apart and keep the table small.
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_do_not_change_the_raw_fingerprint() {
        let a = b"Received: from a by b; Mon, 1 Jan 2026\r\n\tcontinued\r\nFrom: x@y.test\r\nSubject: s\r\n\r\nbody\r\n";
        let b = b"Return-Path: <x@y.test>\r\nReceived: from c by d\r\nDelivered-To: s@z.test\r\nFrom: x@y.test\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(raw_fingerprint(a), raw_fingerprint(b));
        let other = b"From: x@y.test\r\nSubject: s\r\n\r\nother body\r\n";
        assert_ne!(raw_fingerprint(a), raw_fingerprint(other));
        let other_sender = b"From: evil@y.test\r\nSubject: s\r\n\r\nbody\r\n";
        assert_ne!(raw_fingerprint(a), raw_fingerprint(other_sender));
    }

    #[test]
    fn digests_compute_what_the_items_need_and_keep_what_was_given() {
        use std::sync::Arc;

        use crate::tickets::MailboxRef;
        let raw = b"From: a@b.test\r\nSubject: s\r\n\r\nbody\r\n";
        let mut mail = ParsedMail::default();
        mail.from.address = "a@b.test".into();
        let mail = Arc::new(mail);
        let message = |name: &str| Item::Message {
            mailbox: MailboxRef {
                name: name.into(),
                queue: name.into(),
                ..MailboxRef::default()
            },
            mail: mail.clone(),
            automatic: None,
            rules: None,
            internal: false,
            counterpart: None,
            trace: Default::default(),
        };
        // No Message-ID: the content key and the parsed fingerprint, once
        // for two mailboxes; no raw fingerprint.
        let d = Digests::for_request(raw, &[message("a"), message("b")]);
        assert_eq!(d.content, Some(content_key(raw)));
        assert_eq!(d.message, Some(message_fingerprint(&mail)));
        assert_eq!(d.raw, None);
        let reject = Item::Reject {
            mailbox: None,
            reason: crate::mail::RejectReason::NoSender,
            detail: String::new(),
            message_id: Some("x@y".into()),
            from: None,
            subject: None,
            keep_raw: true,
            trace: Default::default(),
        };
        let d = Digests::for_request(raw, std::slice::from_ref(&reject));
        assert_eq!((d.content, d.raw), (None, Some(raw_fingerprint(raw))));
        // What the caller computed stays.
        let mut given = Digests {
            message: Some("given".into()),
            ..Digests::default()
        };
        given.fill(raw, &[message("a")]);
        assert_eq!(given.message.as_deref(), Some("given"));
    }

    #[test]
    fn raw_fingerprint_takes_any_bytes() {
        for input in [&b""[..], b"\n", b"no colon at all", b"\r\n\r\n", b"a:b\nc"] {
            assert_eq!(raw_fingerprint(input).len(), 32);
        }
    }
}
