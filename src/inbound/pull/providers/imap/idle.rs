//! IMAP IDLE (RFC 2177): wait for the server to report new mail, in rounds
//! shorter than the server's inactivity timer, ending each with DONE.

use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, Response, Status};
use tokio::time::{Instant, timeout};

use super::command::{CmdError, outcome_text};
use super::{COMMAND_BUDGET, ImapUpstream};
use crate::inbound::pull::upstream::FetchError;

/// RFC 2177: re-issue IDLE before the server's 30-minute inactivity timer.
const IDLE_ROUND: Duration = Duration::from_secs(25 * 60);

/// How an IDLE wait ended.
enum IdleEnd {
    Change,
    /// The server completed the IDLE command itself.
    Ended,
}

impl ImapUpstream {
    /// IMAP IDLE: waits until the server reports a change (new or changed
    /// messages) or `timeout` elapses; `true` when something changed.
    /// Returns `Ok(false)` at once when the server has no IDLE (poll
    /// instead), and `true` at once when a change was already reported
    /// since the last `list_new`. On error the session is gone: reconnect.
    pub async fn wait_for_change(
        mut self,
        timeout: Duration,
    ) -> Result<(ImapUpstream, bool), FetchError> {
        if self.conn.broken() {
            return Err(CmdError::Unusable.into_fetch("IDLE"));
        }
        if !self.caps.idle {
            return Ok((self, false));
        }
        if self.tally.changed {
            return Ok((self, true));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok((self, false));
            }
            let round = (deadline - now).min(IDLE_ROUND);
            match self.idle_round(round).await {
                Ok(true) => return Ok((self, true)),
                Ok(false) => {}
                Err(e) => return Err(e.into_fetch("IDLE")),
            }
        }
    }

    /// One IDLE command: start, wait up to `wait`, DONE.
    async fn idle_round(&mut self, wait: Duration) -> Result<bool, CmdError> {
        if self.conn.broken() {
            return Err(CmdError::Unusable);
        }
        self.conn.set_budget(COMMAND_BUDGET);
        let limit = self.conn.command_timeout();
        let started = timeout(limit, self.idle_start()).await;
        let tag = self.conn.settle(started)?;
        let mut changed = self.tally.changed;
        if !changed {
            let waited = timeout(wait, self.idle_wait(&tag)).await;
            match waited {
                Ok(Ok(IdleEnd::Change)) => changed = true,
                Ok(Ok(IdleEnd::Ended)) => return Ok(self.tally.changed),
                Ok(Err(e)) => {
                    self.conn.set_broken();
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let done = timeout(limit, self.idle_done(&tag)).await;
        self.conn.settle(done)?;
        Ok(changed || self.tally.changed)
    }

    /// Sends IDLE and reads up to the server's continuation.
    async fn idle_start(&mut self) -> Result<String, CmdError> {
        let tag = self.conn.start("IDLE").await?;
        let mut bye = None;
        loop {
            let tally = &mut self.tally;
            let step = self
                .conn
                .read(&mut bye, |response| match response {
                    Response::Continue(_) => Some(Ok(())),
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t.0 == tag => Some(Err(match status {
                        Status::No => CmdError::No(outcome_text(outcome)),
                        _ => CmdError::Bad(outcome_text(outcome)),
                    })),
                    other => {
                        tally.note(other);
                        None
                    }
                })
                .await?;
            match step {
                Some(Ok(())) => return Ok(tag),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    /// Reads until the server reports a change (or ends the IDLE itself).
    async fn idle_wait(&mut self, tag: &str) -> Result<IdleEnd, CmdError> {
        let mut bye = None;
        loop {
            let tally = &mut self.tally;
            let step = self
                .conn
                .read(&mut bye, |response| match response {
                    Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_))
                    | Response::Fetch(..) => {
                        tally.note(response);
                        Some(IdleEnd::Change)
                    }
                    Response::Done { tag: t, .. } if t.0 == tag => Some(IdleEnd::Ended),
                    other => {
                        tally.note(other);
                        None
                    }
                })
                .await?;
            if let Some(end) = step {
                return Ok(end);
            }
        }
    }

    /// DONE, then the tagged end of the IDLE command.
    async fn idle_done(&mut self, tag: &str) -> Result<(), CmdError> {
        self.conn.send_line("DONE").await?;
        let tally = &mut self.tally;
        self.conn.finish(tag, &mut |r| tally.note(r)).await?;
        Ok(())
    }
}
