//! Opening an IMAP session: TCP, implicit TLS or STARTTLS, the greeting,
//! and logging in with the mailbox's [`Credential`].
//!
//! The credential is written straight onto the socket by [`Conn`], never
//! handed to async-imap (which traces what it sends), and never put in an
//! error or a log line: only the user name and the server's answer are.
//! OAuth2 (XOAUTH2) is in xoauth2.rs.

use async_imap::imap_proto::{Response, ResponseCode, Status};

use super::COMMAND_BUDGET;
use super::command::{CmdError, Conn, capability_name, outcome_text};
use super::transport::{ReadGuard, Transport};
use crate::inbound::pull::upstream::{ConnectSettings, FetchError};
use crate::mail::{Credential, Secret, Security};
use crate::tls::client as tls;

/// TCP, TLS or STARTTLS, greeting, login: an authenticated connection.
pub(super) async fn connect_and_login(
    c: &ConnectSettings,
    literal_max: u64,
) -> Result<Conn, FetchError> {
    let guard = ReadGuard::new(literal_max, COMMAND_BUDGET);
    let tcp = tls::connect_tcp(&c.target()).await?;
    let transport = match c.security {
        Security::Tls => Transport::tls(tls::handshake(&c.target(), tcp).await?, guard.clone()),
        Security::StartTls | Security::None => Transport::plain(tcp, guard.clone()),
    };
    let mut conn = Conn::new(transport, c.command_timeout);
    let greeting_caps = read_greeting(&mut conn, c).await?;
    if c.security == Security::StartTls {
        conn = starttls(conn, c, greeting_caps.clone(), guard).await?;
    } else if matches!(c.credential, Credential::Password(_))
        && greeting_caps.as_ref().is_some_and(|caps| {
            caps.iter()
                .any(|cap| cap.eq_ignore_ascii_case("LOGINDISABLED"))
        })
    {
        return Err(FetchError::Auth {
            user: c.user.clone(),
            detail: "the server disables LOGIN on this connection (LOGINDISABLED)".into(),
        });
    }
    // After STARTTLS the capabilities must be asked again (RFC 3501 6.2.1).
    let caps = if c.security == Security::StartTls {
        None
    } else {
        greeting_caps
    };
    login(&mut conn, c, caps).await?;
    tracing::debug!(host = %c.host, user = %c.user, "IMAP login");
    Ok(conn)
}

/// Logs in with whatever the credential is; `caps` are the capabilities
/// already known for this (TLS) session, if any.
async fn login(
    conn: &mut Conn,
    c: &ConnectSettings,
    caps: Option<Vec<String>>,
) -> Result<(), FetchError> {
    match &c.credential {
        Credential::Password(secret) => login_password(conn, &c.user, secret).await,
        Credential::OAuth2(tokens) => {
            let caps = match caps {
                Some(caps) => caps,
                None => capabilities(conn).await?,
            };
            super::xoauth2::login(conn, c, tokens.as_ref(), &caps).await
        }
    }
}

/// `CAPABILITY`: the list the server announces now.
pub(super) async fn capabilities(conn: &mut Conn) -> Result<Vec<String>, FetchError> {
    let mut caps = Vec::new();
    conn.run("CAPABILITY", COMMAND_BUDGET, &mut |r| {
        if let Response::Capabilities(list) = r {
            caps.extend(list.iter().map(capability_name));
        }
    })
    .await
    .map_err(|e| e.into_fetch("CAPABILITY"))?;
    Ok(caps)
}

/// `LOGIN "user" "password"`.
async fn login_password(conn: &mut Conn, user: &str, secret: &Secret) -> Result<(), FetchError> {
    let auth = |detail: String| FetchError::Auth {
        user: user.to_string(),
        detail,
    };
    let (Some(u), Some(p)) = (login_string(user), login_string(secret.expose())) else {
        return Err(auth(
            "the user name or password contains a line break or NUL".into(),
        ));
    };
    match conn
        .run(&format!("LOGIN {u} {p}"), COMMAND_BUDGET, &mut |_| {})
        .await
    {
        Ok(_) => Ok(()),
        Err(CmdError::No(text) | CmdError::Bad(text)) => Err(auth(text)),
        Err(e) => Err(e.into_fetch("LOGIN")),
    }
}

/// A quoted string for LOGIN (backslash and quote escaped), or `None`
/// when it holds a character no quoted string may (CR, LF, NUL).
fn login_string(text: &str) -> Option<String> {
    if text.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(super::names::quote(text))
}

/// STARTTLS (refused unless offered), then the same session over TLS.
async fn starttls(
    mut conn: Conn,
    c: &ConnectSettings,
    greeting_caps: Option<Vec<String>>,
    guard: ReadGuard,
) -> Result<Conn, FetchError> {
    let caps = match greeting_caps {
        Some(caps) => caps,
        None => capabilities(&mut conn).await?,
    };
    if !caps.iter().any(|cap| cap.eq_ignore_ascii_case("STARTTLS")) {
        return Err(FetchError::Unsupported {
            what: format!(
                "STARTTLS at {}:{} (refusing to log in without TLS)",
                c.host, c.port
            ),
        });
    }
    match conn.run("STARTTLS", COMMAND_BUDGET, &mut |_| {}).await {
        Ok(_) => {}
        Err(CmdError::No(text) | CmdError::Bad(text)) => {
            return Err(FetchError::Tls {
                host: c.host.clone(),
                detail: format!("the server refused STARTTLS: {text}"),
            });
        }
        Err(e) => return Err(e.into_fetch("STARTTLS")),
    }
    // Anything the server sent after its OK is dropped with the plain
    // stream's buffer (no injection across the TLS boundary).
    conn.upgrade(|transport| async move {
        let tcp = transport
            .into_plain()
            .ok_or_else(|| FetchError::Protocol("STARTTLS on a TLS stream".into()))?;
        Ok(Transport::tls(
            tls::handshake(&c.target(), tcp).await?,
            guard,
        ))
    })
    .await
}

/// Reads the greeting; the capabilities it carries, if any.
async fn read_greeting(
    conn: &mut Conn,
    c: &ConnectSettings,
) -> Result<Option<Vec<String>>, FetchError> {
    let mut bye = None;
    let read = conn
        .read(&mut bye, |response| match response {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => Ok(match &outcome.code {
                Some(ResponseCode::Capabilities(list)) => {
                    Some(list.iter().map(capability_name).collect())
                }
                _ => None,
            }),
            Response::Data {
                status: Status::PreAuth,
                ..
            } => Err(FetchError::Unsupported {
                what: "a PREAUTH greeting".into(),
            }),
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(FetchError::Connect {
                address: format!("{}:{}", c.host, c.port),
                detail: format!("the server said BYE: {}", outcome_text(outcome)),
            }),
            _ => Err(FetchError::Protocol(
                "the server did not send an IMAP greeting".into(),
            )),
        })
        .await;
    match read {
        Ok(result) => result,
        Err(CmdError::Closed(_)) => Err(FetchError::Io(
            "connection closed before the greeting".into(),
        )),
        Err(CmdError::Io(detail) | CmdError::Limit(detail)) => {
            Err(FetchError::Io(format!("reading the greeting: {detail}")))
        }
        Err(e) => Err(e.into_fetch("the greeting")),
    }
}

#[cfg(test)]
mod tests {
    use super::login_string;

    #[test]
    fn login_strings_are_quoted_and_never_hold_line_breaks() {
        assert_eq!(login_string("pw").as_deref(), Some("\"pw\""));
        assert_eq!(login_string("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(login_string("pässwörd").as_deref(), Some("\"pässwörd\""));
        for bad in ["x\r\nA1 DELETE INBOX", "x\ny", "x\0y"] {
            assert_eq!(login_string(bad), None);
        }
    }
}
