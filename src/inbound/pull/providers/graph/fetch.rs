//! Downloading a message: its MIME (`GET /messages/{id}/$value`), or, for
//! one over the size cap, only a header block.
//!
//! Graph has no header-only MIME download. The header block of an
//! oversize message is rebuilt from `internetMessageHeaders` (`$select`ed:
//! Graph returns them only when asked), one `Name: value` line each, in
//! the order Graph gives them, CR and LF in values replaced by spaces.
//! Mail that never crossed the internet (sent inside the organisation) may
//! have none: then `From`, `To`, `Subject`, `Message-ID` and `Date` are
//! made from the message's properties, so the rejection record still says
//! who sent what.
//!
//! The MIME size can exceed the listed size (Exchange stores attachments
//! decoded, MIME carries them in base64, a third larger): the download is
//! capped at 1.5 x the limit + 1 MiB, so such a message still arrives whole
//! and the engine records it as oversize from its real length, while
//! memory stays bounded.

use http::Method;
use serde::Deserialize;

use super::client::{Body, GraphClient, segment};
use crate::inbound::pull::upstream::FetchError;

/// Header blocks are cut at this size.
const HEAD_MAX: usize = 64 * 1024;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Headers {
    internet_message_headers: Vec<Header>,
    subject: Option<String>,
    from: Option<Recipient>,
    to_recipients: Vec<Recipient>,
    internet_message_id: Option<String>,
    received_date_time: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: Address,
}

#[derive(Deserialize)]
struct Address {
    name: Option<String>,
    address: Option<String>,
}

impl Recipient {
    fn text(&self) -> String {
        let a = self.email_address.address.clone().unwrap_or_default();
        match &self.email_address.name {
            Some(n) if !n.is_empty() && n != &a => format!("\"{}\" <{a}>", n.replace('"', "'")),
            _ => format!("<{a}>"),
        }
    }
}

/// The download cap for a message's MIME given the size limit.
pub(super) fn mime_cap(max_message_size: u64) -> usize {
    let limit = usize::try_from(max_message_size).unwrap_or(usize::MAX / 2);
    limit.saturating_add(limit / 2).saturating_add(1 << 20)
}

impl GraphClient {
    /// The message's MIME, byte for byte.
    pub(super) async fn mime(
        &self,
        id: &str,
        max_message_size: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let url = self.url(&format!("/messages/{}/$value", segment(id)));
        let response = self
            .call_ok(Method::GET, &url, Body::None, mime_cap(max_message_size))
            .await?;
        Ok(response.body.to_vec())
    }

    /// A header block (ending in an empty line) for a message not downloaded.
    pub(super) async fn header_block(&self, id: &str) -> Result<Vec<u8>, FetchError> {
        let url = self.url(&format!(
            "/messages/{}?$select=internetMessageHeaders,subject,from,toRecipients,internetMessageId,receivedDateTime",
            segment(id)
        ));
        let h: Headers = self.get_json(&url).await?;
        Ok(build_block(&h))
    }
}

fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn build_block(h: &Headers) -> Vec<u8> {
    let mut lines: Vec<(String, String)> = h
        .internet_message_headers
        .iter()
        .filter(|x| !x.name.is_empty() && x.name.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        .map(|x| (x.name.clone(), clean(&x.value)))
        .collect();
    if lines.is_empty() {
        if let Some(f) = &h.from {
            lines.push(("From".into(), clean(&f.text())));
        }
        if !h.to_recipients.is_empty() {
            let to: Vec<String> = h.to_recipients.iter().map(Recipient::text).collect();
            lines.push(("To".into(), clean(&to.join(", "))));
        }
        if let Some(s) = &h.subject {
            lines.push(("Subject".into(), clean(s)));
        }
        if let Some(m) = &h.internet_message_id {
            lines.push(("Message-ID".into(), clean(m)));
        }
        if let Some(d) = h.received_date_time.as_deref().and_then(rfc2822) {
            lines.push(("Date".into(), d));
        }
    }
    let mut out = Vec::new();
    for (name, value) in lines {
        let line = format!("{name}: {value}\r\n");
        if out.len() + line.len() + 2 > HEAD_MAX {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `2024-05-01T10:00:00Z` as an RFC 5322 date.
fn rfc2822(iso: &str) -> Option<String> {
    let t =
        time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339).ok()?;
    t.format(&time::format_description::well_known::Rfc2822)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_from_internet_headers_or_properties() {
        let h: Headers = serde_json::from_str(
            r#"{"internetMessageHeaders":[{"name":"From","value":"a@x.test"},{"name":"Subject","value":"evil\r\nBcc: b@x.test"},{"name":"Bad Name","value":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            build_block(&h),
            b"From: a@x.test\r\nSubject: evil  Bcc: b@x.test\r\n\r\n".to_vec()
        );
        let h: Headers = serde_json::from_str(
            r#"{"internetMessageHeaders":[],"subject":"big","from":{"emailAddress":{"name":"Ann","address":"ann@x.test"}},"toRecipients":[{"emailAddress":{"address":"s@y.test"}}],"internetMessageId":"<1@x>","receivedDateTime":"2024-05-01T10:00:00Z"}"#,
        )
        .unwrap();
        let block = String::from_utf8(build_block(&h)).unwrap();
        assert_eq!(
            block,
            "From: \"Ann\" <ann@x.test>\r\nTo: <s@y.test>\r\nSubject: big\r\nMessage-ID: <1@x>\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n\r\n"
        );
    }
}
