//! Downloading a message: `format=raw` gives the RFC 5322 bytes as
//! base64url (decoded here, with or without padding; anything else is a
//! protocol error naming the message). For oversize messages only
//! `format=metadata`: Gmail then sends the headers parsed into
//! `payload.headers` (`[{name, value}]`), not the header block itself, so
//! the block is rebuilt, one `Name: value` line per header in Gmail's
//! order, CRLF ends, a blank line after. It is not byte-exact (folding is
//! gone, a CR or LF inside a value becomes a space) but has every header
//! the rejection record and the notice need; the body is never fetched.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::GmailUpstream;
use super::api::{JSON_MAX, segment};
use crate::inbound::pull::upstream::{FetchError, UpstreamMessage};

/// Bytes allowed on top of `max_message_size` for one download.
const SIZE_SLACK: u64 = 64 * 1024;
/// A rebuilt header block never exceeds this.
const HEADER_MAX: usize = 64 * 1024;

/// Gmail's base64url, padded or not.
pub const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Deserialize)]
struct Raw {
    raw: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    headers: Vec<Header>,
}

#[derive(Deserialize)]
pub(super) struct Header {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// The Gmail id in a `gmail:<id>` key.
pub(super) fn gmail_id(message: &UpstreamMessage) -> Result<&str, FetchError> {
    message
        .key
        .strip_prefix("gmail:")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| FetchError::Protocol(format!("{} is not a Gmail message key", message.key)))
}

/// The `raw` field decoded, or why it cannot be.
pub(super) fn decode_raw(id: &str, raw: Option<&str>) -> Result<Vec<u8>, FetchError> {
    let raw = raw.ok_or_else(|| {
        FetchError::Protocol(format!(
            "Gmail message {id}: format=raw answer has no raw field"
        ))
    })?;
    let bytes = BASE64URL.decode(raw.trim()).map_err(|e| {
        FetchError::Protocol(format!(
            "Gmail message {id}: raw is not valid base64url: {e}"
        ))
    })?;
    if bytes.is_empty() {
        return Err(FetchError::Protocol(format!(
            "Gmail message {id}: raw is empty"
        )));
    }
    Ok(bytes)
}

/// A header block from parsed headers (see the module comment).
pub(super) fn header_block(headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers {
        let name: String = h
            .name
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ':')
            .collect();
        if name.is_empty() {
            continue;
        }
        let value: String = h
            .value
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        let line = format!("{name}: {}\r\n", value.trim());
        if out.len() + line.len() + 2 > HEADER_MAX {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

impl GmailUpstream {
    pub(super) async fn download(
        &mut self,
        message: &UpstreamMessage,
    ) -> Result<Vec<u8>, FetchError> {
        let id = gmail_id(message)?;
        let limit = self.max_message_size.saturating_add(SIZE_SLACK);
        // base64 grows by 4/3, plus the JSON around it.
        let body_max = usize::try_from(limit / 3 * 4 + 8192).unwrap_or(usize::MAX);
        let raw: Raw = self
            .api
            .get(
                &format!("messages/{}", segment(id)),
                &[("format", "raw")],
                body_max,
            )
            .await?;
        decode_raw(id, raw.raw.as_deref())
    }

    pub(super) async fn headers(
        &mut self,
        message: &UpstreamMessage,
    ) -> Result<Vec<u8>, FetchError> {
        let id = gmail_id(message)?;
        let meta: Metadata = self
            .api
            .get(
                &format!("messages/{}", segment(id)),
                &[("format", "metadata")],
                JSON_MAX,
            )
            .await?;
        let headers = meta.payload.map(|p| p.headers).unwrap_or_default();
        Ok(header_block(&headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_base64url_with_or_without_padding() {
        let msg = b"Subject: \xff?>\r\n\r\nhi\r\n";
        let padded = base64::engine::general_purpose::URL_SAFE.encode(msg);
        let bare = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(msg);
        assert_eq!(decode_raw("a", Some(&padded)).unwrap(), msg);
        assert_eq!(decode_raw("a", Some(&bare)).unwrap(), msg);
        // Standard base64 ('+', '/') is not base64url.
        let std = base64::engine::general_purpose::STANDARD.encode(b"\xfb\xff\xfe");
        let err = decode_raw("m1", Some(&std)).unwrap_err();
        assert!(
            err.to_string().contains("m1: raw is not valid base64url"),
            "{err}"
        );
        assert!(decode_raw("m1", None).is_err());
        assert!(decode_raw("m1", Some("")).is_err());
    }

    #[test]
    fn header_block_is_rebuilt_without_injected_lines() {
        let h = |n: &str, v: &str| Header {
            name: n.into(),
            value: v.into(),
        };
        let block = header_block(&[
            h("Subject", "big\r\nBcc: x@evil.test"),
            h("From", "a@x.test"),
            h("", "nameless"),
        ]);
        assert_eq!(
            block,
            b"Subject: big  Bcc: x@evil.test\r\nFrom: a@x.test\r\n\r\n".to_vec()
        );
    }
}
