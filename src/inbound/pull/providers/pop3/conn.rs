//! The POP3 connection: a socket (plain or TLS), a fixed read buffer, and
//! one [`ResponseParser`] per command, every exchange under a timeout.
//! How a response is read is [`crate::proto::pop3`]'s business; once one
//! was not read to its end the connection refuses to send anything more.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::inbound::pull::upstream::FetchError;
use crate::proto::pop3::{
    self as proto, Expect, Feed, Overflow, ProtoError, Response, ResponseParser,
};

/// Read buffer: one socket read at most.
const READ_BUF: usize = 16 * 1024;
/// Cap of a CAPA body.
const CAPA_MAX: usize = 64 * 1024;

/// A byte stream the session can run over.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection: the stream, the bytes read but not yet parsed, and
/// whether it is still in step with the server.
pub(super) struct Conn<S> {
    pub(super) io: S,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Set once a response was not read to its end (timeout, I/O or parse
    /// error): what follows on the wire is unknown, so nothing more is sent.
    pub(super) broken: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(super) fn new(io: S) -> Conn<S> {
        Conn {
            io,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            pos: 0,
            len: 0,
            broken: None,
        }
    }

    /// Sends `line` (if any) and reads one response, all within `limit`.
    /// A `-ERR` is a response like `+OK`; only failures to read one are errors.
    pub(super) async fn exchange(
        &mut self,
        line: Option<&[u8]>,
        parser: ResponseParser,
        limit: Duration,
        what: &str,
    ) -> Result<Response, FetchError> {
        if let Some(reason) = &self.broken {
            return Err(FetchError::Protocol(format!(
                "POP3 session unusable after an earlier error ({reason})"
            )));
        }
        let result =
            match tokio::time::timeout(limit, self.exchange_inner(line, parser, what)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::Timeout(format!("POP3 {what}"))),
            };
        if let Err(e) = &result {
            self.broken = Some(format!("{what}: {}", e.kind()));
        }
        result
    }

    async fn exchange_inner(
        &mut self,
        line: Option<&[u8]>,
        mut parser: ResponseParser,
        what: &str,
    ) -> Result<Response, FetchError> {
        if let Some(line) = line {
            if self.pos < self.len {
                return Err(FetchError::Protocol(format!(
                    "unexpected data from the server before {what}"
                )));
            }
            self.io
                .write_all(line)
                .await
                .map_err(|e| io_error(what, &e))?;
            self.io.flush().await.map_err(|e| io_error(what, &e))?;
        }
        loop {
            if self.pos < self.len {
                let input = self.buf.get(self.pos..self.len).unwrap_or_default();
                match parser.feed(input).map_err(|e| protocol(what, e))? {
                    Feed::Done { response, used } => {
                        self.pos += used;
                        return Ok(response);
                    }
                    Feed::NeedMore => self.pos = self.len,
                }
            }
            let n = self
                .io
                .read(&mut self.buf)
                .await
                .map_err(|e| io_error(what, &e))?;
            if n == 0 {
                return Err(FetchError::Io(format!(
                    "the server closed the connection during {what}"
                )));
            }
            self.pos = 0;
            self.len = n;
        }
    }

    /// A single-line command.
    pub(super) async fn simple(
        &mut self,
        line: &[u8],
        limit: Duration,
        what: &str,
    ) -> Result<Response, FetchError> {
        self.exchange(Some(line), ResponseParser::new(Expect::Single), limit, what)
            .await
    }

    /// CAPA: `None` if the server does not know it.
    pub(super) async fn capa(
        &mut self,
        limit: Duration,
    ) -> Result<Option<Vec<String>>, FetchError> {
        let parser = ResponseParser::new(Expect::Multi {
            max: CAPA_MAX,
            overflow: Overflow::Truncate,
        });
        let r = self
            .exchange(Some(b"CAPA\r\n"), parser, limit, "CAPA")
            .await?;
        Ok(r.ok.then(|| proto::parse_capa(r.body.as_deref().unwrap_or_default())))
    }

    /// The stream back, for the TLS upgrade. Bytes the server sent after
    /// its STLS answer would be plaintext injected ahead of TLS: refused.
    pub(super) fn into_inner(self) -> Result<S, FetchError> {
        if self.pos < self.len {
            return Err(FetchError::Protocol(
                "the server sent data after its STLS answer (possible injection)".into(),
            ));
        }
        Ok(self.io)
    }
}

pub(super) fn io_error(what: &str, e: &std::io::Error) -> FetchError {
    FetchError::Io(format!("during POP3 {what}: {e}"))
}

pub(super) fn protocol(what: &str, e: ProtoError) -> FetchError {
    FetchError::Protocol(format!("POP3 {what}: {e}"))
}

pub(super) fn refused(what: &str, r: &Response) -> FetchError {
    FetchError::Protocol(format!("POP3 {what} refused: {}", r.text))
}
