//! Raw bytes -> the owned fields we store, via mail-parser.
//!
//! mail-parser is lenient by design; what it cannot make a message of, or a
//! message without a usable sender, comes back as a reason instead.

use std::borrow::Cow;

use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
use mail_parser::{Address, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::charset;

use crate::mail::{AttachmentMeta, Markers, ParsedMail, Person, RejectReason};

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
    let message_id = message_id(&message);
    let subject = message.subject().map(|parsed| {
        let ours = raw_header(&message, "Subject").and_then(|raw| charset::decode_words(&raw));
        charset::better(parsed.to_string(), ours)
    });

    let from = message.from().and_then(first_person).map(|mut from| {
        if let Some(name) = from.name.take() {
            let ours = raw_header(&message, "From").and_then(|raw| charset::display_name(&raw));
            from.name = Some(charset::better(name, ours));
        }
        from
    });
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

    let mut mail = ParsedMail {
        in_reply_to: id_header(&message, "In-Reply-To"),
        references: id_header(&message, "References"),
        to: message.to().map(people).unwrap_or_default(),
        cc: message.cc().map(people).unwrap_or_default(),
        date: message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_rfc3339()),
        subject: subject.unwrap_or_default(),
        text: body_text(&message),
        html: real_html(&message),
        attachments: attachments(&message),
        markers: markers(&message),
        message_id,
        from,
        fingerprint: None,
    };
    let decoded = message.attachments().map(|part| part.contents());
    let types = mail.attachments.iter().map(|a| a.content_type.as_str());
    mail.fingerprint = Some(crate::tickets::dedup::fingerprint_with(
        &mail,
        types.zip(decoded),
    ));
    Ok(mail)
}

/// The text and HTML bodies of a stored message, as [`parse`] gave them.
pub fn body(raw: &[u8]) -> Option<(String, Option<String>)> {
    let message = MessageParser::default().parse(raw)?;
    Some((body_text(&message), real_html(&message)))
}

/// The decoded bytes of attachment `index` of a stored message: the same
/// numbering as [`parse`] gave its attachments.
pub fn attachment(raw: &[u8], index: u32) -> Option<Vec<u8>> {
    let message = MessageParser::default().parse(raw)?;
    let part = message.attachments().nth(usize::try_from(index).ok()?)?;
    Some(part.contents().to_vec())
}

/// The decoded bytes of every attachment, in [`parse`]'s numbering, from
/// one parse (empty when the message does not parse).
pub fn all_attachments(raw: &[u8]) -> Vec<Vec<u8>> {
    MessageParser::default()
        .parse(raw)
        .map(|m| m.attachments().map(|p| p.contents().to_vec()).collect())
        .unwrap_or_default()
}

/// The first text/html body part; mail-parser would otherwise synthesize
/// HTML from a plain-text body, which is not what the sender wrote.
fn real_html(message: &Message<'_>) -> Option<String> {
    let part = message.html_bodies().find(|part| part.is_text_html())?;
    redecoded(message, part).or_else(|| part.text_contents().map(str::to_string))
}

/// The first text body (an HTML-only message's HTML as text).
fn body_text(message: &Message<'_>) -> String {
    let part = message.text_body.first().and_then(|&id| message.part(id));
    match part.and_then(|part| Some((part, redecoded(message, part)?))) {
        Some((part, text)) if part.is_text_html() => {
            mail_parser::decoders::html::html_to_text(&text)
        }
        Some((_, text)) => text,
        None => message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
    }
}

/// A text part whose charset mail-parser does not know (it then reads the
/// bytes as UTF-8) but [`charset::decode`] does, decoded from its raw bytes.
fn redecoded(message: &Message<'_>, part: &MessagePart<'_>) -> Option<String> {
    let label = part.content_type()?.attribute("charset")?;
    if charset::known_to_mail_parser(label) {
        return None;
    }
    let raw = message
        .raw_message()
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)?;
    let bytes = match part.encoding {
        mail_parser::Encoding::QuotedPrintable => quoted_printable_decode(raw)?,
        mail_parser::Encoding::Base64 => base64_decode(raw)?,
        mail_parser::Encoding::None => raw.to_vec(),
    };
    charset::decode(label, &bytes)
}

/// The raw value of a top-level header (first occurrence), read lossily:
/// mail-parser's `header_raw` gives nothing for a value that is not UTF-8.
fn raw_header<'a>(message: &'a Message<'_>, name: &str) -> Option<Cow<'a, str>> {
    let header = message
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))?;
    let bytes = message
        .raw_message()
        .get(header.offset_start() as usize..header.offset_end() as usize)?;
    Some(String::from_utf8_lossy(bytes))
}

/// The Message-ID of a parsed message (or header block), unfolded and
/// without angle brackets; the one definition both ticket messages and
/// oversize records use, so dedup by Message-ID agrees between them.
pub fn message_id(message: &Message<'_>) -> Option<String> {
    id_header(message, "Message-ID").into_iter().next()
}

/// Every message id in a header (first occurrence), from its raw value.
fn id_header(message: &Message<'_>, name: &str) -> Vec<String> {
    raw_header(message, name)
        .map(|raw| ids_in(&raw))
        .unwrap_or_default()
}

/// The ids in a Message-ID / In-Reply-To / References value. The raw value
/// is read rather than mail-parser's, which keeps the CRLF and whitespace
/// of a line folded inside `<...>`. A msg-id holds no whitespace (RFC 5322
/// 3.6.4), so a fold inside one was put there by the sender's mailer: the
/// line break goes together with the folding whitespace after it, which
/// restores the id as its author wrote it and as other messages cite it.
/// (Spaces not at a fold stay: malformed ids are kept as they came.)
/// Comments are skipped.
/// When the value has bracketed ids only those count (an old-style
/// In-Reply-To may carry a phrase around them); otherwise the bare tokens
/// that look like ids (with an `@`), else any bare token.
fn ids_in(raw: &str) -> Vec<String> {
    let mut bracketed = Vec::new();
    let mut bare = Vec::new();
    let mut token = String::new();
    let mut chars = raw.chars();
    let flush = |token: &mut String, bare: &mut Vec<String>| {
        if !token.is_empty() {
            bare.push(std::mem::take(token));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                flush(&mut token, &mut bare);
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next() {
                        None => break,
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                    }
                }
            }
            '<' => {
                flush(&mut token, &mut bare);
                let mut id = String::new();
                let mut folding = false;
                for c in chars.by_ref().take_while(|&c| c != '>') {
                    match c {
                        '\r' | '\n' => folding = true,
                        ' ' | '\t' if folding => {}
                        c => {
                            folding = false;
                            id.push(c);
                        }
                    }
                }
                let id = id.trim();
                if !id.is_empty() {
                    bracketed.push(id.to_string());
                }
            }
            c if c.is_whitespace() || c == ',' => flush(&mut token, &mut bare),
            c => token.push(c),
        }
    }
    flush(&mut token, &mut bare);
    if !bracketed.is_empty() {
        return bracketed;
    }
    let bare = bare
        .into_iter()
        .map(|t| t.trim_matches('>').to_string())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>();
    if bare.iter().any(|t| t.contains('@')) {
        bare.into_iter().filter(|t| t.contains('@')).collect()
    } else {
        bare
    }
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

fn attachments(message: &Message<'_>) -> Vec<AttachmentMeta> {
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
            AttachmentMeta {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                name: part.attachment_name().map(str::to_string),
                content_type,
                size: part.contents().len() as u64,
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
        reported_ids: reported_ids(message),
        reported_status: reported_status(message),
        is_report: message.root_part().content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        }),
    }
}

/// At most this many carried-back ids are kept (a report of a report...).
const MAX_REPORTED: usize = 8;

fn part_is(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype)
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// The Message-IDs of the messages a bounce or report returns.
fn reported_ids(message: &Message<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in message.parts.iter().skip(1) {
        let id = match &part.body {
            PartType::Message(inner) => inner.message_id().map(str::to_string),
            PartType::Text(text) if part_is(part, "text", "rfc822-headers") => {
                MessageParser::default()
                    .parse_headers(text.as_bytes())
                    .and_then(|h| h.message_id().map(str::to_string))
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes)
                if part_is(part, "text", "rfc822-headers") =>
            {
                MessageParser::default()
                    .parse_headers(bytes.as_ref())
                    .and_then(|h| h.message_id().map(str::to_string))
            }
            _ => None,
        };
        if let Some(id) = id.map(|i| i.trim().trim_matches(['<', '>']).to_string())
            && !id.is_empty()
            && !out.contains(&id)
        {
            out.push(id);
            if out.len() == MAX_REPORTED {
                break;
            }
        }
    }
    out
}

/// What the delivery-status part says went wrong, one line.
fn reported_status(message: &Message<'_>) -> Option<String> {
    let part = message
        .parts
        .iter()
        .find(|p| part_is(p, "message", "delivery-status"))?;
    let text = match &part.body {
        PartType::Text(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return None,
    };
    let field = |name: &str| {
        text.lines()
            .find(|l| {
                l.get(..name.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(name))
            })
            .and_then(|l| l.get(name.len()..))
            .map(|v| v.trim_start_matches(':').trim().to_string())
    };
    field("Diagnostic-Code")
        .or_else(|| field("Status"))
        .map(|s| s.chars().filter(|c| !c.is_control()).take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_report_names_the_message_it_returns() {
        let dsn = "From: MAILER-DAEMON@relay.test\r\nTo: support@example.test\r\nSubject: Undelivered Mail\r\nMessage-ID: <dsn1@relay.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nI could not deliver it.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.test\r\n\r\nFinal-Recipient: rfc822; ann@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <ann@customer.test>: User unknown\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.test\r\nTo: ann@customer.test\r\nMessage-ID: <mg.1.2.00112233445566778899aabbccddeeff@example.test>\r\nSubject: [MG#1000] Re: x\r\n--B--\r\n";
        let m = parse(dsn.as_bytes()).unwrap();
        assert_eq!(
            m.markers.reported_ids,
            vec!["mg.1.2.00112233445566778899aabbccddeeff@example.test".to_string()]
        );
        assert_eq!(
            m.markers.reported_status.as_deref(),
            Some("smtp; 550 5.1.1 <ann@customer.test>: User unknown")
        );
        let attached = dsn
            .replace(
                "Content-Type: text/rfc822-headers",
                "Content-Type: message/rfc822",
            )
            .replace(
                "Subject: [MG#1000] Re: x\r\n--B--",
                "Subject: [MG#1000] Re: x\r\n\r\nbody\r\n--B--",
            );
        let m = parse(attached.as_bytes()).unwrap();
        assert_eq!(m.markers.reported_ids.len(), 1);
        let plain = parse(b"From: a@b.test\r\nMessage-ID: <p@b>\r\n\r\nhello\r\n").unwrap();
        assert!(plain.markers.reported_ids.is_empty() && plain.markers.reported_status.is_none());
    }

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

    /// Ids folded anywhere (between ids, inside the brackets, unbracketed)
    /// come out without CR, LF or folding whitespace.
    #[test]
    fn folded_ids_are_unfolded() {
        let raw = b"From: a@b.test\r\nMessage-ID: <abc.\r\n 1234@exa\r\n\tmple.org>\r\nIn-Reply-To: <x1@a>\r\n (Ann's message)\r\nReferences: <r1@x>\r\n <r2@x><r3@\r\n x>,\r\n\t<r4\r\n @x>\r\n\r\nhi\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("abc.1234@example.org"));
        assert_eq!(m.in_reply_to, vec!["x1@a"]);
        assert_eq!(m.references, vec!["r1@x", "r2@x", "r3@x", "r4@x"]);

        let raw = b"From: a@b.test\r\nMessage-ID:\r\n abc@example.org\r\nIn-Reply-To: Your message of Monday <x1@a>\r\nReferences: r1@x\r\n r2@x\r\n\r\nhi\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("abc@example.org"));
        assert_eq!(m.in_reply_to, vec!["x1@a"]);
        assert_eq!(m.references, vec!["r1@x", "r2@x"]);

        let raw =
            b"From: a@b.test\r\nMessage-ID: < odd id@x >\r\nReferences: <a@\r\n b>\r\n\r\nhi\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("odd id@x"), "no fold, kept");
        assert_eq!(m.references, vec!["a@b"]);

        let m =
            parse(b"From: a@b.test\r\nMessage-ID: local-only\r\nReferences: (none)\r\n\r\nhi\r\n")
                .unwrap();
        assert_eq!(m.message_id.as_deref(), Some("local-only"));
        assert!(m.references.is_empty());
        for id in m.message_id.iter().chain(&m.references) {
            assert!(!id.contains(['\r', '\n', ' ', '\t']), "{id:?}");
        }
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
        assert_eq!(a.name.as_deref(), Some("x.pdf"));
        assert_eq!(a.content_type, "application/pdf");
        assert_eq!(attachment(raw, 0).as_deref(), Some(&b"%PDF-1.4\n"[..]));
        assert_eq!(attachment(raw, 1), None);
        assert_eq!(a.size, 9);
    }
}

/// Multi-byte and legacy charsets, in encoded words and in body parts: each
/// sample is encoded here with encoding_rs, the parse must give it back.
#[cfg(test)]
mod charset_tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    /// A Content-Transfer-Encoding applied to a body.
    type TransferFn = fn(&[u8]) -> Vec<u8>;

    /// (MIME charset label, encoding_rs encoding, sample text).
    fn samples() -> Vec<(&'static str, &'static encoding_rs::Encoding, &'static str)> {
        use encoding_rs::*;
        vec![
            ("ISO-2022-JP", ISO_2022_JP, "プリンターが壊れました"),
            ("Shift_JIS", SHIFT_JIS, "請求書の件について"),
            ("EUC-JP", EUC_JP, "会議の日程を変更します"),
            ("GB2312", GBK, "打印机坏了，请帮忙"),
            ("GBK", GBK, "发票问题需要处理"),
            ("GB18030", GB18030, "账户无法登录"),
            ("Big5", BIG5, "印表機壞了，請幫忙"),
            ("EUC-KR", EUC_KR, "프린터가 고장났습니다"),
            ("KOI8-R", KOI8_R, "Принтер сломался"),
            ("windows-1251", WINDOWS_1251, "Счёт за услуги"),
            ("windows-1252", WINDOWS_1252, "Café crème – “déjà vu” €5"),
        ]
    }

    fn encode(enc: &'static encoding_rs::Encoding, text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = enc.encode(text);
        assert!(!unmappable, "{} cannot encode {text:?}", enc.name());
        bytes.into_owned()
    }

    /// Quoted-printable for a body: every byte outside printable ASCII as =XX,
    /// soft line breaks under 76 characters.
    fn qp_body(bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut line = 0;
        for &b in bytes {
            let piece = if (b'!'..=b'~').contains(&b) && b != b'=' || b == b' ' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if line + piece.len() > 72 {
                out.push_str("=\r\n");
                line = 0;
            }
            line += piece.len();
            out.push_str(&piece);
        }
        out
    }

    /// RFC 2047 Q encoding: only letters and digits literal.
    fn q_word(charset: &str, bytes: &[u8]) -> String {
        let mut out = format!("=?{charset}?Q?");
        for &b in bytes {
            if b.is_ascii_alphanumeric() {
                out.push(b as char);
            } else {
                out.push_str(&format!("={b:02X}"));
            }
        }
        out.push_str("?=");
        out
    }

    fn b_word(charset: &str, bytes: &[u8]) -> String {
        format!("=?{charset}?B?{}?=", B64.encode(bytes))
    }

    fn message(from_name: &str, subject: &str, body_headers: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!(
            "From: {from_name} <sender@example.org>\r\nTo: support@example.test\r\nSubject: {subject}\r\nMessage-ID: <cs@example.org>\r\nMIME-Version: 1.0\r\n{body_headers}\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(body);
        raw.extend_from_slice(b"\r\n");
        raw
    }

    /// Encoded words split inside a character or an ISO-2022-JP shift
    /// state, and a charset label only Windows and Python know (cp932):
    /// mail-parser alone gives replacement characters for these.
    #[test]
    fn split_words_and_code_page_labels() {
        let utf8 = "プリンター".as_bytes();
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode("壊れました");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("請求書の件");
        let subject = format!(
            "{} {}\r\n {} {}",
            b_word("UTF-8", &utf8[..4]),
            b_word("UTF-8", &utf8[4..]),
            b_word("ISO-2022-JP", &jis[..7]),
            q_word("ISO-2022-JP", &jis[7..])
        );
        let from = format!("\"{}\"", b_word("cp932", &sjis));
        let raw = message(
            &from,
            &subject,
            "Content-Type: text/plain; charset=cp932\r\nContent-Transfer-Encoding: base64\r\n",
            B64.encode(&sjis).as_bytes(),
        );
        let m = parse(&raw).unwrap();
        assert_eq!(m.subject, "プリンター壊れました");
        assert_eq!(m.from.name.as_deref(), Some("請求書の件"));
        assert_eq!(m.text.trim_end(), "請求書の件");

        let html = encode(encoding_rs::SHIFT_JIS, "<p>請求書の件</p>");
        let raw = message(
            "Ann",
            "x",
            "Content-Type: text/html; charset=cp932\r\nContent-Transfer-Encoding: quoted-printable\r\n",
            qp_body(&html).as_bytes(),
        );
        let m = parse(&raw).unwrap();
        assert_eq!(
            m.html.as_deref().map(str::trim_end),
            Some("<p>請求書の件</p>")
        );
        assert_eq!(m.text.trim(), "請求書の件");
    }

    #[test]
    fn encoded_words_in_subject_and_display_name() {
        for (label, enc, text) in samples() {
            let bytes = encode(enc, text);
            for word in [b_word(label, &bytes), q_word(label, &bytes)] {
                let raw = message(
                    &word,
                    &format!("Re: {word}"),
                    "Content-Type: text/plain; charset=us-ascii\r\n",
                    b"hello",
                );
                let m = parse(&raw).unwrap();
                assert_eq!(m.subject, format!("Re: {text}"), "{label} subject {word}");
                assert_eq!(
                    m.from.name.as_deref(),
                    Some(text),
                    "{label} From name {word}"
                );
                assert_eq!(m.from.address, "sender@example.org");
            }
        }
    }

    #[test]
    fn text_and_html_bodies_in_every_transfer_encoding() {
        for (label, enc, text) in samples() {
            let plain = encode(enc, &format!("{text}\r\nZeile zwei"));
            let html = encode(enc, &format!("<p>{text}</p>"));
            let transfer: [(&str, TransferFn); 3] = [
                ("quoted-printable", |b| qp_body(b).into_bytes()),
                ("base64", |b| B64.encode(b).into_bytes()),
                ("8bit", |b| b.to_vec()),
            ];
            for (cte, encode_body) in transfer {
                let raw = message(
                    "Ann",
                    "charset test",
                    &format!(
                        "Content-Type: text/plain; charset=\"{label}\"\r\nContent-Transfer-Encoding: {cte}\r\n"
                    ),
                    &encode_body(&plain),
                );
                let m = parse(&raw).unwrap();
                assert_eq!(
                    m.text.trim_end(),
                    format!("{text}\r\nZeile zwei"),
                    "{label} text/plain {cte}"
                );

                let mut alt = format!(
                    "--sep\r\nContent-Type: text/plain; charset={label}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
                )
                .into_bytes();
                alt.extend(encode_body(&plain));
                alt.extend(
                    format!("\r\n--sep\r\nContent-Type: text/html; charset={label}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n")
                        .into_bytes(),
                );
                alt.extend(encode_body(&html));
                alt.extend(b"\r\n--sep--\r\n");
                let raw = message(
                    "Ann",
                    "charset test",
                    "Content-Type: multipart/alternative; boundary=\"sep\"\r\n",
                    &alt,
                );
                let m = parse(&raw).unwrap();
                assert!(
                    m.text.starts_with(text),
                    "{label} alternative text {cte}: {:?}",
                    m.text
                );
                assert_eq!(
                    m.html.as_deref().map(str::trim_end),
                    Some(format!("<p>{text}</p>").as_str()),
                    "{label} text/html {cte}"
                );
            }
        }
    }
}
