//! The thin I/O layer around [`Session`]: accept, limit, read, write, TLS.
//!
//! All protocol decisions live in the sans-IO session; this file only moves
//! bytes, applies the listener's [`ConnectionBudget`] and the idle time,
//! upgrades to TLS, and hands what the session produces to the listener's
//! [`Handler`] (the MX's or the submission endpoint's), answering only
//! after the handler has committed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::budget::{ConnectionBudget, Refusal};
use super::spool::{SPOOL_THRESHOLD, Spool, SpoolFile};
use crate::mail::{EnvelopeInfo, Origin};
use crate::proto::smtp::reply::Reply;
use crate::proto::smtp::session::{
    AuthResult, Credentials, Envelope, Event, OversizeInfo, RecipientPolicy, Session, SessionConfig,
};

/// What one kind of SMTP listener does with what its sessions produce.
pub trait Handler: Send + Sync + 'static {
    /// Decides recipients (and senders) for one session.
    type Policy: RecipientPolicy + Send + Sync;
    fn policy(&self, peer: SocketAddr) -> Self::Policy;
    /// Open sessions of this listener.
    fn sessions_active(&self) -> &Gauge;
    /// Counts a connection by outcome (accepted, refused_limit, ...).
    fn count_connection(&self, outcome: &str);
    /// A complete message: commit it and return the reply to send.
    fn message(
        &self,
        envelope: Envelope,
        data: Vec<u8>,
        peer: SocketAddr,
    ) -> impl Future<Output = Reply> + Send;
    /// Checks a login (sessions whose listener offers AUTH). Whatever the
    /// reason, a refusal looks the same to the client.
    fn authenticate(
        &self,
        credentials: Credentials,
        peer: SocketAddr,
    ) -> impl Future<Output = AuthResult> + Send {
        let _ = (credentials, peer);
        async { AuthResult::Rejected }
    }
    /// A message over the size cap (the session already answered 552).
    fn oversize(
        &self,
        envelope: Envelope,
        info: OversizeInfo,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send;
}

/// Bytes read from a socket at a time; the session holds at most this plus a command line.
const READ_CHUNK: usize = 64 * 1024;
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for answering a refused connection (TLS handshake included).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a connection of one kind of listener needs.
pub struct SmtpServer<H> {
    pub session: Arc<SessionConfig>,
    pub handler: H,
    pub tls: Option<TlsAcceptor>,
    pub idle_timeout: Duration,
    /// See [`SmtpServer::with_min_data_rate`].
    min_data_rate: u64,
    budget: Arc<ConnectionBudget>,
    /// Where messages above [`SPOOL_THRESHOLD`] go while they arrive;
    /// None: held in memory.
    spool: Option<Arc<Spool>>,
}

impl<H: Handler> SmtpServer<H> {
    pub fn new(
        session: SessionConfig,
        handler: H,
        tls: Option<TlsAcceptor>,
        idle_timeout: Duration,
        budget: Arc<ConnectionBudget>,
    ) -> SmtpServer<H> {
        SmtpServer {
            session: Arc::new(session),
            handler,
            tls,
            idle_timeout,
            min_data_rate: 0,
            budget,
            spool: None,
        }
    }

    /// Bounds each request, not only each read: once one has taken longer
    /// than the idle time it must keep up `bytes_per_second` (0: no bound).
    pub fn with_min_data_rate(mut self, bytes_per_second: u64) -> SmtpServer<H> {
        self.min_data_rate = bytes_per_second;
        self
    }

    /// Spools large messages to `spool` while they arrive.
    pub fn with_spool(mut self, spool: Arc<Spool>) -> SmtpServer<H> {
        self.spool = Some(spool);
        self
    }

    /// Accepts connections until shutdown; `implicit_tls` for port-465 style
    /// listeners. Then closes the listening socket and returns the sessions
    /// still open (each answers 421 as it sees the same shutdown), for the
    /// caller to join.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        implicit_tls: bool,
        shutdown: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let mut stop = shutdown.clone();
        let mut sessions = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                // Reap finished sessions so the set stays as small as the open ones.
                Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
                _ = stop.changed() => return sessions,
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            sessions.spawn(async move {
                server.handle(stream, peer, implicit_tls, shutdown).await;
            });
        }
    }

    async fn handle(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        implicit_tls: bool,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let admission = match self.budget.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                self.handler.count_connection(refusal.outcome());
                tracing::warn!(client = %peer, "{}; refused", refusal.describe());
                if let Some(_slot) = self.budget.refusal_slot() {
                    self.refuse(stream, refusal, implicit_tls).await;
                }
                return;
            }
        };
        self.handler.count_connection("accepted");
        self.handler.sessions_active().inc();
        let result = self.run(stream, peer, implicit_tls, shutdown).await;
        // The budget is free again before the session stops counting as active.
        drop(admission);
        self.handler.sessions_active().dec();
        match result {
            Ok(()) => tracing::debug!(client = %peer, "session closed"),
            Err(e) if e.is::<ClientNotReading>() => {
                tracing::info!(client = %peer, "{e}; closing");
            }
            Err(e) => tracing::debug!(client = %peer, error = %e, "session ended"),
        }
    }

    /// Answers a refused connection with its 421 and closes it; on
    /// implicit-TLS ports the reply goes over TLS (a plaintext one would be
    /// garbage to the client). Bounded by [`REFUSAL_TIMEOUT`].
    async fn refuse(&self, stream: TcpStream, refusal: Refusal, implicit_tls: bool) {
        let reply = refusal.reply().as_bytes();
        let answer = async {
            match (&self.tls, implicit_tls) {
                (Some(acceptor), true) => {
                    let mut tls = acceptor.accept(stream).await?;
                    tls.write_all(reply).await?;
                    tls.shutdown().await
                }
                (None, true) => Ok(()),
                (_, false) => {
                    let mut stream = stream;
                    stream.write_all(reply).await?;
                    stream.shutdown().await
                }
            }
        };
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
    }

    async fn run(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        implicit_tls: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut session = Session::new(self.session.clone(), implicit_tls);
        let policy = self.handler.policy(peer);
        if implicit_tls {
            let acceptor = self
                .tls
                .clone()
                .context("implicit TLS listener without a certificate")?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .context("TLS handshake timed out")?
                .context("TLS handshake failed")?;
            session.greeting();
            self.drive(tls, &mut session, &policy, peer, shutdown)
                .await?;
            return Ok(());
        }
        session.greeting();
        if let Some(plain) = self
            .drive(stream, &mut session, &policy, peer, shutdown.clone())
            .await?
        {
            let acceptor = self.tls.clone().context("STARTTLS without a certificate")?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain))
                .await
                .context("TLS handshake timed out")?
                .context("TLS handshake failed")?;
            session.tls_established();
            self.drive(tls, &mut session, &policy, peer, shutdown)
                .await?;
        }
        Ok(())
    }

    /// Runs the session over one transport. Returns the transport when the
    /// session asked for STARTTLS, None when it closed.
    async fn drive<S>(
        &self,
        mut stream: S,
        session: &mut Session,
        policy: &H::Policy,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_CHUNK];
        // The message being received, when it went to a spool file.
        let mut spooled: Option<SpoolFile> = None;
        // The request being received: since when, and bytes read for it.
        let mut request: Option<(Instant, u64)> = None;
        loop {
            // Process everything buffered, answering as we go.
            loop {
                match session.poll(policy) {
                    Event::NeedInput => break,
                    Event::StartTls => {
                        self.flush(&mut stream, session).await?;
                        return Ok(Some(stream));
                    }
                    Event::Close => {
                        self.flush(&mut stream, session).await?;
                        let _ = stream.shutdown().await;
                        return Ok(None);
                    }
                    Event::Authenticate(credentials) => {
                        self.flush(&mut stream, session).await?;
                        let result = self.handler.authenticate(credentials, peer).await;
                        session.auth_done(result);
                    }
                    Event::Message(envelope, data) => {
                        // Replies to pipelined commands before DATA go out first.
                        self.flush(&mut stream, session).await?;
                        let reply = match (spooled.take(), &self.spool) {
                            (Some(file), Some(spool)) => match file.load(&data, spool).await {
                                Ok(mut loaded) => {
                                    drop(data);
                                    let bytes = std::mem::take(&mut loaded.bytes);
                                    let reply = self.handler.message(envelope, bytes, peer).await;
                                    // The spool file and the budget share go now.
                                    drop(loaded);
                                    reply
                                }
                                Err(e) => {
                                    tracing::error!(client = %peer, error = %e, "cannot spool a message");
                                    Reply::new(
                                        451,
                                        Some((4, 3, 0)),
                                        "Temporary local problem storing the message, try again later",
                                    )
                                }
                            },
                            _ => self.handler.message(envelope, data, peer).await,
                        };
                        session.message_done(reply);
                    }
                    Event::Oversize(envelope, info) => {
                        spooled = None;
                        self.flush(&mut stream, session).await?;
                        self.handler.oversize(envelope, info, peer).await;
                    }
                }
            }
            if let Some(spool) = &self.spool {
                while let Some(chunk) = session.drain_data(SPOOL_THRESHOLD) {
                    if spooled.is_none() {
                        // A file that cannot be made answers the message 451.
                        spooled = Some(spool.create().await.unwrap_or_else(SpoolFile::broken));
                    }
                    if let Some(file) = spooled.as_mut() {
                        file.append(&chunk).await;
                    }
                }
            }
            self.flush(&mut stream, session).await?;
            let now = Instant::now();
            if !session.mid_request() {
                request = None;
            } else if request.is_none() {
                request = Some((now, 0));
            }
            let (deadline, slow) = self.read_deadline(now, request);
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)) => r,
                _ = shutdown.changed() => {
                    session.shutting_down();
                    self.flush(&mut stream, session).await?;
                    return Ok(None);
                }
            };
            match read {
                Err(_) if slow => {
                    session.too_slow();
                    self.flush(&mut stream, session).await?;
                    let (since, bytes) = request.unwrap_or((now, 0));
                    tracing::info!(
                        client = %peer,
                        bytes,
                        seconds = since.elapsed().as_secs(),
                        min_data_rate = self.min_data_rate,
                        "request slower than the minimum data rate; closing"
                    );
                    return Ok(None);
                }
                Err(_) => {
                    session.timed_out();
                    self.flush(&mut stream, session).await?;
                    tracing::info!(client = %peer, "idle timeout; closing");
                    return Ok(None);
                }
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    if let Some((_, bytes)) = request.as_mut() {
                        *bytes += n as u64;
                    }
                    session.feed(&buf[..n]);
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
}

impl<H> SmtpServer<H> {
    /// Writes what the session has to say. A client that takes none of it
    /// for the idle time is gone: without this bound, a client that
    /// pipelines commands and never reads the replies would hold its
    /// connection slot for ever once the socket buffers are full, as the
    /// idle time otherwise only bounds reads.
    async fn flush<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        session: &mut Session,
    ) -> Result<()> {
        let out = session.take_output();
        if !out.is_empty() {
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            match tokio::time::timeout(self.idle_timeout, write).await {
                Ok(written) => written?,
                Err(_) => return Err(ClientNotReading(self.idle_timeout).into()),
            }
        }
        Ok(())
    }

    /// When the next read must have returned: within the idle time, and,
    /// for a request under way, within the idle time plus one second for
    /// every `min_data_rate` bytes it has sent (Postfix's
    /// `smtpd_per_request_deadline` with `smtpd_min_data_rate`), so that a
    /// client dribbling a byte just inside each idle time cannot hold its
    /// connection for ever. True with it when the request's bound is the
    /// nearer one.
    fn read_deadline(&self, now: Instant, request: Option<(Instant, u64)>) -> (Instant, bool) {
        let idle = now + self.idle_timeout;
        match request {
            Some((since, bytes)) if self.min_data_rate > 0 => {
                let allowance = Duration::from_secs_f64(bytes as f64 / self.min_data_rate as f64);
                let by = since + self.idle_timeout + allowance;
                if by < idle { (by, true) } else { (idle, false) }
            }
            _ => (idle, false),
        }
    }
}

/// Where a message of this session came from, as records keep it.
pub fn origin(source: &str, envelope: &Envelope, peer: SocketAddr) -> Origin {
    Origin {
        source: source.into(),
        envelope: EnvelopeInfo {
            mail_from: envelope.mail_from.clone(),
            rcpt_to: envelope
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .collect(),
            client: peer.to_string(),
            helo: envelope.helo.clone(),
        },
        received_at: crate::now_rfc3339(),
    }
}

/// The client did not take our replies within the idle time.
#[derive(Debug, thiserror::Error)]
#[error("the client took none of our replies for {0:?}")]
struct ClientNotReading(Duration);

/// Binds every configured SMTP listener (so port errors surface at start).
pub async fn bind(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addresses {
        out.push(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        );
    }
    Ok(out)
}
