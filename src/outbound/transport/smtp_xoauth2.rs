//! SMTP AUTH XOAUTH2 with the relay (RFC 4954 framing, Google's and
//! Microsoft's XOAUTH2 message): the initial response on the AUTH line when
//! the line stays within the 512 bytes RFC 5321 allows a command, else
//! after the relay's empty `334` (a long Microsoft token; Postfix takes a
//! long response there, `smtpd_sasl_response_limit`, but not a long command
//! line). A refused token (`535`, or the `334` error challenge answered
//! with an empty line, then `535`) is reported to the token source and tried
//! once more with a fresh one.
//!
//! mail-send's own XOAUTH2 answers the error challenge with the token
//! again (three times); this exchange uses only its line I/O (`cmd`), which
//! logs nothing. The token is in no error or log line: only the relay's
//! replies are.

use mail_send::SmtpClient;
use smtp_proto::{AUTH_XOAUTH2, EXT_AUTH, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use super::smtp::{from_mail_send, reply_line};
use super::{FailureKind, SendError, Step};
use crate::mail::xoauth2::{challenge_text, initial_response};
use crate::mail::{AccessTokens, Secret};

/// RFC 5321 4.5.3.1.4: a command line, CRLF included.
const COMMAND_LINE_MAX: usize = 512;

/// How one AUTH XOAUTH2 ended, when it can be tried again.
enum Attempt {
    Accepted,
    /// The relay's final reply (with its error challenge, if any).
    Refused(String),
}

/// Logs in as `user` with a token from `tokens`, one retry with a fresh
/// token after a refusal.
pub(super) async fn login<T>(
    c: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    user: &str,
    tokens: &dyn AccessTokens,
) -> Result<(), SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if !ehlo.has_capability(EXT_AUTH) || ehlo.auth_mechanisms & AUTH_XOAUTH2 == 0 {
        return Err(SendError::temporary(
            FailureKind::Auth,
            "the relay does not offer AUTH XOAUTH2, which relay.auth = \"oauth2\" needs",
        ));
    }
    let mut last = String::new();
    for round in 0..2 {
        let token = tokens.token().await.map_err(|e| {
            SendError::temporary(
                FailureKind::Auth,
                format!("no access token for the relay: {e}"),
            )
        })?;
        match attempt(c, user, &token).await? {
            Attempt::Accepted => return Ok(()),
            Attempt::Refused(reply) => {
                tokens.refused(&token);
                tracing::debug!(user, round, reply = %reply, "relay refused the XOAUTH2 token");
                last = reply;
            }
        }
    }
    Err(SendError::temporary(
        FailureKind::Auth,
        format!("authentication failed: the relay refused a fresh access token too: {last}"),
    ))
}

async fn attempt<T>(c: &mut SmtpClient<T>, user: &str, token: &Secret) -> Result<Attempt, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let message = initial_response(user, token)
        .map_err(|e| SendError::temporary(FailureKind::Auth, e.to_string()))?;
    let inline = "AUTH XOAUTH2 ".len() + message.expose().len() + 2 <= COMMAND_LINE_MAX;
    let mut reply = if inline {
        cmd(
            c,
            format!("AUTH XOAUTH2 {}\r\n", message.expose()).into_bytes(),
        )
        .await?
    } else {
        let first = cmd(c, b"AUTH XOAUTH2\r\n".to_vec()).await?;
        if first.code != 334 {
            return final_reply(first, None);
        }
        cmd(c, format!("{}\r\n", message.expose()).into_bytes()).await?
    };
    let mut challenge = None;
    if reply.code == 334 {
        // The error challenge: the relay wants an empty line, then says 535.
        challenge = Some(challenge_text(&reply.message));
        reply = cmd(c, b"\r\n".to_vec()).await?;
    }
    final_reply(reply, challenge)
}

fn final_reply(reply: Response<String>, challenge: Option<String>) -> Result<Attempt, SendError> {
    let mut line = reply_line(&reply);
    if let Some(c) = challenge.filter(|c| !c.is_empty()) {
        line = format!("{line} ({c})");
    }
    match reply.code {
        235 => Ok(Attempt::Accepted),
        // 535 credentials invalid; 334 again would be a second challenge.
        535 | 334 => Ok(Attempt::Refused(line)),
        // 454 and the like: not the token's fault; the mail stays queued.
        _ => Err(SendError::temporary(
            FailureKind::Auth,
            format!("authentication failed: {line}"),
        )),
    }
}

/// One line to the relay, its reply back (within the command timeout).
async fn cmd<T>(c: &mut SmtpClient<T>, line: Vec<u8>) -> Result<Response<String>, SendError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    c.cmd(&line)
        .await
        .map_err(|e| from_mail_send(Step::Auth, e))
}
