//! One IMAP command exchange: write a tagged line, read responses until the
//! tagged status, all within the command timeout and a byte budget.
//!
//! Lines are written straight onto the [`Transport`], never through
//! async-imap's encoder: that one traces every line it sends (LOGIN with
//! its password included) at `async_imap::imap_stream=trace`. async-imap
//! is only the response parser here (`Client::read_response`). Its own
//! command helpers also drop the tagged status of FETCH, SEARCH, STORE,
//! LIST and EXPUNGE (a `NO` looks like an empty success) and leave the
//! connection out of step when a stream is dropped early.

use std::future::Future;
use std::time::Duration;

use async_imap::Client;
use async_imap::imap_proto::{Capability, Outcome, Response, ResponseCode, Status};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::names::clean_text;
use super::transport::Transport;
use crate::inbound::pull::upstream::FetchError;

/// How a command failed.
#[derive(Debug)]
pub(super) enum CmdError {
    No(String),
    Bad(String),
    /// The connection ended (with the server's BYE text, if any).
    Closed(Option<String>),
    Io(String),
    /// A size cap refused what the server sent.
    Limit(String),
    Timeout,
    /// An earlier failure left the session out of step.
    Unusable,
}

impl CmdError {
    /// Whether the session can no longer be used after this error.
    pub(super) fn breaks(&self) -> bool {
        !matches!(self, CmdError::No(_) | CmdError::Bad(_))
    }

    pub(super) fn into_fetch(self, what: &str) -> FetchError {
        match self {
            CmdError::No(text) => FetchError::Protocol(format!("{what}: server said NO: {text}")),
            CmdError::Bad(text) => FetchError::Protocol(format!("{what}: server said BAD: {text}")),
            CmdError::Closed(None) => {
                FetchError::Io(format!("{what}: connection closed by the server"))
            }
            CmdError::Closed(Some(bye)) => FetchError::Io(format!(
                "{what}: connection closed by the server (BYE {bye})"
            )),
            CmdError::Io(detail) => FetchError::Io(format!("{what}: {detail}")),
            CmdError::Limit(detail) => FetchError::Protocol(format!("{what}: {detail}")),
            CmdError::Timeout => FetchError::Timeout(what.to_string()),
            CmdError::Unusable => FetchError::Io(format!(
                "{what}: the session is unusable after an earlier error; reconnect"
            )),
        }
    }
}

/// What a command's tagged OK said.
pub(super) struct Done {
    /// `[READ-ONLY]` (after SELECT).
    pub(super) read_only: bool,
}

/// Receives each untagged response of a command.
pub(super) type OnUntagged<'a> = &'a mut (dyn FnMut(&Response<'_>) + Send);

/// The connection: async-imap's response reader over our transport, our
/// own tags, and whether the session is still in step with the server.
pub(super) struct Conn {
    client: Client<Transport>,
    next_tag: u32,
    command_timeout: Duration,
    /// A timeout or I/O error left the session out of step.
    broken: bool,
}

impl Conn {
    pub(super) fn new(transport: Transport, command_timeout: Duration) -> Conn {
        Conn {
            client: Client::new(transport),
            next_tag: 1,
            command_timeout,
            broken: false,
        }
    }

    /// The same session over a new transport (after STARTTLS): tags go on
    /// counting, buffered bytes of the old transport are gone.
    pub(super) async fn upgrade<F, Fut>(self, f: F) -> Result<Conn, FetchError>
    where
        F: FnOnce(Transport) -> Fut,
        Fut: Future<Output = Result<Transport, FetchError>>,
    {
        let Conn {
            client,
            next_tag,
            command_timeout,
            broken,
        } = self;
        Ok(Conn {
            client: Client::new(f(client.into_inner()).await?),
            next_tag,
            command_timeout,
            broken,
        })
    }

    pub(super) fn broken(&self) -> bool {
        self.broken
    }

    /// Nothing more may be sent (after LOGOUT, or when out of step).
    pub(super) fn set_broken(&mut self) {
        self.broken = true;
    }

    pub(super) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Starts a new command: `budget` more bytes may be read.
    pub(super) fn set_budget(&mut self, budget: u64) {
        self.client.get_mut().guard.set_budget(budget);
    }

    /// Sends a command and reads its responses within the command timeout,
    /// with `budget` bytes allowed; untagged responses go to `on_untagged`.
    /// Timeouts and I/O errors break the session.
    pub(super) async fn run(
        &mut self,
        command: &str,
        budget: u64,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        if self.broken {
            return Err(CmdError::Unusable);
        }
        self.set_budget(budget);
        let result = timeout(self.command_timeout, self.exchange(command, on_untagged)).await;
        self.settle(result)
    }

    /// Marks the session broken when `result` timed out or broke it.
    pub(super) fn settle<T>(
        &mut self,
        result: Result<Result<T, CmdError>, tokio::time::error::Elapsed>,
    ) -> Result<T, CmdError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.breaks() {
                    self.broken = true;
                }
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(CmdError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        command: &str,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        let tag = self.start(command).await?;
        self.finish(&tag, on_untagged).await
    }

    /// Writes `<tag> <command>` and returns the tag. The line goes to the
    /// socket only: nothing here logs it.
    pub(super) async fn start(&mut self, command: &str) -> Result<String, CmdError> {
        let tag = format!("mg{}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        let mut line = Vec::with_capacity(tag.len() + command.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write(&line).await?;
        Ok(tag)
    }

    /// Writes an untagged line (IDLE's `DONE`, a SASL response).
    pub(super) async fn send_line(&mut self, text: &str) -> Result<(), CmdError> {
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write(&line).await
    }

    async fn write(&mut self, line: &[u8]) -> Result<(), CmdError> {
        let stream = self.client.get_mut();
        stream
            .write_all(line)
            .await
            .map_err(|e| CmdError::Io(e.to_string()))?;
        stream
            .flush()
            .await
            .map_err(|e| CmdError::Io(e.to_string()))
    }

    /// Reads responses until the tagged status of `tag`.
    pub(super) async fn finish(
        &mut self,
        tag: &str,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        let mut bye = None;
        loop {
            let step = self
                .read(&mut bye, |response| match response {
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t.0 == tag => Some(match status {
                        Status::Ok => Ok(Done {
                            read_only: matches!(outcome.code, Some(ResponseCode::ReadOnly)),
                        }),
                        Status::No => Err(CmdError::No(outcome_text(outcome))),
                        _ => Err(CmdError::Bad(outcome_text(outcome))),
                    }),
                    other => {
                        on_untagged(other);
                        None
                    }
                })
                .await?;
            if let Some(result) = step {
                return result;
            }
        }
    }

    /// Reads one response and hands it to `f`; remembers a BYE so that
    /// the end of the connection can be explained.
    pub(super) async fn read<R>(
        &mut self,
        bye: &mut Option<String>,
        f: impl FnOnce(&Response<'_>) -> R,
    ) -> Result<R, CmdError> {
        let response = match self.client.read_response().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(CmdError::Closed(bye.take())),
            Err(e) => return Err(self.io_error(e)),
        };
        let parsed = response.parsed();
        if let Response::Data {
            status: Status::Bye,
            outcome,
        } = parsed
        {
            *bye = Some(outcome_text(outcome));
        }
        Ok(f(parsed))
    }

    fn io_error(&self, e: std::io::Error) -> CmdError {
        match self.client.get_ref().guard.tripped() {
            Some(reason) => CmdError::Limit(reason.to_string()),
            None => CmdError::Io(e.to_string()),
        }
    }
}

pub(super) fn capability_name(c: &Capability<'_>) -> String {
    match c {
        Capability::Imap4rev1 => "IMAP4rev1".to_string(),
        Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
        Capability::Atom(atom) => atom.to_string(),
    }
}

/// The text of a status response, with its code when async-imap parsed one.
pub(super) fn outcome_text(outcome: &Outcome<'_>) -> String {
    let code = match &outcome.code {
        Some(code) => format!("[{code:?}] "),
        None => String::new(),
    };
    clean_text(&format!(
        "{code}{}",
        outcome.information.as_deref().unwrap_or("")
    ))
}
