//! The [`Upstream`] of a POP3 mailbox: UIDL + LIST to list, RETR (capped)
//! and `TOP n 0` to download, DELE to delete (final only at QUIT).

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::Pop3Settings;
use super::conn::{Conn, Io, protocol, refused};
use super::login::connect_and_login;
use crate::inbound::pull::upstream::{FetchError, Probe, Upstream, UpstreamMessage, Verdict};
use crate::mail::AfterImport;
use crate::proto::pop3::{self as proto, Expect, Overflow, Response, ResponseParser};

/// RETR may return this much more than `max_message_size` (headers the
/// server adds, line-end differences) before it is refused.
pub const FETCH_SLACK: u64 = 64 * 1024;
/// Cap of a UIDL or LIST body (about a million messages).
const LISTING_MAX: usize = 64 * 1024 * 1024;
/// `TOP n 0` keeps at most this much of the header block.
pub const HEADERS_MAX: usize = 256 * 1024;

/// An open, authenticated POP3 session (TRANSACTION state).
pub struct Pop3Upstream {
    conn: Conn<Box<dyn Io>>,
    user: String,
    after: AfterImport,
    command_timeout: Duration,
    /// Largest RETR body accepted.
    fetch_limit: usize,
    /// CAPA after login; empty if the server has no CAPA.
    capabilities: Vec<String>,
    /// From this session's last UIDL + LIST: key -> (message number, size).
    listed: HashMap<String, (u32, u64)>,
}

impl std::fmt::Debug for Pop3Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Upstream")
            .field("user", &self.user)
            .field("after", &self.after)
            .field("listed", &self.listed.len())
            .field("broken", &self.conn.broken)
            .finish_non_exhaustive()
    }
}

/// POP3 can only delete or keep.
fn check_after(after: &AfterImport) -> Result<(), FetchError> {
    match after {
        AfterImport::Delete | AfterImport::Keep => Ok(()),
        AfterImport::Label { .. } => Err(FetchError::Unsupported {
            what: "labels after import over POP3 (use delete or keep)".into(),
        }),
        AfterImport::Move { .. } => Err(FetchError::Unsupported {
            what: "moving messages after import over POP3 (use delete or keep)".into(),
        }),
    }
}

impl Pop3Upstream {
    /// Connects (implicit TLS, STLS, or plain as configured), reads the
    /// greeting and logs in, all within `connect_timeout`.
    pub async fn open(settings: &Pop3Settings) -> Result<Pop3Upstream, FetchError> {
        check_after(&settings.after)?;
        let c = &settings.connect;
        let (conn, capabilities) = tokio::time::timeout(c.connect_timeout, connect_and_login(c))
            .await
            .map_err(|_| {
                FetchError::Timeout(format!("POP3 connect and login to {}:{}", c.host, c.port))
            })??;
        let limit = settings.max_message_size.saturating_add(FETCH_SLACK);
        tracing::debug!(host = %c.host, port = c.port, "POP3 session open");
        Ok(Pop3Upstream {
            conn,
            user: c.user.clone(),
            after: settings.after.clone(),
            command_timeout: c.command_timeout,
            fetch_limit: usize::try_from(limit).unwrap_or(usize::MAX),
            capabilities,
            listed: HashMap::new(),
        })
    }

    /// For `mailgate test-connection`: log in, STAT, report CAPA, log out.
    pub async fn probe(settings: &Pop3Settings) -> Result<Probe, FetchError> {
        let mut session = Pop3Upstream::open(settings).await?;
        let r = session
            .conn
            .simple(b"STAT\r\n", session.command_timeout, "STAT")
            .await?;
        if !r.ok {
            return Err(refused("STAT", &r));
        }
        let (messages, _) = proto::parse_stat(&r.text).map_err(|e| protocol("STAT", e))?;
        let capabilities = session.capabilities.clone();
        session.finish().await?;
        Ok(Probe {
            messages,
            unseen: None,
            capabilities,
            folder: None,
        })
    }

    /// Capabilities announced after login (empty without CAPA).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    fn number(&self, message: &UpstreamMessage) -> Result<(u32, u64), FetchError> {
        self.listed.get(&message.key).copied().ok_or_else(|| {
            FetchError::Protocol(format!(
                "{} was not listed in this POP3 session",
                message.key
            ))
        })
    }

    async fn multi(
        &mut self,
        line: &[u8],
        max: usize,
        overflow: Overflow,
        hint: usize,
        what: &str,
    ) -> Result<Response, FetchError> {
        let parser = ResponseParser::new(Expect::Multi { max, overflow }).with_size_hint(hint);
        self.conn
            .exchange(Some(line), parser, self.command_timeout, what)
            .await
    }
}

impl Upstream for Pop3Upstream {
    /// UIDL + LIST: every message, in maildrop order.
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        let uidl = self
            .multi(b"UIDL\r\n", LISTING_MAX, Overflow::Fail, 0, "UIDL")
            .await?;
        if !uidl.ok {
            return Err(FetchError::Unsupported {
                what: format!(
                    "UIDL, needed to import each message exactly once ({})",
                    uidl.text
                ),
            });
        }
        let list = self
            .multi(b"LIST\r\n", LISTING_MAX, Overflow::Fail, 0, "LIST")
            .await?;
        if !list.ok {
            return Err(refused("LIST", &list));
        }
        let uidl_body = uidl.body.unwrap_or_default();
        let list_body = list.body.unwrap_or_default();
        let mut ids = proto::parse_listing(&uidl_body).map_err(|e| protocol("UIDL", e))?;
        let mut sizes = HashMap::new();
        for (number, size) in proto::parse_listing(&list_body).map_err(|e| protocol("LIST", e))? {
            let size = size.parse::<u64>().map_err(|_| {
                FetchError::Protocol(format!(
                    "POP3 LIST: size of message {number} is not a number"
                ))
            })?;
            sizes.insert(number, size);
        }
        ids.sort_by_key(|(number, _)| *number);
        let mut listed = HashMap::with_capacity(ids.len());
        let mut messages = Vec::with_capacity(ids.len());
        for (number, uid) in ids {
            let size = *sizes.get(&number).ok_or_else(|| {
                FetchError::Protocol(format!("POP3 LIST has no size for message {number}"))
            })?;
            let key = format!("pop3:{uid}");
            // Ids are unique per RFC 1939; if not, the first one wins.
            listed.entry(key.clone()).or_insert((number, size));
            messages.push(UpstreamMessage {
                key,
                size,
                leftover: false,
            });
        }
        self.listed = listed;
        Ok(messages)
    }

    /// RETR, refused past `max_message_size` + [`FETCH_SLACK`].
    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let (number, size) = self.number(message)?;
        let too_big = || {
            FetchError::Protocol(format!(
                "POP3 message {} is larger than the limit of {} bytes",
                message.key, self.fetch_limit
            ))
        };
        let hint = usize::try_from(size).unwrap_or(usize::MAX);
        if hint > self.fetch_limit {
            return Err(too_big());
        }
        let line =
            proto::command("RETR", &[&number.to_string()]).map_err(|e| protocol("RETR", e))?;
        // A server that sends more than it announced fails here, mid-body,
        // with the buffer never past the limit.
        let r = self
            .multi(&line, self.fetch_limit, Overflow::Fail, hint, "RETR")
            .await?;
        if !r.ok {
            return Err(refused("RETR", &r));
        }
        Ok(r.body.unwrap_or_default())
    }

    /// `TOP n 0`: the header block and the blank line after it.
    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let (number, _) = self.number(message)?;
        let line =
            proto::command("TOP", &[&number.to_string(), "0"]).map_err(|e| protocol("TOP", e))?;
        let r = self
            .multi(&line, HEADERS_MAX, Overflow::Truncate, 0, "TOP")
            .await?;
        if !r.ok {
            if !self.capabilities.is_empty() && !proto::has_capability(&self.capabilities, "TOP") {
                return Err(FetchError::Unsupported {
                    what: format!("TOP ({})", r.text),
                });
            }
            return Err(refused("TOP", &r));
        }
        Ok(r.body.unwrap_or_default())
    }

    /// Delete: DELE (final at QUIT). Keep: nothing.
    async fn mark(
        &mut self,
        message: &UpstreamMessage,
        _verdict: Verdict,
    ) -> Result<(), FetchError> {
        check_after(&self.after)?;
        if self.after != AfterImport::Delete {
            return Ok(());
        }
        let (number, _) = self.number(message)?;
        let line =
            proto::command("DELE", &[&number.to_string()]).map_err(|e| protocol("DELE", e))?;
        let r = self
            .conn
            .simple(&line, self.command_timeout, "DELE")
            .await?;
        if r.ok {
            Ok(())
        } else {
            Err(refused("DELE", &r))
        }
    }

    /// QUIT: the server removes the DELE'd messages now (UPDATE state).
    async fn finish(mut self) -> Result<(), FetchError> {
        let r = self
            .conn
            .simple(b"QUIT\r\n", self.command_timeout, "QUIT")
            .await?;
        let _ = tokio::time::timeout(self.command_timeout, self.conn.io.shutdown()).await;
        if r.ok {
            Ok(())
        } else {
            Err(FetchError::Protocol(format!(
                "POP3 QUIT: the server did not remove the deleted messages: {}",
                r.text
            )))
        }
    }
}
