//! `[outbound]`: the send limits every mailbox is held to (each mailbox has
//! its own budget of these sizes), and how long a message is retried.
//! Defaults are what Microsoft 365 and Google document for one mailbox,
//! rounded down; 0 turns a limit off.

use std::time::Duration;

use serde::Deserialize;

use super::{Quantity, duration};

#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Per mailbox; 0 is no limit.
    pub messages_per_minute: u64,
    pub bytes_per_5_minutes: u64,
    pub recipients_per_day: u64,
    /// Give up on a message still not sent after this long.
    pub max_age: Duration,
    /// First retry delay after a temporary failure (doubled each time, at
    /// most an hour).
    pub retry_initial: Duration,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawOutbound {
    messages_per_minute: i64,
    bytes_per_5_minutes: Quantity,
    recipients_per_day: i64,
    max_age: Quantity,
    retry_initial: Quantity,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            messages_per_minute: 10,
            bytes_per_5_minutes: Quantity::Text("50MB".into()),
            recipients_per_day: 10_000,
            max_age: Quantity::Text("5d".into()),
            retry_initial: Quantity::Text("1m".into()),
        }
    }
}

fn count(key: &str, value: i64, err: &mut impl FnMut(&str, String)) -> u64 {
    u64::try_from(value).unwrap_or_else(|_| {
        err(key, format!("must be 0 (no limit) or more, not {value}"));
        0
    })
}

pub(super) fn validate(raw: &RawOutbound, err: &mut impl FnMut(&str, String)) -> OutboundConfig {
    let bytes = match &raw.bytes_per_5_minutes {
        Quantity::Number(0) => 0,
        q => super::size("outbound.bytes_per_5_minutes", q, err) as u64,
    };
    OutboundConfig {
        messages_per_minute: count("outbound.messages_per_minute", raw.messages_per_minute, err),
        bytes_per_5_minutes: bytes,
        recipients_per_day: count("outbound.recipients_per_day", raw.recipients_per_day, err),
        max_age: duration("outbound.max_age", &raw.max_age, err),
        retry_initial: duration("outbound.retry_initial", &raw.retry_initial, err),
    }
}

/// A mailbox's own send limits (`[mailbox.send_limits]`); a key left out
/// takes the `[outbound]` value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxLimits {
    pub messages_per_minute: Option<u64>,
    pub bytes_per_5_minutes: Option<u64>,
    pub recipients_per_day: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMailboxLimits {
    messages_per_minute: Option<i64>,
    bytes_per_5_minutes: Option<Quantity>,
    recipients_per_day: Option<i64>,
}

pub(super) fn validate_mailbox(
    key: &str,
    raw: &RawMailboxLimits,
    err: &mut impl FnMut(&str, String),
) -> MailboxLimits {
    MailboxLimits {
        messages_per_minute: raw
            .messages_per_minute
            .map(|v| count(&format!("{key}.messages_per_minute"), v, err)),
        bytes_per_5_minutes: raw.bytes_per_5_minutes.as_ref().map(|q| match q {
            Quantity::Number(0) => 0,
            q => super::size(&format!("{key}.bytes_per_5_minutes"), q, err) as u64,
        }),
        recipients_per_day: raw
            .recipients_per_day
            .map(|v| count(&format!("{key}.recipients_per_day"), v, err)),
    }
}
