//! The byte stream under async-imap: plain TCP or TLS, behind one type,
//! with a read guard that enforces the size caps *while* reading.
//!
//! async-imap buffers a whole response before handing it over, and when a
//! server announces a literal (`{N}\r\n`) it grows its buffer to N bytes
//! at once (up to 512 MiB) before reading them. So the cap cannot be
//! checked on what async-imap returns: [`ReadGuard`] watches the raw bytes,
//! refuses any literal announced larger than the cap, and refuses more
//! than a per-command byte budget. A refusal is an I/O error; the session
//! is then out of step and is dropped.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Watches the bytes the server sends.
#[derive(Debug, Clone)]
pub struct ReadGuard {
    /// Largest literal accepted, in bytes.
    literal_max: u64,
    /// Bytes still allowed before the current command must be over.
    budget: u64,
    /// The budget the current command started with.
    budget_total: u64,
    /// Bytes of a literal still to pass unexamined.
    skip: u64,
    scan: Scan,
    /// Why the guard refused, once it has.
    tripped: Option<String>,
}

/// Where the scanner is in a possible literal announcement `{123}\r\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Text,
    /// After `{` and these digits (`any`: at least one digit seen).
    Open {
        value: u64,
        any: bool,
    },
    /// After `{digits}`.
    Close(u64),
    /// After `{digits}\r`.
    Cr(u64),
}

impl ReadGuard {
    pub fn new(literal_max: u64, budget: u64) -> ReadGuard {
        ReadGuard {
            literal_max,
            budget,
            budget_total: budget,
            skip: 0,
            scan: Scan::Text,
            tripped: None,
        }
    }

    /// Starts a new command: `budget` more bytes may be read.
    pub fn set_budget(&mut self, budget: u64) {
        self.budget = budget;
        self.budget_total = budget;
    }

    /// Why reading was refused, if it was.
    pub fn tripped(&self) -> Option<&str> {
        self.tripped.as_deref()
    }

    /// Examines bytes just read; `Err` with the reason when they go over a cap.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Some(reason) = &self.tripped {
            return Err(reason.clone());
        }
        let len = bytes.len() as u64;
        if len > self.budget {
            return Err(self.trip(format!(
                "the server sent more than the {} bytes allowed for this command",
                self.budget_total
            )));
        }
        self.budget -= len;
        let mut i = 0;
        while i < bytes.len() {
            if self.skip > 0 {
                let n = self.skip.min((bytes.len() - i) as u64);
                self.skip -= n;
                i += n as usize;
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.scan = match self.scan {
                Scan::Text => Self::start(b),
                Scan::Open { value, any } => {
                    if b.is_ascii_digit() {
                        let value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                        Scan::Open { value, any: true }
                    } else if b == b'}' && any {
                        Scan::Close(value)
                    } else {
                        Self::start(b)
                    }
                }
                Scan::Close(value) => {
                    if b == b'\r' {
                        Scan::Cr(value)
                    } else {
                        Self::start(b)
                    }
                }
                Scan::Cr(value) => {
                    if b == b'\n' {
                        if value > self.literal_max {
                            return Err(self.trip(format!(
                                "the server announced {value} bytes, over the limit of {}",
                                self.literal_max
                            )));
                        }
                        self.skip = value;
                        Scan::Text
                    } else {
                        Self::start(b)
                    }
                }
            };
        }
        Ok(())
    }

    fn start(b: u8) -> Scan {
        if b == b'{' {
            Scan::Open {
                value: 0,
                any: false,
            }
        } else {
            Scan::Text
        }
    }

    fn trip(&mut self, reason: String) -> String {
        self.tripped = Some(reason.clone());
        reason
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Plain or TLS stream with a [`ReadGuard`] on the read side.
pub struct Transport {
    io: Io,
    pub guard: ReadGuard,
}

impl Transport {
    pub fn plain(stream: TcpStream, guard: ReadGuard) -> Transport {
        Transport {
            io: Io::Plain(stream),
            guard,
        }
    }

    pub fn tls(stream: TlsStream<TcpStream>, guard: ReadGuard) -> Transport {
        Transport {
            io: Io::Tls(Box::new(stream)),
            guard,
        }
    }

    /// The TCP stream of a plain transport (for STARTTLS).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self.io {
            Io::Plain(stream) => Some(stream),
            Io::Tls(_) => None,
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.io {
            Io::Plain(_) => "plain",
            Io::Tls(_) => "tls",
        };
        f.debug_struct("Transport")
            .field("io", &kind)
            .field("guard", &self.guard)
            .finish()
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(reason) = this.guard.tripped() {
            return Poll::Ready(Err(io::Error::other(reason.to_string())));
        }
        let before = buf.filled().len();
        match &mut this.io {
            Io::Plain(s) => ready!(Pin::new(s).poll_read(cx, buf))?,
            Io::Tls(s) => ready!(Pin::new(s.as_mut()).poll_read(cx, buf))?,
        }
        match this.guard.feed(&buf.filled()[before..]) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(reason) => Poll::Ready(Err(io::Error::other(reason))),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, data),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(guard: &mut ReadGuard, pieces: &[&[u8]]) -> Result<(), String> {
        for piece in pieces {
            guard.feed(piece)?;
        }
        Ok(())
    }

    #[test]
    fn small_literals_pass_and_their_content_is_not_scanned() {
        let mut g = ReadGuard::new(100, 1_000);
        // The literal's content announces a huge literal: it is data, skipped.
        let body = b"* 1 FETCH (UID 3 BODY[] {20}\r\nx {99999999}\r\n abcdef)\r\nA1 OK done\r\n";
        assert_eq!(g.feed(body), Ok(()));
        assert!(g.tripped().is_none());
    }

    #[test]
    fn a_literal_over_the_cap_is_refused_even_split_across_reads() {
        let mut g = ReadGuard::new(100, 1_000_000);
        let r = feed_all(
            &mut g,
            &[b"* 1 FETCH (UID 3 BODY[] {1", b"01", b"}\r", b"\n"],
        );
        assert!(r.unwrap_err().contains("announced 101 bytes"));
        // Stays refused.
        assert!(g.feed(b"x").is_err());
        assert!(g.tripped().is_some());
    }

    #[test]
    fn a_literal_at_the_cap_is_fine() {
        let mut g = ReadGuard::new(100, 1_000_000);
        assert!(
            feed_all(
                &mut g,
                &[b"* 1 FETCH (BODY[] {100}\r\n", &[b'{'; 100], b")\r\n"]
            )
            .is_ok()
        );
    }

    #[test]
    fn braces_in_text_are_not_literals() {
        let mut g = ReadGuard::new(10, 1_000_000);
        assert!(g.feed(b"* OK {999999} is no literal\r\n").is_ok());
        assert!(g.feed(b"* OK {} {x} {12}x\r\n").is_ok());
        assert!(g.feed(b"* OK {{123}\r\n").is_err());
    }

    #[test]
    fn huge_numbers_saturate() {
        let mut g = ReadGuard::new(u64::MAX - 1, u64::MAX);
        assert!(g.feed(b"{99999999999999999999999999}\r\n").is_err());
    }

    #[test]
    fn the_budget_caps_a_command() {
        let mut g = ReadGuard::new(100, 10);
        assert!(g.feed(b"0123456789").is_ok());
        assert!(g.feed(b"x").unwrap_err().contains("10 bytes"));
        let mut g = ReadGuard::new(100, 10);
        g.feed(b"01234").unwrap();
        g.set_budget(10);
        assert!(g.feed(b"0123456789").is_ok());
    }
}
