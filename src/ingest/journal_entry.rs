//! A message as the commit journal keeps it: what [`super::Inbound`] holds,
//! so that after a crash ingest can make the same request again.
//!
//! Format: version byte, length of the JSON metadata (u32 LE), the JSON,
//! then the raw message.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Inbound;
use crate::mail::{EnvelopeInfo, Origin};

const VERSION: u8 = 1;

/// Messages larger than this are committed durably, not journaled.
pub const MAX_JOURNALED: usize = 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Meta {
    source: String,
    envelope: EnvelopeInfo,
    received_at: String,
    return_path: Option<String>,
    mailboxes: Vec<String>,
    upstream_key: Option<String>,
}

/// The entry for `inbound`, or None when it is too large to journal.
pub fn encode(inbound: &Inbound) -> Option<Bytes> {
    if inbound.raw.len() > MAX_JOURNALED {
        return None;
    }
    let meta = serde_json::to_vec(&Meta {
        source: inbound.origin.source.clone(),
        envelope: inbound.origin.envelope.clone(),
        received_at: inbound.origin.received_at.clone(),
        return_path: inbound.return_path.clone(),
        mailboxes: inbound.mailboxes.clone(),
        upstream_key: inbound.upstream_key.clone(),
    })
    .ok()?;
    let mut out = Vec::with_capacity(5 + meta.len() + inbound.raw.len());
    out.push(VERSION);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&inbound.raw);
    Some(out.into())
}

/// Why a journal entry could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("unknown journal entry version {0}")]
    Version(u8),
    #[error("journal entry is truncated")]
    Truncated,
    #[error("journal entry metadata: {0}")]
    Meta(#[from] serde_json::Error),
}

pub fn decode(entry: &Bytes) -> Result<Inbound, EntryError> {
    let (&version, rest) = entry.split_first().ok_or(EntryError::Truncated)?;
    if version != VERSION {
        return Err(EntryError::Version(version));
    }
    let len = rest
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or(EntryError::Truncated)?;
    let meta = rest.get(4..4 + len).ok_or(EntryError::Truncated)?;
    let meta: Meta = serde_json::from_slice(meta)?;
    Ok(Inbound {
        origin: Origin {
            source: meta.source,
            envelope: meta.envelope,
            received_at: meta.received_at,
        },
        raw: entry.slice(1 + 4 + len..),
        return_path: meta.return_path,
        mailboxes: meta.mailboxes,
        upstream_key: meta.upstream_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(raw: &'static [u8]) -> Inbound {
        Inbound {
            origin: Origin {
                source: "imap".into(),
                envelope: EnvelopeInfo {
                    mail_from: "a@x.test".into(),
                    rcpt_to: vec!["s@y.test".into(), "t@y.test".into()],
                    client: "127.0.0.1".into(),
                    helo: "x".into(),
                },
                received_at: "2026-12-04T01:00:00Z".into(),
            },
            raw: Bytes::from_static(raw),
            return_path: Some(String::new()),
            mailboxes: vec!["support".into(), "sales".into()],
            upstream_key: Some("imap:7:42".into()),
        }
    }

    #[test]
    fn an_entry_reads_back_as_the_same_inbound() {
        let original = inbound(b"Subject: hi\r\n\r\nbody\r\n");
        let back = decode(&encode(&original).unwrap()).unwrap();
        assert_eq!(back.origin.source, original.origin.source);
        assert_eq!(back.origin.envelope, original.origin.envelope);
        assert_eq!(back.origin.received_at, original.origin.received_at);
        assert_eq!(back.raw, original.raw);
        assert_eq!(back.return_path, original.return_path);
        assert_eq!(back.mailboxes, original.mailboxes);
        assert_eq!(back.upstream_key, original.upstream_key);
    }

    #[test]
    fn large_mail_is_not_journaled_and_bad_entries_are_errors() {
        let big = Inbound {
            raw: Bytes::from(vec![b'x'; MAX_JOURNALED + 1]),
            ..inbound(b"")
        };
        assert!(encode(&big).is_none());
        let good = encode(&inbound(b"x")).unwrap();
        assert!(matches!(
            decode(&Bytes::from_static(&[9, 0])),
            Err(EntryError::Version(9))
        ));
        assert!(matches!(
            decode(&good.slice(..good.len() - 3)),
            Err(EntryError::Truncated | EntryError::Meta(_))
        ));
        assert!(matches!(decode(&Bytes::new()), Err(EntryError::Truncated)));
    }
}
