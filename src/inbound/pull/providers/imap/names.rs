//! Pure helpers of the IMAP client: message keys, UID sets, mailbox names
//! (hierarchy separator mapping, modified UTF-7, quoting), keywords. No I/O here.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};

/// UIDs per `UID FETCH` when asking for sizes: keeps command lines and
/// responses small however many messages are new.
pub const SIZE_CHUNK: usize = 500;

/// Longest server text kept in an error message.
const TEXT_MAX: usize = 300;

/// `imap:<UIDVALIDITY>:<UID>`, the upstream identity of a message.
pub fn message_key(uidvalidity: u32, uid: u32) -> String {
    format!("imap:{uidvalidity}:{uid}")
}

/// The (UIDVALIDITY, UID) of a key made by [`message_key`].
pub fn parse_key(key: &str) -> Option<(u32, u32)> {
    let rest = key.strip_prefix("imap:")?;
    let (validity, uid) = rest.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(validity) || !digits(uid) {
        return None;
    }
    let uid: u32 = uid.parse().ok()?;
    if uid == 0 {
        return None;
    }
    Some((validity.parse().ok()?, uid))
}

/// A compact IMAP sequence set (`1:3,7,9:10`) of UIDs sorted ascending
/// without duplicates. Empty input gives an empty string.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) && uids[i + 1] > end {
            end = uids[i + 1];
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// UID sets of at most `chunk` UIDs each, in order.
pub fn uid_set_chunks(uids: &[u32], chunk: usize) -> Vec<String> {
    uids.chunks(chunk.max(1)).map(uid_set).collect()
}

/// The configured folder name with both '.' and '/' replaced by the
/// server's hierarchy delimiter (unchanged when the server has none).
pub fn map_separators(name: &str, delimiter: Option<char>) -> String {
    match delimiter {
        Some(d) => name
            .chars()
            .map(|c| if c == '.' || c == '/' { d } else { c })
            .collect(),
        None => name.to_string(),
    }
}

/// Whether two mailbox names (as sent on the wire) name the same mailbox:
/// equal, with `INBOX` (and only it) compared without case.
pub fn same_mailbox(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    fn split_inbox(s: &str) -> Option<&str> {
        let head = s.get(..5)?;
        if head.eq_ignore_ascii_case("INBOX") {
            Some(&s[5..])
        } else {
            None
        }
    }
    match (split_inbox(a), split_inbox(b)) {
        (Some(ra), Some(rb)) => {
            ra == rb && (ra.is_empty() || !ra.starts_with(char::is_alphanumeric))
        }
        _ => false,
    }
}

const MUTF7: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::IMAP_MUTF7, NO_PAD);

/// A mailbox name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3).
pub fn mutf7_encode(name: &str) -> String {
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&MUTF7.encode(bytes));
        out.push('-');
        pending.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// An IMAP quoted string, or `None` if the text cannot be one (not
/// printable ASCII: run mailbox names through [`mutf7_encode`] first).
pub fn quoted(text: &str) -> Option<String> {
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    Some(quote(text))
}

/// `text` in double quotes with backslash and quote escaped; the caller
/// has checked that it holds nothing a quoted string may not.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Server text made safe for errors and logs: control characters
/// replaced, length capped.
pub fn clean_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(TEXT_MAX)
        .collect();
    if text.chars().count() > TEXT_MAX {
        out.push('…');
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        "(no text)".to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(message_key(1_700_000_000, 42), "imap:1700000000:42");
        assert_eq!(parse_key("imap:1700000000:42"), Some((1_700_000_000, 42)));
        assert_eq!(
            parse_key(&message_key(u32::MAX, u32::MAX)),
            Some((u32::MAX, u32::MAX))
        );
        for bad in [
            "pop3:abc",
            "imap:1",
            "imap::2",
            "imap:1:",
            "imap:1:0",
            "imap:-1:2",
            "imap:1:+2",
            "imap:1:2:3",
            "imap:4294967296:1",
            "IMAP:1:2",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[1, 2, 3]), "1:3");
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[4, 6, 8]), "4,6,8");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn uid_sets_are_chunked() {
        let uids: Vec<u32> = (1..=1201).collect();
        let chunks = uid_set_chunks(&uids, SIZE_CHUNK);
        assert_eq!(chunks, vec!["1:500", "501:1000", "1001:1201"]);
        let sparse: Vec<u32> = (1..=7).map(|n| n * 2).collect();
        assert_eq!(uid_set_chunks(&sparse, 3), vec!["2,4,6", "8,10,12", "14"]);
        assert!(uid_set_chunks(&[], SIZE_CHUNK).is_empty());
        assert_eq!(uid_set_chunks(&[1, 2], 0), vec!["1", "2"]);
    }

    #[test]
    fn separators_map_to_the_server_delimiter() {
        assert_eq!(map_separators("INBOX.support", Some('/')), "INBOX/support");
        assert_eq!(map_separators("INBOX/support", Some('.')), "INBOX.support");
        assert_eq!(map_separators("INBOX/a.b", Some('.')), "INBOX.a.b");
        assert_eq!(map_separators("INBOX/support", Some('/')), "INBOX/support");
        assert_eq!(map_separators("INBOX.support", None), "INBOX.support");
        assert_eq!(map_separators("Archive", Some('.')), "Archive");
    }

    #[test]
    fn inbox_compares_without_case() {
        assert!(same_mailbox("INBOX", "inbox"));
        assert!(same_mailbox("INBOX.support", "Inbox.support"));
        assert!(same_mailbox("INBOX/x", "INBOX/x"));
        assert!(!same_mailbox("INBOX.support", "INBOX.Support"));
        assert!(!same_mailbox("inboxes", "INBOXES"));
        assert!(!same_mailbox("Archive", "archive"));
    }

    #[test]
    fn modified_utf7() {
        assert_eq!(mutf7_encode("INBOX.support"), "INBOX.support");
        assert_eq!(mutf7_encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mutf7_encode("a&b"), "a&-b");
        // RFC 3501 section 5.1.3 example.
        assert_eq!(
            mutf7_encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mutf7_encode("😀"), "&2D3eAA-");
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("INBOX").as_deref(), Some("\"INBOX\""));
        assert_eq!(quoted("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quoted("a\r\nb"), None);
        assert_eq!(quoted("ü"), None);
        assert_eq!(quoted("").as_deref(), Some("\"\""));
    }
}
