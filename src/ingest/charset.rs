//! Charset decoding where mail-parser (with `full_encoding`) still falls
//! short of what mail clients and Python's email package read:
//!
//! - adjacent RFC 2047 encoded words in one charset are one byte stream
//!   (RFC 2047 forbids splitting a character between words, but mailers do,
//!   and ISO-2022-JP senders split a shift state across them); mail-parser
//!   decodes each word alone and gets replacement characters;
//! - charset labels missing from mail-parser's table but used in mail, such
//!   as the Windows code-page names `cp932` or `cp949` and the WHATWG labels
//!   of encoding_rs.
//!
//! [`better`] keeps mail-parser's reading unless ours has fewer undecoded
//! characters, so ordinary mail reads exactly as before.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use encoding_rs::Encoding;
use mail_parser::decoders::charsets::map::charset_decoder;

/// Lenient base64 for encoded words: padding optional, as senders vary.
const WORD_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Code-page names seen in mail that neither mail-parser nor the WHATWG
/// label list (encoding_rs) knows, with the encoding they mean.
fn code_page(label: &str) -> Option<&'static Encoding> {
    use encoding_rs::*;
    Some(match label {
        "cp932" | "windows-932" | "x-ms-cp932" | "ibm-943" => SHIFT_JIS,
        "cp949" | "uhc" | "x-windows-949" | "ks_c_5601" => EUC_KR,
        "euc-cn" | "euccn" | "x-euc-cn" | "cp20936" => GBK,
        "cp54936" => GB18030,
        "cp950" | "x-windows-950" | "big5hkscs" => BIG5,
        "cp20932" | "cp51932" | "eucjp" => EUC_JP,
        "cp50220" | "cp50221" | "cp50222" => ISO_2022_JP,
        "cp20866" => KOI8_R,
        "cp21866" => KOI8_U,
        "cp874" => WINDOWS_874,
        _ => return None,
    })
}

/// Whether mail-parser has a decoder of its own for this label.
pub fn known_to_mail_parser(label: &str) -> bool {
    charset_decoder(label.as_bytes()).is_some()
}

/// Decodes bytes in a MIME charset: mail-parser's table first (it also
/// knows UTF-7 and UTF-16), then encoding_rs's labels, then code-page names.
/// None when nobody knows the label.
pub fn decode(label: &str, bytes: &[u8]) -> Option<String> {
    let label = label.trim().trim_matches('"');
    if let Some(decoder) = charset_decoder(label.as_bytes()) {
        return Some(decoder(bytes));
    }
    let lower = label.to_ascii_lowercase();
    let encoding = Encoding::for_label(lower.as_bytes()).or_else(|| code_page(&lower))?;
    Some(encoding.decode_without_bom_handling(bytes).0.into_owned())
}

/// Characters that show a failed decode: U+FFFD and ESC (an ISO-2022
/// escape sequence read as ASCII).
fn undecoded(text: &str) -> usize {
    text.chars()
        .filter(|&c| c == '\u{FFFD}' || c == '\u{1b}')
        .count()
}

/// Ours if it decoded more than mail-parser did, else mail-parser's.
pub fn better(parsed: String, ours: Option<String>) -> String {
    match ours {
        Some(ours) if undecoded(&ours) < undecoded(&parsed) => ours,
        _ => parsed,
    }
}

/// One piece of a header value: literal text or an encoded word's bytes.
enum Piece<'a> {
    Text(&'a str),
    Word { charset: &'a str, bytes: Vec<u8> },
}

/// Decodes the RFC 2047 encoded words of an unstructured header value
/// (unfolded and trimmed), joining adjacent words of one charset before decoding them,
/// as Python's email package does. Whitespace between two encoded words is
/// dropped (RFC 2047 6.2). None when a word's charset is unknown.
pub fn decode_words(raw: &str) -> Option<String> {
    let unfolded = raw.replace("\r\n", "").replace('\n', "");
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    let mut rest = unfolded.trim();
    while !rest.is_empty() {
        match rest
            .find("=?")
            .and_then(|at| word_at(&rest[at..]).map(|w| (at, w)))
        {
            Some((at, (charset, bytes, len))) => {
                let before = &rest[..at];
                let between_words = matches!(pieces.last(), Some(Piece::Word { .. }))
                    && before.chars().all(|c| c == ' ' || c == '\t');
                if !before.is_empty() && !between_words {
                    pieces.push(Piece::Text(before));
                }
                match pieces.last_mut() {
                    Some(Piece::Word {
                        charset: c,
                        bytes: b,
                    }) if c.eq_ignore_ascii_case(charset) => b.extend_from_slice(&bytes),
                    _ => pieces.push(Piece::Word { charset, bytes }),
                }
                rest = &rest[at + len..];
            }
            None => {
                // "=?" that starts no word: keep it as text and go on after it.
                let cut = rest.find("=?").map_or(rest.len(), |at| at + 2);
                pieces.push(Piece::Text(&rest[..cut]));
                rest = &rest[cut..];
            }
        }
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Word { charset, bytes } => out.push_str(&decode(charset, &bytes)?),
        }
    }
    Some(out)
}

/// The encoded word at the start of `s` (`=?charset[*lang]?B|Q?text?=`):
/// its charset, decoded bytes and length in `s`.
fn word_at(s: &str) -> Option<(&str, Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, after) = body.split_once('?')?;
    let (encoding, after) = after.split_once('?')?;
    let end = after.find("?=")?;
    let text = &after[..end];
    if charset.is_empty() || charset.contains(char::is_whitespace) || text.contains(' ') {
        return None;
    }
    let charset = charset.split('*').next().unwrap_or(charset);
    let bytes = match encoding {
        "B" | "b" => WORD_B64.decode(text).ok()?,
        "Q" | "q" => q_decode(text)?,
        _ => return None,
    };
    let len = 2 + body.len() - after.len() + end + 2;
    Some((charset, bytes, len))
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

/// The display name of a From value with one address (`phrase <addr>`),
/// decoded; None for other shapes, which mail-parser's reading covers.
pub fn display_name(raw: &str) -> Option<String> {
    let (phrase, addr) = raw.rsplit_once('<')?;
    if phrase.contains('<') || phrase.contains(',') || !addr.contains('>') {
        return None;
    }
    let phrase = phrase.trim();
    let phrase = phrase
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or(phrase);
    let name = decode_words(phrase)?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(charset: &str, bytes: &[u8]) -> String {
        format!(
            "=?{charset}?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn labels_beyond_mail_parsers_table() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("請求書");
        assert!(!known_to_mail_parser("cp932"));
        assert_eq!(decode("cp932", &sjis).as_deref(), Some("請求書"));
        let (kr, _, _) = encoding_rs::EUC_KR.encode("안녕하세요");
        assert_eq!(decode("CP949", &kr).as_deref(), Some("안녕하세요"));
        let (gb, _, _) = encoding_rs::GBK.encode("打印机");
        assert_eq!(decode("EUC-CN", &gb).as_deref(), Some("打印机"));
        assert_eq!(decode("utf-7", b"+ZYeB9FH6-").as_deref(), Some("文致出"));
        assert_eq!(decode("x-no-such-charset", b"abc"), None);
    }

    #[test]
    fn adjacent_words_are_one_stream() {
        let utf8 = "プリンター".as_bytes();
        // A character split between two words.
        let split = format!("Re: {} {}", b("UTF-8", &utf8[..4]), b("utf-8", &utf8[4..]));
        assert_eq!(decode_words(&split).as_deref(), Some("Re: プリンター"));
        // An ISO-2022-JP shift state running over into the next word.
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode("壊れました");
        let cut = 3 + 4; // ESC $ B and two characters
        let split = format!(
            "{}\r\n {} ok",
            b("ISO-2022-JP", &jis[..cut]),
            b("ISO-2022-JP", &jis[cut..])
        );
        assert_eq!(decode_words(&split).as_deref(), Some("壊れました ok"));
        // Different charsets stay apart; text between words stays.
        let mixed = format!(
            "{} and {}",
            b("utf-8", "é".as_bytes()),
            b("iso-8859-1", b"\xe9")
        );
        assert_eq!(decode_words(&mixed).as_deref(), Some("é and é"));
        assert_eq!(
            decode_words("=?broken and =?us-ascii?Q?a_b?=").as_deref(),
            Some("=?broken and a b")
        );
    }

    #[test]
    fn better_only_when_fewer_undecoded() {
        assert_eq!(better("a\u{FFFD}".into(), Some("ab".into())), "ab");
        assert_eq!(better("same".into(), Some("other".into())), "same");
        assert_eq!(better("\u{1b}$B".into(), None), "\u{1b}$B");
    }

    #[test]
    fn display_names() {
        let raw = format!("{} <a@b.test>", b("utf-8", "Renée".as_bytes()));
        assert_eq!(display_name(&raw).as_deref(), Some("Renée"));
        assert_eq!(
            display_name("\"Ann Example\" <a@b.test>").as_deref(),
            Some("Ann Example")
        );
        assert_eq!(display_name("a@b.test"), None);
        assert_eq!(display_name("A <a@b.test>, B <b@b.test>"), None);
    }
}
