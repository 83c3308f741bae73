//! Opening a POP3 session: TCP, implicit TLS or STLS (RFC 2595), the
//! greeting, and logging in with the mailbox's [`Credential`]: USER/PASS,
//! or AUTH PLAIN (RFC 5034) when the server lists SASL PLAIN but not USER.
//! The secret goes only onto the socket, never into an error or a log line.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Conn, Io};
use crate::inbound::pull::upstream::{ConnectSettings, FetchError};
use crate::mail::{Credential, Secret, Security};
use crate::proto::pop3::{self as proto, Expect, ResponseParser};
use crate::tls::client as tls;

/// Everything `open` does before the timeout: TCP, TLS or STLS, greeting,
/// login, CAPA.
pub(super) async fn connect_and_login(
    c: &ConnectSettings,
) -> Result<(Conn<Box<dyn Io>>, Vec<String>), FetchError> {
    let tcp = tls::connect_tcp(&c.target()).await?;
    let limit = c.command_timeout;
    let mut conn: Conn<Box<dyn Io>> = match c.security {
        Security::Tls => {
            let stream = tls::handshake(&c.target(), tcp).await?;
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
            let stream = tls::handshake(&c.target(), plain.into_inner()?).await?;
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

/// Logs in with whatever the credential is.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    c: &ConnectSettings,
    capabilities: Option<&[String]>,
) -> Result<(), FetchError> {
    match &c.credential {
        Credential::Password(secret) => login_password(conn, c, secret, capabilities).await,
        // Neither Microsoft nor Google offers POP3 with XOAUTH2 for our use;
        // their mailboxes are read over IMAP, Graph or the Gmail API.
        Credential::OAuth2(_) => Err(FetchError::Unsupported {
            what: "OAuth2 over POP3".into(),
        }),
    }
}

/// USER/PASS; AUTH PLAIN only when the server lists SASL PLAIN but not USER.
async fn login_password<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    c: &ConnectSettings,
    secret: &Secret,
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
        let password = secret.expose();
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
    let line = proto::command("PASS", &[secret.expose()]).map_err(bad_argument)?;
    let r = conn.simple(&line, limit, "PASS").await?;
    if r.ok { Ok(()) } else { Err(auth(r.text)) }
}
