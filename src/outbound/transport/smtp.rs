//! The SMTP relay transport: one session per message to the relay in
//! `[relay]`, with mail-send speaking SMTP over streams we open ourselves,
//! so the relay's certificate is checked against our roots plus
//! `relay.ca_file` (src/tls/client.rs), never a platform verifier.
//!
//! Implicit TLS wraps the TCP stream before the greeting; STARTTLS is
//! required when configured (a relay that does not offer it is refused,
//! never used in plain text); AUTH PLAIN or LOGIN only over TLS unless
//! `allow_insecure`. Connect, greeting and handshake are bounded by
//! `connect_timeout`, every command (DATA with its message included) by
//! `command_timeout`. The password is handed to mail-send for the AUTH
//! exchange only; it is in no log line, error or Debug output.
//!
//! With `relay.auth = "oauth2"` the login is SASL XOAUTH2 (smtp_xoauth2.rs)
//! with a token from the [`AccessTokens`] given to the constructor, asked
//! for on every connection (the source caches it).

use std::sync::Arc;
use std::time::Duration;

use mail_send::smtp::message::Parameters;
use mail_send::{Credentials, SmtpClient};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, EXT_AUTH, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse,
    Response,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::smtp_xoauth2 as xoauth2;
use super::{
    Delivery, Envelope, FailureKind, Refused, SendError, SendFuture, Step, Transport, all_refused,
    classify_reply,
};
use crate::auth::relay::RelayPasswordError;
use crate::config::relay::RelayConfig;
use crate::mail::{AccessTokens, Secret, Security};
use crate::outbound::compose::valid_address;
use crate::tls::client::{self, ConnectError, Target};

/// Sends through the configured relay.
pub struct SmtpTransport {
    relay: RelayConfig,
    /// Resolved from `relay.password_env` / `password_file` when a user is set.
    password: Option<Secret>,
    /// Where XOAUTH2 tokens come from, with `relay.auth = "oauth2"`.
    tokens: Option<Arc<dyn AccessTokens>>,
}

/// Why the transport cannot be built from the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelaySetupError {
    #[error(transparent)]
    Password(#[from] RelayPasswordError),
    #[error(
        "relay.auth = \"oauth2\" but no access-token source for mailbox {0:?} (relay.oauth2_mailbox) was set up"
    )]
    NoTokens(String),
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("relay", &self.describe())
            .field("user", &self.user())
            .field("password", &self.password)
            .field("oauth2", &self.tokens.is_some())
            .finish()
    }
}

/// What the relay offered, for `mailgate test-relay`.
#[derive(Debug, Clone, Default)]
pub struct Offered {
    /// The 220 greeting line.
    pub greeting: String,
    /// Protocol version and cipher suite, when the session is encrypted.
    pub tls: Option<String>,
    /// The EHLO keywords (after TLS), e.g. `PIPELINING`, `SIZE 10240000`, `AUTH PLAIN LOGIN`.
    pub capabilities: Vec<String>,
    /// The user we logged in as, when AUTH was done.
    pub authenticated_as: Option<String>,
}

enum Client {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// An open session, TLS and AUTH done, ready for MAIL FROM.
struct Session {
    client: Client,
    ehlo: EhloResponse<String>,
    offered: Offered,
}

impl SmtpTransport {
    /// `password` is needed when `relay.auth` is set (see
    /// [`SmtpTransport::from_config`]).
    pub fn new(relay: RelayConfig, password: Option<Secret>) -> SmtpTransport {
        SmtpTransport {
            relay,
            password,
            tokens: None,
        }
    }

    /// Resolves the password from its configured source; `tokens` is the
    /// access-token source of `relay.oauth2_mailbox`, needed (and only
    /// used) with `relay.auth = "oauth2"`.
    pub fn from_config(
        relay: &RelayConfig,
        tokens: Option<Arc<dyn AccessTokens>>,
    ) -> Result<SmtpTransport, RelaySetupError> {
        let password = match &relay.auth {
            Some(auth) => Some(crate::auth::relay::resolve(auth)?),
            None => None,
        };
        let tokens = match &relay.oauth2 {
            Some(o) => Some(tokens.ok_or_else(|| RelaySetupError::NoTokens(o.mailbox.clone()))?),
            None => None,
        };
        Ok(SmtpTransport {
            tokens,
            ..SmtpTransport::new(relay.clone(), password)
        })
    }

    /// Who the relay session logs in as, if anyone.
    fn user(&self) -> Option<&str> {
        match (&self.relay.auth, &self.relay.oauth2) {
            (Some(a), _) => Some(&a.user),
            (None, Some(o)) => Some(&o.user),
            (None, None) => None,
        }
    }

    pub fn relay(&self) -> &RelayConfig {
        &self.relay
    }

    /// Connects, says EHLO, does TLS and AUTH as configured, and quits:
    /// what the relay offered, or the first thing that failed.
    pub async fn probe(&self) -> Result<Offered, SendError> {
        let session = self.open().await?;
        let offered = session.offered.clone();
        session.quit().await;
        Ok(offered)
    }

    fn target(&self) -> Target {
        Target {
            host: self.relay.host.clone(),
            port: self.relay.port,
            ca_file: self.relay.ca_file.clone(),
            connect_timeout: self.relay.connect_timeout,
        }
    }

    async fn open(&self) -> Result<Session, SendError> {
        let target = self.target();
        let tcp = client::connect_tcp(&target).await.map_err(from_connect)?;
        let helo = self.relay.helo.as_str();
        let timeout = self.relay.command_timeout;
        let mut session = match self.relay.security {
            Security::Tls => {
                let tls = client::handshake(&target, tcp)
                    .await
                    .map_err(from_connect)?;
                let mut c = SmtpClient {
                    stream: tls,
                    timeout,
                };
                let greeting = greeting(&mut c, self.relay.connect_timeout).await?;
                let ehlo = ehlo(&mut c, helo).await?;
                Session::new(Client::Tls(Box::new(c)), ehlo, greeting)
            }
            Security::StartTls => {
                let mut c = SmtpClient {
                    stream: tcp,
                    timeout,
                };
                let greeting = greeting(&mut c, self.relay.connect_timeout).await?;
                let first = ehlo(&mut c, helo).await?;
                if !first.has_capability(EXT_START_TLS) {
                    return Err(SendError::temporary(
                        FailureKind::Tls,
                        "the relay does not offer STARTTLS, which relay.security = \"starttls\" requires; not continuing in plain text",
                    ));
                }
                let connector =
                    TlsConnector::from(client::client_config(&target).map_err(from_connect)?);
                let mut c = c
                    .start_tls(&connector, &self.relay.host)
                    .await
                    .map_err(|e| from_mail_send(Step::StartTls, e))?;
                let ehlo = ehlo(&mut c, helo).await?;
                Session::new(Client::Tls(Box::new(c)), ehlo, greeting)
            }
            Security::None => {
                let mut c = SmtpClient {
                    stream: tcp,
                    timeout,
                };
                let greeting = greeting(&mut c, self.relay.connect_timeout).await?;
                let ehlo = ehlo(&mut c, helo).await?;
                Session::new(Client::Plain(c), ehlo, greeting)
            }
        };
        if let Some(auth) = &self.relay.auth {
            if matches!(session.client, Client::Plain(_)) && !self.relay.allow_insecure {
                return Err(SendError::temporary(
                    FailureKind::Auth,
                    "not sending the relay password without TLS (relay.allow_insecure is not set)",
                ));
            }
            let Some(password) = &self.password else {
                return Err(SendError::temporary(
                    FailureKind::Auth,
                    "relay.user is set but no password was resolved",
                ));
            };
            let Session { client, ehlo, .. } = &mut session;
            match client {
                Client::Plain(c) => login(c, ehlo, &auth.user, password).await?,
                Client::Tls(c) => login(&mut **c, ehlo, &auth.user, password).await?,
            }
            session.offered.authenticated_as = Some(auth.user.clone());
        } else if let Some(o) = &self.relay.oauth2 {
            if matches!(session.client, Client::Plain(_)) && !self.relay.allow_insecure {
                return Err(SendError::temporary(
                    FailureKind::Auth,
                    "not sending an access token without TLS (relay.allow_insecure is not set)",
                ));
            }
            let Some(tokens) = &self.tokens else {
                return Err(SendError::temporary(
                    FailureKind::Auth,
                    "relay.auth = \"oauth2\" but no access-token source was set up",
                ));
            };
            let Session { client, ehlo, .. } = &mut session;
            match client {
                Client::Plain(c) => xoauth2::login(c, ehlo, &o.user, tokens.as_ref()).await?,
                Client::Tls(c) => xoauth2::login(&mut **c, ehlo, &o.user, tokens.as_ref()).await?,
            }
            session.offered.authenticated_as = Some(o.user.clone());
        }
        tracing::debug!(
            relay = %self.describe(),
            tls = session.offered.tls.as_deref().unwrap_or("none"),
            user = session.offered.authenticated_as.as_deref().unwrap_or("(no AUTH)"),
            "relay session ready"
        );
        Ok(session)
    }
}

impl Transport for SmtpTransport {
    fn send<'a>(&'a self, envelope: &'a Envelope, message: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            check_envelope(envelope)?;
            let mut session = self.open().await?;
            let result = match &mut session.client {
                Client::Plain(c) => transfer(c, &session.ehlo, envelope, message).await,
                Client::Tls(c) => transfer(&mut **c, &session.ehlo, envelope, message).await,
            };
            session.quit().await;
            match &result {
                Ok(d) => tracing::debug!(
                    relay = %self.describe(),
                    accepted = d.accepted.len(),
                    refused = d.refused.len(),
                    reply = %d.reply,
                    "relay accepted the message"
                ),
                Err(e) => tracing::debug!(
                    relay = %self.describe(),
                    kind = e.kind().as_str(),
                    permanent = e.is_permanent(),
                    error = %e,
                    "relay did not take the message"
                ),
            }
            result
        })
    }

    fn describe(&self) -> String {
        let security = match self.relay.security {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::None => "plain",
        };
        format!("smtp {}:{} {security}", self.relay.host, self.relay.port)
    }
}

impl Session {
    fn new(client: Client, ehlo: EhloResponse<String>, greeting: String) -> Session {
        let tls = match &client {
            Client::Plain(_) => None,
            Client::Tls(c) => Some(describe_tls(c.stream.get_ref().1)),
        };
        let capabilities = capability_names(&ehlo);
        Session {
            client,
            ehlo,
            offered: Offered {
                greeting,
                tls,
                capabilities,
                authenticated_as: None,
            },
        }
    }

    /// QUIT, ignoring what the relay says: the outcome is already known.
    async fn quit(self) {
        let _ = match self.client {
            Client::Plain(c) => c.quit().await,
            Client::Tls(c) => (*c).quit().await,
        };
    }
}

/// Refuses, before connecting, an envelope that cannot be sent as is: no
/// recipient, or a sender that is not a usable address (ticket data is
/// hostile; nothing may reach the command line unchecked).
fn check_envelope(envelope: &Envelope) -> Result<(), SendError> {
    if envelope.recipients.is_empty() {
        return Err(SendError::Permanent {
            reply: "not sent: the message has no recipient".into(),
        });
    }
    if !envelope.from.is_empty() && !valid_address(&envelope.from) {
        return Err(SendError::Permanent {
            reply: "not sent: the envelope sender is not a usable address".into(),
        });
    }
    Ok(())
}

async fn greeting<T>(c: &mut SmtpClient<T>, timeout: Duration) -> Result<String, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let reply = tokio::time::timeout(timeout, c.read())
        .await
        .map_err(|_| {
            SendError::temporary(FailureKind::Timeout, "timed out waiting for the greeting")
        })?
        .map_err(|e| from_mail_send(Step::Greeting, e))?;
    let line = reply_line(&reply);
    if reply.code != 220 {
        return Err(classify_reply(Step::Greeting, reply.code, &line));
    }
    Ok(line)
}

async fn ehlo<T>(c: &mut SmtpClient<T>, helo: &str) -> Result<EhloResponse<String>, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    c.ehlo(helo)
        .await
        .map_err(|e| from_mail_send(Step::Ehlo, e))
}

async fn login<T>(
    c: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    user: &str,
    password: &Secret,
) -> Result<(), SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut usable = ehlo.clone();
    usable.auth_mechanisms &= AUTH_PLAIN | AUTH_LOGIN;
    if !ehlo.has_capability(EXT_AUTH) || usable.auth_mechanisms == 0 {
        return Err(SendError::temporary(
            FailureKind::Auth,
            "the relay offers no AUTH PLAIN or LOGIN, and relay.user is set",
        ));
    }
    let credentials = Credentials::new(user.to_string(), password.expose().to_string());
    c.authenticate(&credentials, &usable)
        .await
        .map(|_| ())
        .map_err(|e| from_mail_send(Step::Auth, e))
}

/// mail-send ends DATA with CRLF "." CRLF whatever the message's last
/// bytes are, so a message that already ends with a line break (as every
/// message should) would reach the relay one empty line longer: the line
/// break is left to the terminator.
fn without_final_line_break(message: &[u8]) -> &[u8] {
    message
        .strip_suffix(b"\r\n")
        .or_else(|| message.strip_suffix(b"\n"))
        .unwrap_or(message)
}

/// MAIL FROM, one RCPT TO per recipient, DATA. Recipients refused while
/// others are accepted are reported in the delivery; when none is
/// accepted, the session is reset and the outcome is [`all_refused`].
async fn transfer<T>(
    c: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Delivery, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if ehlo.has_capability(EXT_SIZE) && ehlo.size > 0 && message.len() > ehlo.size {
        return Err(SendError::Permanent {
            reply: format!(
                "not sent: the message ({} bytes) is larger than the relay accepts (SIZE {})",
                message.len(),
                ehlo.size
            ),
        });
    }
    let size = message.len().to_string();
    let mut params = Parameters::new();
    if ehlo.has_capability(EXT_SIZE) {
        params.add(("SIZE", size.as_str()));
    }
    let non_ascii = !envelope.from.is_ascii() || envelope.recipients.iter().any(|r| !r.is_ascii());
    if non_ascii {
        if !ehlo.has_capability(EXT_SMTP_UTF8) {
            return Err(SendError::Permanent {
                reply:
                    "not sent: non-ASCII addresses need SMTPUTF8, which the relay does not offer"
                        .into(),
            });
        }
        params.add("SMTPUTF8");
    }
    c.mail_from(&envelope.from, &params)
        .await
        .map_err(|e| from_mail_send(Step::MailFrom, e))?;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for recipient in &envelope.recipients {
        if !valid_address(recipient) {
            refused.push(Refused {
                recipient: recipient.clone(),
                error: SendError::Permanent {
                    reply: "not sent: not a usable address".into(),
                },
            });
            continue;
        }
        match c.rcpt_to(recipient, &Parameters::new()).await {
            Ok(()) => accepted.push(recipient.clone()),
            Err(mail_send::Error::UnexpectedReply(reply)) => refused.push(Refused {
                recipient: recipient.clone(),
                error: classify_reply(Step::RcptTo, reply.code, &reply_line(&reply)),
            }),
            Err(e) => return Err(from_mail_send(Step::RcptTo, e)),
        }
    }
    if accepted.is_empty() {
        let _ = c.rset().await;
        return Err(all_refused(&refused));
    }
    let reply = c
        .data(without_final_line_break(message))
        .await
        .map_err(|e| from_mail_send(Step::Data, e))?;
    Ok(Delivery {
        reply: reply_line(&reply),
        accepted,
        refused,
    })
}

/// A reply as one line: `250 2.0.0 Ok: queued as ABC` (continuation lines
/// joined with spaces, control characters dropped).
pub fn reply_line(reply: &Response<String>) -> String {
    let [class, subject, detail] = reply.esc;
    let text: String = reply
        .message
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if class == 0 {
        format!("{} {text}", reply.code)
    } else {
        format!("{} {class}.{subject}.{detail} {text}", reply.code)
    }
}

fn describe_tls(conn: &rustls::ClientConnection) -> String {
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "TLS".into());
    match conn.negotiated_cipher_suite() {
        Some(suite) => format!("{version}, {:?}", suite.suite()),
        None => version,
    }
}

/// The EHLO keywords, sorted (the parsed reply keeps no order), without
/// the greeting line.
fn capability_names(ehlo: &EhloResponse<String>) -> Vec<String> {
    let mut out = Vec::new();
    let _ = ehlo.write(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .skip(1)
        .map(|l| l.get(4..).unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn from_connect(e: ConnectError) -> SendError {
    let kind = match &e {
        ConnectError::Dns { .. } => FailureKind::Dns,
        ConnectError::Connect { .. } => FailureKind::Connect,
        ConnectError::Tls { .. } => FailureKind::Tls,
        ConnectError::Timeout(_) => FailureKind::Timeout,
    };
    SendError::temporary(kind, e.to_string())
}

/// A mail-send error at `step`, classified for the worker.
pub fn from_mail_send(step: Step, e: mail_send::Error) -> SendError {
    use mail_send::Error as E;
    let at = step.as_str();
    match e {
        E::UnexpectedReply(reply) => classify_reply(step, reply.code, &reply_line(&reply)),
        E::AuthenticationFailed(reply) => SendError::temporary(
            FailureKind::Auth,
            format!("authentication failed: {}", reply_line(&reply)),
        ),
        E::Io(e) => {
            let kind = if step == Step::StartTls {
                FailureKind::Tls
            } else {
                FailureKind::Connect
            };
            SendError::temporary(kind, format!("connection lost during {at}: {e}"))
        }
        E::Tls(e) => {
            SendError::temporary(FailureKind::Tls, format!("TLS with the relay failed: {e}"))
        }
        E::Timeout => SendError::temporary(FailureKind::Timeout, format!("timed out during {at}")),
        E::UnparseableReply => SendError::temporary(
            FailureKind::Protocol,
            format!("the relay closed the connection or sent an unreadable reply during {at}"),
        ),
        E::InvalidTLSName => SendError::temporary(
            FailureKind::Tls,
            "relay.host is not a name a TLS certificate can be checked against",
        ),
        E::MissingStartTls => {
            SendError::temporary(FailureKind::Tls, "the relay does not offer STARTTLS")
        }
        E::UnsupportedAuthMechanism | E::MissingCredentials => SendError::temporary(
            FailureKind::Auth,
            "the relay offers no AUTH mechanism we can use (PLAIN, LOGIN)",
        ),
        E::Auth(_) | E::Base64(_) => SendError::temporary(
            FailureKind::Auth,
            "the relay sent an AUTH challenge we cannot answer",
        ),
        E::MissingMailFrom | E::MissingRcptTo => SendError::temporary(
            FailureKind::Protocol,
            format!("incomplete envelope at {at}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_final_line_break_is_left_to_the_data_terminator() {
        use super::without_final_line_break as cut;
        assert_eq!(cut(b"a\r\nb\r\n"), b"a\r\nb");
        assert_eq!(cut(b"a\r\nb\n"), b"a\r\nb");
        assert_eq!(cut(b"a\r\nb"), b"a\r\nb");
        assert_eq!(cut(b"a\r\n\r\n"), b"a\r\n", "only one line break");
        assert_eq!(cut(b""), b"");
    }

    use super::*;

    fn reply(code: u16, esc: [u8; 3], text: &str) -> Response<String> {
        Response {
            code,
            esc,
            message: text.into(),
        }
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            reply_line(&reply(250, [2, 0, 0], "Ok: queued as ABC")),
            "250 2.0.0 Ok: queued as ABC"
        );
        assert_eq!(
            reply_line(&reply(220, [0, 0, 0], "relay ESMTP")),
            "220 relay ESMTP"
        );
        assert_eq!(
            reply_line(&reply(550, [5, 1, 1], "no such\r\nuser\x07")),
            "550 5.1.1 no such user"
        );
    }

    #[test]
    fn mail_send_errors_are_classified() {
        let e = from_mail_send(
            Step::RcptTo,
            mail_send::Error::UnexpectedReply(reply(
                550,
                [5, 1, 1],
                "<x@a.test>: Recipient address rejected",
            )),
        );
        assert_eq!(
            e,
            SendError::Permanent {
                reply: "550 5.1.1 <x@a.test>: Recipient address rejected".into()
            }
        );
        let e = from_mail_send(
            Step::Data,
            mail_send::Error::UnexpectedReply(reply(452, [4, 3, 1], "Insufficient system storage")),
        );
        assert_eq!(e.kind(), FailureKind::Refused);
        assert!(!e.is_permanent());
        let e = from_mail_send(
            Step::Auth,
            mail_send::Error::AuthenticationFailed(reply(
                535,
                [5, 7, 8],
                "Error: authentication failed",
            )),
        );
        assert_eq!(e.kind(), FailureKind::Auth);
        assert!(
            !e.is_permanent(),
            "a wrong relay password keeps mail queued"
        );
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = from_mail_send(Step::MailFrom, mail_send::Error::Io(reset));
        assert_eq!(e.kind(), FailureKind::Connect);
        assert!(!e.is_permanent());
        let e = from_mail_send(Step::Data, mail_send::Error::Timeout);
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (FailureKind::Timeout, "timed out during DATA")
        );
        let e = from_mail_send(
            Step::StartTls,
            mail_send::Error::Tls(Box::new(rustls::Error::DecryptError)),
        );
        assert_eq!(e.kind(), FailureKind::Tls);
        let e = from_mail_send(Step::Ehlo, mail_send::Error::UnparseableReply);
        assert_eq!(e.kind(), FailureKind::Protocol);
        let e = from_connect(ConnectError::Connect {
            address: "127.0.0.1:1".into(),
            detail: "Connection refused".into(),
        });
        assert_eq!(e.kind(), FailureKind::Connect);
        assert!(e.to_string().contains("Connection refused"));
    }

    #[test]
    fn hostile_envelopes_never_reach_the_relay() {
        let env = |from: &str, to: &[&str]| Envelope {
            from: from.into(),
            recipients: to.iter().map(|s| s.to_string()).collect(),
        };
        assert!(check_envelope(&env("", &["a@x.test"])).is_ok());
        assert!(check_envelope(&env("s@x.test", &["a@x.test"])).is_ok());
        for bad in [
            env("s@x.test>\r\nRCPT TO:<evil@y.test", &["a@x.test"]),
            env("s@x.test", &[]),
        ] {
            assert!(check_envelope(&bad).unwrap_err().is_permanent(), "{bad:?}");
        }
        assert!(!valid_address("a@x.test>\r\nDATA"));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = crate::config::Config::parse(
            "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[relay]\nhost=\"h\"\nuser=\"u\"\npassword_env=\"P\"\n",
        )
        .unwrap();
        let t = SmtpTransport::new(c.relay.unwrap(), Some(Secret::new("hunter2-relay")));
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("smtp h:587 starttls"), "{shown}");
    }
}
