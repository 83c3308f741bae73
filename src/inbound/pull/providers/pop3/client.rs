//! The tokio layer: a socket (plain, TLS, or upgraded with STLS), a fixed
//! read buffer, and one [`ResponseParser`] per command, every step under a
//! timeout. What a response means is decided here; how it is read is
//! [`super::proto`]'s business.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Pop3Settings;
use crate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Probe, Upstream, UpstreamMessage, Verdict,
};
use crate::mail::{AfterImport, Security};
use crate::proto::pop3::{
    self as proto, Expect, Feed, Overflow, ProtoError, Response, ResponseParser,
};
use crate::tls::client as tls;

/// Read buffer: one socket read at most.
const READ_BUF: usize = 16 * 1024;
/// RETR may return this much more than `max_message_size` (headers the
/// server adds, line-end differences) before it is refused.
pub const FETCH_SLACK: u64 = 64 * 1024;
/// Cap of a CAPA body.
const CAPA_MAX: usize = 64 * 1024;
/// Cap of a UIDL or LIST body (about a million messages).
const LISTING_MAX: usize = 64 * 1024 * 1024;
/// `TOP n 0` keeps at most this much of the header block.
pub const HEADERS_MAX: usize = 256 * 1024;

/// A byte stream the session can run over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection: the stream, the bytes read but not yet parsed, and
/// whether it is still in step with the server.
struct Conn<S> {
    io: S,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Set once a response was not read to its end (timeout, I/O or parse
    /// error): what follows on the wire is unknown, so nothing more is sent.
    broken: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S) -> Conn<S> {
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
    async fn exchange(
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
    async fn simple(
        &mut self,
        line: &[u8],
        limit: Duration,
        what: &str,
    ) -> Result<Response, FetchError> {
        self.exchange(Some(line), ResponseParser::new(Expect::Single), limit, what)
            .await
    }

    /// CAPA: `None` if the server does not know it.
    async fn capa(&mut self, limit: Duration) -> Result<Option<Vec<String>>, FetchError> {
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
    fn into_inner(self) -> Result<S, FetchError> {
        if self.pos < self.len {
            return Err(FetchError::Protocol(
                "the server sent data after its STLS answer (possible injection)".into(),
            ));
        }
        Ok(self.io)
    }
}

fn io_error(what: &str, e: &std::io::Error) -> FetchError {
    FetchError::Io(format!("during POP3 {what}: {e}"))
}

fn protocol(what: &str, e: ProtoError) -> FetchError {
    FetchError::Protocol(format!("POP3 {what}: {e}"))
}

fn refused(what: &str, r: &Response) -> FetchError {
    FetchError::Protocol(format!("POP3 {what} refused: {}", r.text))
}

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

/// Everything `open` does before the timeout: TCP, TLS or STLS, greeting,
/// login, CAPA.
async fn connect_and_login(
    c: &ConnectSettings,
) -> Result<(Conn<Box<dyn Io>>, Vec<String>), FetchError> {
    let tcp = tls::connect_tcp(c).await?;
    let limit = c.command_timeout;
    let mut conn: Conn<Box<dyn Io>> = match c.security {
        Security::Tls => {
            let stream = tls::handshake(c, tcp).await?;
            let mut conn = Conn::new(Box::new(stream) as Box<dyn Io>);
            greeting(&mut conn, c).await?;
            conn
        }
        Security::None => {
            let mut conn = Conn::new(Box::new(tcp) as Box<dyn Io>);
            greeting(&mut conn, c).await?;
            conn
        }
        Security::StartTls => {
            let mut plain = Conn::new(tcp);
            greeting(&mut plain, c).await?;
            // A server without CAPA may still know STLS; one that lists
            // capabilities without it does not.
            if let Some(caps) = plain.capa(limit).await?
                && !proto::has_capability(&caps, "STLS")
            {
                return Err(FetchError::Unsupported {
                    what: "STLS (refusing to log in without TLS)".into(),
                });
            }
            let r = plain.simple(b"STLS\r\n", limit, "STLS").await?;
            if !r.ok {
                return Err(FetchError::Tls {
                    host: c.host.clone(),
                    detail: format!("server refused STLS: {}", r.text),
                });
            }
            let stream = tls::handshake(c, plain.into_inner()?).await?;
            Conn::new(Box::new(stream) as Box<dyn Io>)
        }
    };
    // Capabilities before login decide the mechanism (and after STLS the
    // old list must be forgotten anyway, RFC 2595).
    let before = conn.capa(limit).await?;
    login(&mut conn, c, before.as_deref()).await?;
    let after = conn.capa(limit).await?.unwrap_or_default();
    Ok((conn, after))
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    c: &ConnectSettings,
) -> Result<(), FetchError> {
    let parser = ResponseParser::new(Expect::Single);
    let r = conn
        .exchange(None, parser, c.command_timeout, "greeting")
        .await?;
    if r.ok {
        Ok(())
    } else {
        Err(FetchError::Connect {
            address: format!("{}:{}", c.host, c.port),
            detail: format!("server refused the session: {}", r.text),
        })
    }
}

/// USER/PASS; AUTH PLAIN only when the server lists SASL PLAIN but not USER.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    c: &ConnectSettings,
    capabilities: Option<&[String]>,
) -> Result<(), FetchError> {
    let auth = |detail: String| FetchError::Auth {
        user: c.user.clone(),
        detail,
    };
    let bad_argument = |_| auth("user name or password contains a line break or NUL".into());
    let limit = c.command_timeout;
    let plain_only = capabilities
        .is_some_and(|caps| !proto::has_capability(caps, "USER") && proto::has_sasl(caps, "PLAIN"));
    if plain_only {
        let user = c.user.as_str();
        let password = c.password.expose();
        if user.contains('\0') || password.contains('\0') {
            return Err(auth("user name or password contains NUL".into()));
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let line = proto::command("AUTH", &["PLAIN", &token]).map_err(bad_argument)?;
        let r = conn.simple(&line, limit, "AUTH PLAIN").await?;
        return if r.ok { Ok(()) } else { Err(auth(r.text)) };
    }
    let line = proto::command("USER", &[&c.user]).map_err(bad_argument)?;
    let r = conn.simple(&line, limit, "USER").await?;
    if !r.ok {
        return Err(auth(r.text));
    }
    let line = proto::command("PASS", &[c.password.expose()]).map_err(bad_argument)?;
    let r = conn.simple(&line, limit, "PASS").await?;
    if r.ok { Ok(()) } else { Err(auth(r.text)) }
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

#[cfg(test)]
mod tests {
    //! The tokio layer against scripted servers on loopback: the failure
    //! paths a well-behaved Dovecot never takes.
    use super::*;
    use crate::mail::Secret;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    type Handler = fn(&str) -> Option<Vec<u8>>;

    /// Accepts one connection, sends `greeting`, then answers each command
    /// line with `handler` (None: hang up). Returns the commands seen.
    async fn fake(greeting: &'static [u8], handler: Handler) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut seen = Vec::new();
            if write.write_all(greeting).await.is_err() {
                return seen;
            }
            let mut line = String::new();
            loop {
                line.clear();
                match read.read_line(&mut line).await {
                    Ok(0) | Err(_) => return seen,
                    Ok(_) => {}
                }
                let command = line.trim_end().to_string();
                let reply = handler(&command);
                seen.push(command);
                match reply {
                    Some(bytes) => {
                        if write.write_all(&bytes).await.is_err() {
                            return seen;
                        }
                    }
                    None => return seen,
                }
            }
        });
        (port, task)
    }

    fn settings(port: u16, security: Security, after: AfterImport) -> Pop3Settings {
        Pop3Settings {
            connect: ConnectSettings {
                host: "127.0.0.1".into(),
                port,
                security,
                user: "u".into(),
                password: Secret::new("p w"),
                ca_file: None,
                connect_timeout: Duration::from_secs(3),
                command_timeout: Duration::from_millis(500),
            },
            after,
            max_message_size: 100,
        }
    }

    /// A minimal server: USER/PASS, CAPA without STLS, UIDL, LIST, RETR
    /// (message 2 is larger than announced), DELE, QUIT. Bare LF throughout.
    fn basic(command: &str) -> Option<Vec<u8>> {
        let reply: &[u8] = match command {
            "CAPA" => b"+OK\nUSER\nUIDL\nTOP\n.\n",
            "USER u" | "PASS p w" | "DELE 1" | "QUIT" => b"+OK\n",
            "UIDL" => b"+OK\n1 aaa\n2 bbb\n.\n",
            "LIST" => b"+OK 2 messages\n1 12\n2 10\n.\n",
            "RETR 1" => b"+OK\nSubject: a\n\n..x\n.\n",
            "TOP 1 0" => b"+OK\nSubject: a\n\n.\n",
            "RETR 2" => {
                let mut big = b"+OK\n".to_vec();
                big.extend(std::iter::repeat_n(b'x', 70_000));
                return Some(big);
            }
            _ => b"-ERR unknown\n",
        };
        Some(reply.to_vec())
    }

    #[tokio::test]
    async fn plain_session_lf_server_and_oversize_retr() {
        let (port, server) = fake(b"+OK hi\n", basic).await;
        let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Delete))
            .await
            .unwrap();
        assert_eq!(s.capabilities(), ["USER", "UIDL", "TOP"]);
        let list = s.list_new().await.unwrap();
        assert_eq!(
            list,
            vec![
                UpstreamMessage {
                    key: "pop3:aaa".into(),
                    size: 12,
                    leftover: false,
                },
                UpstreamMessage {
                    key: "pop3:bbb".into(),
                    size: 10,
                    leftover: false,
                },
            ]
        );
        assert_eq!(s.fetch(&list[0]).await.unwrap(), b"Subject: a\n\n.x\n");
        assert_eq!(s.fetch_headers(&list[0]).await.unwrap(), b"Subject: a\n\n");
        s.mark(&list[0], Verdict::Processed).await.unwrap();
        let unknown = UpstreamMessage {
            key: "pop3:zzz".into(),
            size: 1,
            leftover: false,
        };
        assert!(matches!(
            s.fetch(&unknown).await,
            Err(FetchError::Protocol(_))
        ));
        // Announced 10 bytes, sends 70,000 (limit 100 + 64 KiB): refused mid-body.
        let err = s.fetch(&list[1]).await.unwrap_err();
        assert!(
            matches!(&err, FetchError::Protocol(d) if d.contains("larger than")),
            "{err}"
        );
        // Out of step with the server now: nothing more is sent, QUIT included.
        let err = s.finish().await.unwrap_err();
        assert!(err.to_string().contains("unusable"), "{err}");
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            [
                "CAPA", "USER u", "PASS p w", "CAPA", "UIDL", "LIST", "RETR 1", "TOP 1 0",
                "DELE 1", "RETR 2"
            ]
        );
    }

    #[tokio::test]
    async fn oversize_announced_is_refused_before_retr() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                "LIST" => Some(b"+OK\r\n1 999999\r\n.\r\n".to_vec()),
                "UIDL" => Some(b"+OK\r\n1 a\r\n.\r\n".to_vec()),
                _ => basic(command),
            }
        }
        let (port, server) = fake(b"+OK\r\n", handler).await;
        let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap();
        let list = s.list_new().await.unwrap();
        assert!(s.fetch(&list[0]).await.is_err());
        // Keep: mark sends nothing; the session is still fine.
        s.mark(&list[0], Verdict::Rejected).await.unwrap();
        s.finish().await.unwrap();
        let seen = server.await.unwrap();
        assert!(
            !seen
                .iter()
                .any(|c| c.starts_with("RETR") || c.starts_with("DELE")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn greeting_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(stream);
        });
        let mut cfg = settings(port, Security::None, AfterImport::Keep);
        cfg.connect.connect_timeout = Duration::from_millis(300);
        cfg.connect.command_timeout = Duration::from_secs(10);
        let started = std::time::Instant::now();
        let err = Pop3Upstream::open(&cfg).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        hold.abort();
    }

    #[tokio::test]
    async fn command_timeout() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                // Answers half a response, then nothing.
                "UIDL" => Some(b"+OK\r\n1 a\r\n".to_vec()),
                _ => basic(command),
            }
        }
        let (port, _server) = fake(b"+OK\r\n", handler).await;
        let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap();
        let err = s.list_new().await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn stls_not_offered_is_refused_before_login() {
        let (port, server) = fake(b"+OK\r\n", basic).await;
        let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
        assert_eq!(server.await.unwrap(), ["CAPA"]);
    }

    #[tokio::test]
    async fn data_after_stls_answer_is_refused() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                "CAPA" => Some(b"+OK\r\nSTLS\r\n.\r\n".to_vec()),
                "STLS" => Some(b"+OK go\r\n+OK injected\r\n".to_vec()),
                _ => None,
            }
        }
        let (port, _server) = fake(b"+OK\r\n", handler).await;
        let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Protocol(d) if d.contains("STLS")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stls_refused_is_a_tls_error() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                "CAPA" => Some(b"-ERR no\r\n".to_vec()),
                "STLS" => Some(b"-ERR not today\r\n".to_vec()),
                _ => None,
            }
        }
        let (port, _server) = fake(b"+OK\r\n", handler).await;
        let err = Pop3Upstream::open(&settings(port, Security::StartTls, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Tls { detail, .. } if detail.contains("not today")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn auth_plain_when_user_is_not_offered() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                "CAPA" => Some(b"+OK\r\nSASL PLAIN\r\nUIDL\r\n.\r\n".to_vec()),
                // "\0u\0p w"
                "AUTH PLAIN AHUAcCB3" => Some(b"-ERR [AUTH] nope\r\n".to_vec()),
                _ => None,
            }
        }
        let (port, _server) = fake(b"+OK\r\n", handler).await;
        let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Auth { detail, .. } if detail == "[AUTH] nope"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn uidl_missing_is_unsupported_and_bad_input_refused() {
        fn handler(command: &str) -> Option<Vec<u8>> {
            match command {
                "UIDL" => Some(b"-ERR what\r\n".to_vec()),
                _ => basic(command),
            }
        }
        let (port, _server) = fake(b"+OK\r\n", handler).await;
        let mut s = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap();
        let err = s.list_new().await.unwrap_err();
        assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
        s.finish().await.unwrap();

        // IMAP-only after-import actions: refused before connecting.
        let label = AfterImport::Label {
            processed: "a".into(),
            rejected: "b".into(),
        };
        let err = Pop3Upstream::open(&settings(1, Security::None, label))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");

        // A password with a line break is never sent.
        let (port, server) = fake(b"+OK\r\n", basic).await;
        let mut cfg = settings(port, Security::None, AfterImport::Keep);
        cfg.connect.password = Secret::new("x\r\nDELE 1");
        let err = Pop3Upstream::open(&cfg).await.unwrap_err();
        assert!(matches!(err, FetchError::Auth { .. }), "{err}");
        assert!(!err.to_string().contains("DELE"));
        drop(err);
        assert_eq!(server.await.unwrap(), ["CAPA", "USER u"]);
    }

    #[tokio::test]
    async fn greeting_err_and_garbage() {
        let (port, _server) = fake(b"-ERR busy\r\n", basic).await;
        let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Connect { detail, .. } if detail.contains("busy")),
            "{err}"
        );
        let (port, _server) = fake(b"* OK IMAP4rev1\r\n", basic).await;
        let err = Pop3Upstream::open(&settings(port, Security::None, AfterImport::Keep))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Protocol(_)), "{err}");
    }
}
