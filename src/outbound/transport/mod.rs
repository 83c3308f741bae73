//! How a composed message leaves the gateway: a [`Transport`] takes an
//! envelope and the message bytes and hands them to the organisation's
//! relay ([`smtp`] today; Graph or Gmail senders later), and says what
//! happened in terms the send worker acts on:
//!
//! - `Ok(Delivery)`: the relay took the message (its final reply, e.g.
//!   `250 2.0.0 Ok: queued as ABC`) for every recipient in
//!   [`Delivery::accepted`]. Recipients the relay refused while it
//!   accepted others are listed in [`Delivery::refused`], each with its own
//!   class: the message was sent to the accepted ones only, and the worker
//!   fails (5xx) or retries (4xx) just the refused ones.
//! - `Err(SendError::Temporary)`: nothing was sent; try again later (a 4xx
//!   reply, connection refused or reset, a timeout, TLS or AUTH failing,
//!   no STARTTLS where it is required). AUTH failures and "530 auth
//!   required" are temporary on purpose: a wrong relay password is the
//!   gateway's problem, not the message's, and the mail stays queued.
//! - `Err(SendError::Permanent)`: the relay refused the message for good
//!   (a 5xx reply to MAIL, RCPT or DATA): fail it with the relay's reply.
//!   When every recipient was refused, the error is permanent only if
//!   every refusal was a 5xx; one 4xx among them makes it temporary.

use std::future::Future;
use std::pin::Pin;

mod bearer;
pub mod gmail;
pub mod graph;
pub mod smtp;
mod smtp_xoauth2;

/// Who the message is from and to, as given to MAIL FROM and RCPT TO
/// (addresses without `<>`; an empty `from` is the null sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<String>,
}

/// What the relay accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The relay's reply to the end of the message, one line.
    pub reply: String,
    /// The recipients the message went to.
    pub accepted: Vec<String>,
    /// The recipients it did not go to, and why.
    pub refused: Vec<Refused>,
}

/// One recipient the relay refused while accepting others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub recipient: String,
    pub error: SendError,
}

/// What went wrong, for `FAILED (kind)` and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The relay's name does not resolve.
    Dns,
    /// No connection, or it was lost; a greeting other than 220.
    Connect,
    /// Handshake or certificate failure; STARTTLS required but not offered.
    Tls,
    /// Login refused, no usable mechanism, or AUTH required but not configured.
    Auth,
    /// The relay answered MAIL, RCPT or DATA with an error reply.
    Refused,
    /// A step took longer than its timeout.
    Timeout,
    /// A reply we cannot read, or one that makes no sense where it came.
    Protocol,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Dns => "dns",
            FailureKind::Connect => "connect",
            FailureKind::Tls => "tls",
            FailureKind::Auth => "auth",
            FailureKind::Refused => "refused",
            FailureKind::Timeout => "timeout",
            FailureKind::Protocol => "protocol",
        }
    }
}

/// Why a message (or one recipient) was not sent. Never carries a secret:
/// reasons are built from replies and our own words only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Keep the message queued and try again later.
    #[error("{reason}")]
    Temporary { kind: FailureKind, reason: String },
    /// The relay refused it for good; `reply` is the relay's reply line.
    #[error("{reply}")]
    Permanent { reply: String },
}

impl SendError {
    pub fn kind(&self) -> FailureKind {
        match self {
            SendError::Temporary { kind, .. } => *kind,
            SendError::Permanent { .. } => FailureKind::Refused,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent { .. })
    }

    pub(crate) fn temporary(kind: FailureKind, reason: impl Into<String>) -> SendError {
        SendError::Temporary {
            kind,
            reason: reason.into(),
        }
    }
}

/// The step of a session a reply or failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Greeting => "the greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
        }
    }
}

/// What an error reply (`code` >= 400, `text` the whole reply line) to
/// `step` means for the message.
pub fn classify_reply(step: Step, code: u16, text: &str) -> SendError {
    let text = text.to_string();
    match step {
        Step::MailFrom | Step::RcptTo | Step::Data => {
            if code == 530 {
                // RFC 4954 "authentication required": our config, not the message.
                SendError::temporary(
                    FailureKind::Auth,
                    format!("the relay requires AUTH (set relay.user and its password): {text}"),
                )
            } else if (500..600).contains(&code) {
                SendError::Permanent { reply: text }
            } else {
                SendError::temporary(FailureKind::Refused, text)
            }
        }
        Step::Connect | Step::Greeting => SendError::temporary(
            FailureKind::Connect,
            format!("the relay refused the session: {text}"),
        ),
        Step::Ehlo => SendError::temporary(
            FailureKind::Protocol,
            format!("the relay refused EHLO: {text}"),
        ),
        Step::StartTls => SendError::temporary(
            FailureKind::Tls,
            format!("the relay refused STARTTLS: {text}"),
        ),
        Step::Auth => {
            SendError::temporary(FailureKind::Auth, format!("authentication failed: {text}"))
        }
    }
}

/// When no recipient was accepted: the whole message's outcome.
pub fn all_refused(refused: &[Refused]) -> SendError {
    let text = match refused {
        [only] => only.error.to_string(),
        many => many
            .iter()
            .map(|r| format!("{}: {}", r.recipient, r.error))
            .collect::<Vec<_>>()
            .join("; "),
    };
    if refused.iter().all(|r| r.error.is_permanent()) && !refused.is_empty() {
        SendError::Permanent { reply: text }
    } else {
        let kind = refused
            .iter()
            .map(|r| r.error.kind())
            .find(|k| *k != FailureKind::Refused)
            .unwrap_or(FailureKind::Refused);
        SendError::temporary(kind, text)
    }
}

/// The future a [`Transport`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, SendError>> + Send + 'a>>;

/// Something that hands messages to a relay. Object-safe, so the worker can
/// hold an `Arc<dyn Transport>` whatever the relay is.
pub trait Transport: Send + Sync {
    /// Sends `message` (RFC 5322 bytes, CRLF line ends) to the envelope's
    /// recipients. Each call is one session: connect, TLS, AUTH, MAIL,
    /// RCPT..., DATA, QUIT.
    fn send<'a>(&'a self, envelope: &'a Envelope, message: &'a [u8]) -> SendFuture<'a>;

    /// Where messages go, for logs (`smtp 127.0.0.1:587 starttls`).
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(recipient: &str, error: SendError) -> Refused {
        Refused {
            recipient: recipient.into(),
            error,
        }
    }

    #[test]
    fn replies_to_the_message_steps() {
        let e = classify_reply(
            Step::RcptTo,
            550,
            "550 5.1.1 <x@a.test>: Recipient address rejected",
        );
        assert_eq!(
            e,
            SendError::Permanent {
                reply: "550 5.1.1 <x@a.test>: Recipient address rejected".into()
            }
        );
        assert_eq!(e.kind(), FailureKind::Refused);
        for step in [Step::MailFrom, Step::Data] {
            assert!(classify_reply(step, 554, "554 5.7.1 no").is_permanent());
            let t = classify_reply(step, 451, "451 4.3.0 try later");
            assert_eq!(
                t,
                SendError::Temporary {
                    kind: FailureKind::Refused,
                    reason: "451 4.3.0 try later".into()
                }
            );
        }
        let t = classify_reply(Step::RcptTo, 450, "450 4.2.0 greylisted");
        assert!(!t.is_permanent());
        assert_eq!(t.to_string(), "450 4.2.0 greylisted");
        // "Authentication required" is our config, never the message's fault.
        let t = classify_reply(Step::MailFrom, 530, "530 5.7.0 Authentication required");
        assert_eq!(t.kind(), FailureKind::Auth);
        assert!(!t.is_permanent());
        assert!(t.to_string().contains("530 5.7.0"), "{t}");
    }

    #[test]
    fn replies_to_the_session_steps_are_temporary() {
        for (step, kind) in [
            (Step::Greeting, FailureKind::Connect),
            (Step::Ehlo, FailureKind::Protocol),
            (Step::StartTls, FailureKind::Tls),
            (Step::Auth, FailureKind::Auth),
        ] {
            let e = classify_reply(step, 535, "535 5.7.8 Error: authentication failed");
            assert_eq!(e.kind(), kind, "{step:?}");
            assert!(!e.is_permanent(), "{step:?}");
            assert!(e.to_string().contains("535 5.7.8"), "{e}");
        }
    }

    #[test]
    fn all_refused_is_permanent_only_when_every_refusal_is() {
        let p = |r: &str| SendError::Permanent { reply: r.into() };
        let t = |r: &str| SendError::temporary(FailureKind::Refused, r);
        let one = all_refused(&[refused("a@x.test", p("550 5.1.1 no such user"))]);
        assert_eq!(one, p("550 5.1.1 no such user"));
        let two = all_refused(&[
            refused("a@x.test", p("550 5.1.1 no")),
            refused("b@x.test", p("553 5.1.3 bad")),
        ]);
        assert_eq!(two, p("a@x.test: 550 5.1.1 no; b@x.test: 553 5.1.3 bad"));
        let mixed = all_refused(&[
            refused("a@x.test", p("550 5.1.1 no")),
            refused("b@x.test", t("450 4.2.0 later")),
        ]);
        assert!(!mixed.is_permanent());
        assert_eq!(mixed.kind(), FailureKind::Refused);
        assert!(mixed.to_string().contains("b@x.test: 450 4.2.0 later"));
        assert!(!all_refused(&[]).is_permanent());
    }
}

/// Counts token requests, and has none: an API transport that refuses a
/// message before any request asks for no token.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct CountingTokens(pub std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl crate::mail::AccessTokens for CountingTokens {
    fn token(&self) -> crate::mail::access_token::TokenFuture<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { Err(crate::mail::TokenError::Unavailable("test".into())) })
    }
    fn refused(&self, _: &crate::mail::Secret) {}
}
