//! Raw bytes -> the owned fields we store, via mail-parser.
//!
//! mail-parser is lenient by design; what it cannot make a message of, or a
//! message without a usable sender, comes back as a reason instead.

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};

use crate::mail::{Attachment, AttachmentMeta, Markers, ParsedMail, Person, RejectReason};

/// A message that cannot be a ticket message, with the fields we could read.
#[derive(Debug, Clone)]
pub struct Unusable {
    pub reason: RejectReason,
    pub detail: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

/// Parses raw bytes. Never panics, whatever the input.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, Unusable> {
    let unparseable = |detail: &str| Unusable {
        reason: RejectReason::Unparseable,
        detail: detail.to_string(),
        message_id: None,
        from: None,
        subject: None,
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(unparseable("empty message"));
    }
    let Some(message) = MessageParser::default().parse(raw) else {
        return Err(unparseable("no RFC 5322 header block found"));
    };
    if message.headers().is_empty() {
        return Err(unparseable("no RFC 5322 header fields found"));
    }
    let message_id = message.message_id().map(clean_id).filter(|s| !s.is_empty());
    let subject = message.subject().map(str::to_string);

    let from = message.from().and_then(first_person);
    let Some(from) = from else {
        let (detail, from_raw) = match message.header_raw("From") {
            None => ("no From header".to_string(), None),
            Some(raw_from) => (
                format!("no parseable address in From: {}", raw_from.trim()),
                Some(raw_from.trim().to_string()),
            ),
        };
        return Err(Unusable {
            reason: RejectReason::NoSender,
            detail,
            message_id,
            from: from_raw,
            subject,
        });
    };

    Ok(ParsedMail {
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        to: message.to().map(people).unwrap_or_default(),
        cc: message.cc().map(people).unwrap_or_default(),
        date: message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_rfc3339()),
        subject: subject.unwrap_or_default(),
        text: message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        html: real_html(&message),
        attachments: attachments(&message),
        markers: markers(&message),
        message_id,
        from,
    })
}

/// The first text/html body part; mail-parser would otherwise synthesize
/// HTML from a plain-text body, which is not what the sender wrote.
fn real_html(message: &Message<'_>) -> Option<String> {
    message
        .html_bodies()
        .find(|part| part.is_text_html())
        .and_then(|part| part.text_contents())
        .map(str::to_string)
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match value {
        HeaderValue::Text(t) => vec![clean_id(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| clean_id(t)).collect(),
        _ => Vec::new(),
    };
    list.into_iter().filter(|s| !s.is_empty()).collect()
}

fn first_person(address: &Address<'_>) -> Option<Person> {
    address.iter().find_map(|a| {
        let addr = a.address()?.trim();
        if addr.is_empty() || !addr.contains('@') {
            return None;
        }
        Some(Person {
            address: addr.to_string(),
            name: a
                .name()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        })
    })
}

fn people(address: &Address<'_>) -> Vec<Person> {
    address
        .iter()
        .filter_map(|a| {
            Some(Person {
                address: a.address()?.trim().to_string(),
                name: a.name().map(str::to_string),
            })
        })
        .collect()
}

fn attachments(message: &Message<'_>) -> Vec<Attachment> {
    message
        .attachments()
        .enumerate()
        .map(|(i, part)| {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let bytes = part.contents().to_vec();
            Attachment {
                meta: AttachmentMeta {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    name: part.attachment_name().map(str::to_string),
                    content_type,
                    size: bytes.len() as u64,
                },
                bytes,
            }
        })
        .collect()
}

fn markers(message: &Message<'_>) -> Markers {
    let text = |name: &str| message.header_raw(name).map(|v| v.trim().to_string());
    Markers {
        auto_submitted: text("Auto-Submitted"),
        precedence: text("Precedence"),
        x_autoreply: text("X-Autoreply"),
        x_autorespond: text("X-Autorespond"),
        x_auto_response_suppress: text("X-Auto-Response-Suppress"),
        return_path: text("Return-Path").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_string()
        }),
        is_report: message.root_part().content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message() {
        let raw = b"From: Ann <ann@example.org>\r\nTo: support@example.test\r\nSubject: Printer\r\nMessage-ID: <a1@example.org>\r\nReferences: <r1@x> <r2@x>\r\n\r\nIt is broken.\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("a1@example.org"));
        assert_eq!(m.references, vec!["r1@x", "r2@x"]);
        assert_eq!(m.from.address, "ann@example.org");
        assert_eq!(m.from.name.as_deref(), Some("Ann"));
        assert_eq!(m.subject, "Printer");
        assert!(m.text.contains("It is broken."));
        assert!(m.html.is_none(), "no HTML part, no HTML: {:?}", m.html);
    }

    #[test]
    fn html_only_gets_text() {
        let raw = b"From: a@b.test\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>world</b></p>\r\n";
        let m = parse(raw).unwrap();
        assert!(m.text.contains("Hello"), "{:?}", m.text);
        assert!(m.html.unwrap().contains("<b>world</b>"));
    }

    #[test]
    fn missing_or_broken_sender() {
        let e = parse(b"Subject: hi\r\n\r\nbody\r\n").unwrap_err();
        assert_eq!(e.reason, RejectReason::NoSender);
        assert_eq!(e.detail, "no From header");
        let e = parse(b"From: nobody\r\nSubject: hi\r\n\r\nbody\r\n").unwrap_err();
        assert_eq!(e.reason, RejectReason::NoSender);
        assert_eq!(e.from.as_deref(), Some("nobody"));
    }

    #[test]
    fn garbage_is_unparseable() {
        assert_eq!(parse(b"").unwrap_err().reason, RejectReason::Unparseable);
        assert_eq!(
            parse(b"\r\n\r\n").unwrap_err().reason,
            RejectReason::Unparseable
        );
    }

    /// The fuzz target's property on pseudo-random inputs and mutations of a
    /// real message: never a panic, accepted mail always has a sender.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let base = b"From: A <a@b.test>\r\nTo: s@x.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let mut input = base.to_vec();
            if round % 3 == 0 {
                input = (0..(next() % 512)).map(|_| next() as u8).collect();
            } else {
                for _ in 0..(next() % 8 + 1) {
                    let at = (next() as usize) % input.len().max(1);
                    match next() % 3 {
                        0 => input.truncate(at),
                        1 => input.insert(at, next() as u8),
                        _ => {
                            if at < input.len() {
                                input[at] = next() as u8;
                            }
                        }
                    }
                }
            }
            match parse(&input) {
                Ok(mail) => assert!(mail.from.address.contains('@')),
                Err(e) => assert!(!e.detail.is_empty()),
            }
        }
    }

    #[test]
    fn attachments_are_decoded() {
        let raw = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.attachments.len(), 1);
        let a = &m.attachments[0];
        assert_eq!(a.meta.name.as_deref(), Some("x.pdf"));
        assert_eq!(a.meta.content_type, "application/pdf");
        assert_eq!(a.bytes, b"%PDF-1.4\n");
        assert_eq!(a.meta.size, 9);
    }
}
