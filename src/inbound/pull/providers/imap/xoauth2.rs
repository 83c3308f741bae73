//! IMAP login with an OAuth2 access token: `AUTHENTICATE XOAUTH2`, with the
//! initial response on the command line when the server has SASL-IR, else
//! after its `+` continuation. A refused token (the server's `+` error
//! challenge, answered with an empty line, then `NO`) is reported to the
//! token source and tried once more with a fresh token: a token that
//! expired between the cache and the server is not a login failure.
//!
//! The token and the base64 message go to the socket only (through
//! [`Conn`], which logs nothing it writes); errors carry the server's text.

use async_imap::imap_proto::{Response, Status};
use tokio::time::timeout;

use super::COMMAND_BUDGET;
use super::command::{CmdError, Conn, outcome_text};
use crate::inbound::pull::upstream::{ConnectSettings, FetchError};
use crate::mail::xoauth2::{challenge_text, initial_response};
use crate::mail::{AccessTokens, Secret};

/// How one AUTHENTICATE ended, when the session is still usable.
enum Attempt {
    Ok,
    /// `NO`/`BAD`: the server's text (and its error challenge, if any).
    Refused(String),
}

/// Logs in as `c.user` with a token from `tokens`; `caps` are the
/// capabilities of this (TLS) session.
pub(super) async fn login(
    conn: &mut Conn,
    c: &ConnectSettings,
    tokens: &dyn AccessTokens,
    caps: &[String],
) -> Result<(), FetchError> {
    let has = |name: &str| caps.iter().any(|cap| cap.eq_ignore_ascii_case(name));
    if !has("AUTH=XOAUTH2") {
        return Err(FetchError::Unsupported {
            what: format!(
                "OAuth2 login (XOAUTH2) at {}:{}: the server does not announce AUTH=XOAUTH2",
                c.host, c.port
            ),
        });
    }
    let sasl_ir = has("SASL-IR");
    let mut last = String::new();
    for round in 0..2 {
        let token = tokens
            .token()
            .await
            .map_err(|e| FetchError::token(&c.user, e))?;
        match authenticate(conn, &c.user, &token, sasl_ir).await? {
            Attempt::Ok => return Ok(()),
            Attempt::Refused(text) => {
                tokens.refused(&token);
                tracing::debug!(
                    host = %c.host,
                    user = %c.user,
                    round,
                    reply = %text,
                    "IMAP XOAUTH2 refused the access token"
                );
                last = text;
            }
        }
    }
    Err(FetchError::Auth {
        user: c.user.clone(),
        detail: format!("XOAUTH2 refused a fresh access token too: {last}"),
    })
}

/// One `AUTHENTICATE XOAUTH2` within the command timeout.
async fn authenticate(
    conn: &mut Conn,
    user: &str,
    token: &Secret,
    sasl_ir: bool,
) -> Result<Attempt, FetchError> {
    let message = initial_response(user, token).map_err(|e| FetchError::Auth {
        user: user.to_string(),
        detail: e.to_string(),
    })?;
    if conn.broken() {
        return Err(CmdError::Unusable.into_fetch("AUTHENTICATE"));
    }
    conn.set_budget(COMMAND_BUDGET);
    let limit = conn.command_timeout();
    let result = timeout(limit, exchange(conn, &message, sasl_ir)).await;
    match conn.settle(result) {
        Ok(()) => Ok(Attempt::Ok),
        Err(CmdError::No(text) | CmdError::Bad(text)) => Ok(Attempt::Refused(text)),
        Err(e) => Err(e.into_fetch("AUTHENTICATE XOAUTH2")),
    }
}

/// What the server sent next.
enum Step {
    Continue(String),
    Done(Result<(), CmdError>),
}

async fn exchange(conn: &mut Conn, message: &Secret, sasl_ir: bool) -> Result<(), CmdError> {
    let tag = if sasl_ir {
        // Written to the socket only: `start` logs nothing.
        conn.start(&format!("AUTHENTICATE XOAUTH2 {}", message.expose()))
            .await?
    } else {
        let tag = conn.start("AUTHENTICATE XOAUTH2").await?;
        match next(conn, &tag).await? {
            Step::Continue(_) => conn.send_line(message.expose()).await?,
            Step::Done(result) => {
                return result.and(Err(CmdError::Bad(
                    "the server ended AUTHENTICATE before taking the token".into(),
                )));
            }
        }
        tag
    };
    let mut challenge = None;
    loop {
        match next(conn, &tag).await? {
            // The error challenge: answered with an empty line (RFC 7628
            // 3.2.3, as XOAUTH2 servers expect); a second one is a fault.
            Step::Continue(text) if challenge.is_none() => {
                challenge = Some(challenge_text(&text));
                conn.send_line("").await?;
            }
            Step::Continue(_) => {
                conn.send_line("*").await?;
            }
            Step::Done(Ok(())) => return Ok(()),
            Step::Done(Err(CmdError::No(text))) => {
                return Err(CmdError::No(with_challenge(text, challenge)));
            }
            Step::Done(Err(CmdError::Bad(text))) => {
                return Err(CmdError::Bad(with_challenge(text, challenge)));
            }
            Step::Done(Err(e)) => return Err(e),
        }
    }
}

fn with_challenge(text: String, challenge: Option<String>) -> String {
    match challenge {
        Some(c) if !c.is_empty() => format!("{text} ({c})"),
        _ => text,
    }
}

/// Reads responses up to a continuation or the tagged status of `tag`.
async fn next(conn: &mut Conn, tag: &str) -> Result<Step, CmdError> {
    let mut bye = None;
    loop {
        let step = conn
            .read(&mut bye, |response| match response {
                Response::Continue(outcome) => Some(Step::Continue(
                    outcome.information.as_deref().unwrap_or("").to_string(),
                )),
                Response::Done {
                    tag: t,
                    status,
                    outcome,
                } if t.0 == tag => Some(Step::Done(match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(CmdError::No(outcome_text(outcome))),
                    _ => Err(CmdError::Bad(outcome_text(outcome))),
                })),
                _ => None,
            })
            .await?;
        if let Some(step) = step {
            return Ok(step);
        }
    }
}
