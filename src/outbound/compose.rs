//! Every message the gateway sends is built here, so the header policy
//! holds for all of them: From the mailbox, Reply-To the ticket's mailbox
//! (or the default mailbox's), the ticket tag in the subject, the reply
//! token in the Message-ID, the thread continued, and the headers that stop
//! auto-responder loops. Ticket data is hostile input: no header value may
//! carry CR, LF or another control character, whatever a subject, a display
//! name or an address contains.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use crate::rules::ForwardMode;

pub use crate::tickets::outgoing::{
    Attachment, ComposeError, Kind, Mailbox, Original, Outgoing, header_text, tagged_subject,
    valid_address,
};

/// A Message-ID (without `<>`) we are willing to write: `left@right`,
/// printable ASCII without spaces or angle brackets.
pub fn valid_message_id(id: &str) -> bool {
    id.len() <= 250
        && id
            .split_once('@')
            .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

fn mailbox<'x>(m: &'x Mailbox, field: &'static str) -> Result<Address<'x>, ComposeError> {
    if !valid_address(&m.address) {
        return Err(ComposeError::Address { field });
    }
    let name = m
        .name
        .as_deref()
        .map(|n| header_text(n, 200))
        .filter(|n| !n.is_empty());
    Ok(match name {
        Some(name) => Address::new_address(Some(name), m.address.as_str()),
        None => Address::new_address(None::<&str>, m.address.as_str()),
    })
}

/// The composer the ticket rules call inside their transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailComposer;

impl crate::tickets::outgoing::Composer for MailComposer {
    fn compose(&self, message: &Outgoing) -> Result<Vec<u8>, ComposeError> {
        compose(message)
    }
}

pub fn compose(m: &Outgoing) -> Result<Vec<u8>, ComposeError> {
    if m.to.is_empty() {
        return Err(ComposeError::NoRecipient);
    }
    if !valid_message_id(&m.message_id) {
        return Err(ComposeError::MessageId {
            field: "message_id",
        });
    }
    if !valid_address(&m.reply_to) {
        return Err(ComposeError::Address { field: "reply_to" });
    }
    let to =
        m.to.iter()
            .map(|t| mailbox(t, "to"))
            .collect::<Result<Vec<_>, _>>()?;
    let cc =
        m.cc.iter()
            .map(|c| mailbox(c, "cc"))
            .collect::<Result<Vec<_>, _>>()?;
    let mut b = MessageBuilder::new()
        .from(mailbox(&m.from, "from")?)
        .reply_to(m.reply_to.as_str())
        .to(Address::new_list(to))
        .subject(tagged_subject(&m.subject, &m.tag))
        .message_id(m.message_id.as_str())
        .date(Date::new(m.date));
    if !cc.is_empty() {
        b = b.cc(Address::new_list(cc));
    }
    // Only well-formed ids continue the thread; a broken one is left out
    // rather than written raw.
    if let Some(irt) = m.in_reply_to.as_deref().filter(|i| valid_message_id(i)) {
        b = b.in_reply_to(irt);
    }
    let refs: Vec<&str> = m
        .references
        .iter()
        .map(String::as_str)
        .filter(|r| valid_message_id(r))
        .collect();
    if !refs.is_empty() {
        b = b.references(MessageId::new_list(refs.into_iter()));
    }
    if let Some(value) = m.kind.auto_submitted() {
        b = b.header("Auto-Submitted", Raw::new(value));
    }
    b = b
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .header(
            "X-Mailer",
            Raw::new(concat!("mailgate/", env!("CARGO_PKG_VERSION"))),
        )
        .header("X-Mailgate-Ticket", Raw::new(m.ticket_number.to_string()))
        .header("X-Mailgate-Message-Id", Raw::new(m.record_id.to_string()))
        .text_body(m.text.as_str());
    if let Some(html) = &m.html {
        b = b.html_body(html.as_str());
    }
    for a in &m.attachments {
        let content_type = if valid_content_type(&a.content_type) {
            a.content_type.as_str()
        } else {
            "application/octet-stream"
        };
        let name = header_text(&a.name, 200);
        let name = if name.is_empty() {
            "attachment".to_string()
        } else {
            name
        };
        b = b.attachment(content_type, name, a.bytes.as_slice());
    }
    if let Some(original) = &m.original {
        b = with_original(b, original);
    }
    // Writing into a Vec cannot fail.
    Ok(b.write_to_vec().unwrap_or_default())
}

/// A forward's original: attached as `message/rfc822` byte for byte (RFC
/// 2046 allows only 7bit/8bit there, so a message with overlong lines or a
/// bare CR/LF goes as a base64 `application/octet-stream` file instead),
/// or inline, where the text is already in the body and its attachments
/// are decoded from the raw bytes and attached again.
fn with_original<'x>(mut b: MessageBuilder<'x>, original: &'x Original) -> MessageBuilder<'x> {
    match original.mode {
        ForwardMode::Attached => {
            let raw = original.raw.as_ref();
            let part = match line_clean(raw) {
                Some(encoding) => MimePart::new("message/rfc822", BodyPart::Binary(raw.into()))
                    .attachment("original.eml")
                    .header("Content-Transfer-Encoding", Raw::new(encoding)),
                None => MimePart::new("application/octet-stream", BodyPart::Binary(raw.into()))
                    .attachment("original.eml"),
            };
            b.attachments.get_or_insert_with(Vec::new).push(part);
        }
        ForwardMode::Inline if !original.attachments.is_empty() => {
            let mut decoded = crate::ingest::parse::all_attachments(&original.raw);
            for a in &original.attachments {
                let Some(bytes) = usize::try_from(a.index)
                    .ok()
                    .and_then(|i| decoded.get_mut(i))
                    .map(std::mem::take)
                else {
                    continue;
                };
                let content_type = if valid_content_type(&a.content_type) {
                    a.content_type.as_str()
                } else {
                    "application/octet-stream"
                };
                let name = header_text(a.name.as_deref().unwrap_or(""), 200);
                let name = if name.is_empty() {
                    format!("attachment-{}", a.index)
                } else {
                    name
                };
                b = b.attachment(content_type, name, bytes);
            }
        }
        ForwardMode::Inline => {}
    }
    b
}

/// `7bit` or `8bit` when every line ends in CRLF and is at most 998 bytes
/// (RFC 5322 2.1.1) and no NUL occurs; None otherwise.
fn line_clean(raw: &[u8]) -> Option<&'static str> {
    let mut eight = false;
    for line in raw.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 998 || line.contains(&b'\r') || line.contains(&0) {
            return None;
        }
        eight |= line.iter().any(|&c| c >= 0x80);
    }
    // Every LF must follow a CR.
    let lf = raw.iter().filter(|&&c| c == b'\n').count();
    let crlf = raw.windows(2).filter(|w| w == b"\r\n").count();
    (lf == crlf).then_some(if eight { "8bit" } else { "7bit" })
}

/// `type/subtype` of token characters only.
fn valid_content_type(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    ct.split_once('/')
        .is_some_and(|(t, s)| token(t) && token(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing() -> Outgoing {
        Outgoing {
            kind: Kind::Notification,
            from: Mailbox {
                name: Some("Support".into()),
                address: "support@example.test".into(),
            },
            reply_to: "support@example.test".into(),
            to: vec![Mailbox {
                name: Some("Ann Customer".into()),
                address: "ann@customer.test".into(),
            }],
            cc: vec![],
            subject: "Printer on fire".into(),
            tag: "[MG#1000]".into(),
            message_id: "mg.1.2.00112233445566778899aabbccddeeff@example.test".into(),
            in_reply_to: Some("orig@customer.test".into()),
            references: vec!["first@customer.test".into(), "orig@customer.test".into()],
            ticket_number: 1000,
            record_id: 2,
            date: 1_767_225_600,
            text: "We are on it.".into(),
            html: None,
            attachments: vec![],
            original: None,
        }
    }

    fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(raw).unwrap()
    }

    fn header_block(raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw).to_string();
        text.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn every_policy_header_is_there() {
        let raw = compose(&outgoing()).unwrap();
        let m = parse(&raw);
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("support@example.test")
        );
        assert_eq!(
            m.reply_to().unwrap().first().unwrap().address(),
            Some("support@example.test")
        );
        assert_eq!(m.subject(), Some("[MG#1000] Printer on fire"));
        assert_eq!(
            m.message_id(),
            Some("mg.1.2.00112233445566778899aabbccddeeff@example.test")
        );
        assert_eq!(m.in_reply_to().as_text(), Some("orig@customer.test"));
        let refs: Vec<String> = m
            .references()
            .as_text_list()
            .unwrap_or_default()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(refs, vec!["first@customer.test", "orig@customer.test"]);
        let head = header_block(&raw);
        for h in [
            "Auto-Submitted: auto-generated",
            "X-Auto-Response-Suppress: All",
            concat!("X-Mailer: mailgate/", env!("CARGO_PKG_VERSION")),
            "X-Mailgate-Ticket: 1000",
            "X-Mailgate-Message-Id: 2",
        ] {
            assert!(head.contains(h), "missing {h:?} in\n{head}");
        }
        assert_eq!(m.body_text(0).as_deref(), Some("We are on it."));
    }

    #[test]
    fn auto_submitted_follows_the_kind() {
        let mut o = outgoing();
        o.kind = Kind::Acknowledgement;
        assert!(header_block(&compose(&o).unwrap()).contains("Auto-Submitted: auto-replied"));
        o.kind = Kind::Reply;
        let head = header_block(&compose(&o).unwrap());
        assert!(!head.contains("Auto-Submitted"), "{head}");
        assert!(head.contains("X-Auto-Response-Suppress: All"));
    }

    #[test]
    fn the_tag_is_not_doubled() {
        assert_eq!(tagged_subject("Re: [MG#7] x", "[MG#7]"), "Re: [MG#7] x");
        assert_eq!(tagged_subject("x", "[MG#7]"), "[MG#7] x");
        assert_eq!(tagged_subject("", "[MG#7]"), "[MG#7]");
    }

    #[test]
    fn hostile_ticket_data_cannot_inject_headers() {
        let mut o = outgoing();
        o.subject = "hi\r\nBcc: victim@evil.test\r\n\r\nbody\u{2028}x\u{85}y\u{0}z".into();
        o.to[0].name = Some("Ann\r\nX-Injected: 1\n\rCc: a@b.test".into());
        o.from.name = Some("Support\u{1b}[31m\r\nX-Evil: yes".into());
        o.attachments = vec![Attachment {
            name: "a\r\nContent-Type: text/html\r\n\r\n.txt".into(),
            content_type: "text/plain\r\nX-Evil: 1".into(),
            bytes: b"data".to_vec(),
        }];
        let raw = compose(&o).unwrap();
        let text = String::from_utf8_lossy(&raw);
        for line in text.split("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line break in {line:?}"
            );
            for bad in ["Bcc:", "X-Injected:", "X-Evil:", "Cc: a@b.test"] {
                assert!(!line.starts_with(bad), "injected header {line:?}");
            }
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "control character in {line:?}"
            );
        }
        let m = parse(&raw);
        assert!(m.header("Bcc").is_none());
        assert_eq!(m.subject().unwrap().lines().count(), 1);
    }

    #[test]
    fn unusable_addresses_and_ids_are_refused() {
        for bad in [
            "",
            "no-at-sign",
            "a b@c.test",
            "a@b.test\r\nBcc: x@y.test",
            "<a@b.test>",
            "a@b.test, c@d.test",
            "\"quoted\r\n\"@b.test",
        ] {
            let mut o = outgoing();
            o.to[0].address = bad.into();
            assert_eq!(
                compose(&o),
                Err(ComposeError::Address { field: "to" }),
                "{bad:?}"
            );
        }
        let mut o = outgoing();
        o.reply_to = "x\r\n@y".into();
        assert_eq!(
            compose(&o),
            Err(ComposeError::Address { field: "reply_to" })
        );
        let mut o = outgoing();
        o.message_id = "a b@c".into();
        assert!(matches!(compose(&o), Err(ComposeError::MessageId { .. })));
        // A broken reference is dropped, not written.
        let mut o = outgoing();
        o.in_reply_to = Some("x>\r\nBcc: y@z".into());
        let raw = compose(&o).unwrap();
        assert!(parse(&raw).in_reply_to().is_empty());
        let mut o = outgoing();
        o.to.clear();
        assert_eq!(compose(&o), Err(ComposeError::NoRecipient));
    }

    #[test]
    fn html_and_attachments_survive() {
        let mut o = outgoing();
        o.html = Some("<p>We are <b>on it</b></p>".into());
        o.attachments = vec![Attachment {
            name: "log.bin".into(),
            content_type: "application/octet-stream".into(),
            bytes: (0u8..=255).collect(),
        }];
        let raw = compose(&o).unwrap();
        let m = parse(&raw);
        assert!(m.body_html(0).unwrap().contains("<b>on it</b>"));
        let a = m.attachment(0).unwrap();
        assert_eq!(a.contents(), (0u8..=255).collect::<Vec<_>>().as_slice());
        use mail_parser::MimeHeaders;
        assert_eq!(a.attachment_name(), Some("log.bin"));
    }

    const ORIGINAL: &[u8] = b"From: Ann <ann@customer.test>\r\nTo: support@example.test\r\n\
Subject: Invoice\r\nMessage-ID: <orig.1@customer.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Gr\xc3\xbc\xc3\x9fe, see the invoice.\r\n--b1\r\n\
Content-Type: application/pdf; name=\"inv.pdf\"\r\n\
Content-Disposition: attachment; filename=\"inv.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs\r\n--b1--\r\n";

    fn forward_of(mode: ForwardMode, raw: &[u8]) -> Outgoing {
        let mut o = outgoing();
        o.subject = "Fwd: Invoice".into();
        o.original = Some(Original {
            mode,
            raw: bytes::Bytes::copy_from_slice(raw),
            attachments: vec![crate::mail::AttachmentMeta {
                index: 0,
                name: Some("inv.pdf".into()),
                content_type: "application/pdf".into(),
                size: 12,
            }],
        });
        o
    }

    #[test]
    fn an_attached_original_is_a_byte_for_byte_message_part() {
        let raw = compose(&forward_of(ForwardMode::Attached, ORIGINAL)).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        assert!(text.contains("Content-Type: message/rfc822"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
        // The original's bytes appear unchanged inside the forward.
        assert!(raw.windows(ORIGINAL.len()).any(|w| w == ORIGINAL));
        let m = parse(&raw);
        let part = m.attachment(0).unwrap();
        let inner = part.message().expect("an embedded message");
        assert_eq!(inner.subject(), Some("Invoice"));
        assert_eq!(inner.message_id(), Some("orig.1@customer.test"));
        assert!(inner.body_text(0).unwrap().contains("Grüße"));
        // A 7-bit original says so.
        let ascii = b"From: a@b.test\r\nSubject: x\r\n\r\nhello\r\n";
        let raw = compose(&forward_of(ForwardMode::Attached, ascii)).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        assert!(text.contains("Content-Transfer-Encoding: 7bit"), "{text}");
    }

    #[test]
    fn an_original_that_is_not_line_clean_goes_as_a_base64_file() {
        let long = format!(
            "From: a@b.test\r\nSubject: x\r\n\r\n{}\r\n",
            "y".repeat(1200)
        );
        for bad in [
            long.as_bytes(),
            b"From: a@b.test\nSubject: bare LF\n\nhi\n".as_slice(),
        ] {
            let raw = compose(&forward_of(ForwardMode::Attached, bad)).unwrap();
            let text = String::from_utf8_lossy(&raw).to_string();
            assert!(!text.contains("message/rfc822"), "{text}");
            assert!(text.lines().all(|l| l.len() <= 998));
            let m = parse(&raw);
            let a = m.attachment(0).unwrap();
            use mail_parser::MimeHeaders;
            assert_eq!(a.attachment_name(), Some("original.eml"));
            assert_eq!(a.contents(), bad);
        }
    }

    #[test]
    fn an_inline_forward_attaches_the_originals_attachments_again() {
        let raw = compose(&forward_of(ForwardMode::Inline, ORIGINAL)).unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        assert!(!text.contains("message/rfc822"), "{text}");
        let m = parse(&raw);
        let a = m.attachment(0).unwrap();
        use mail_parser::MimeHeaders;
        assert_eq!(a.attachment_name(), Some("inv.pdf"));
        assert_eq!(a.contents(), b"%PDF-1.4\n%\xc7\xec");
        assert_eq!(m.attachment_count(), 1);
    }

    #[test]
    fn non_ascii_names_and_subjects_are_encoded() {
        let mut o = outgoing();
        o.subject = "Drucker brennt – 日本語".into();
        o.to[0].name = Some("Jürgen Müller".into());
        let raw = compose(&o).unwrap();
        assert!(raw.is_ascii(), "headers must be 7-bit (RFC 2047)");
        let m = parse(&raw);
        assert_eq!(m.subject(), Some("[MG#1000] Drucker brennt – 日本語"));
        assert_eq!(
            m.to().unwrap().first().unwrap().name(),
            Some("Jürgen Müller")
        );
    }
}
