//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, for
//! submission listeners. The session only runs the exchange: it decodes the
//! client's SASL responses into [`Credentials`] and hands them to the caller
//! ([`super::Event::Authenticate`]), which checks them and answers with an
//! [`AuthResult`]. Whether a password is right, and any delay or lockout,
//! are the caller's business; this file keeps the wire rules.
//!
//! SASL response lines are read by the command-line reader (same length
//! cap, line-ending rules and command count) but are never parsed as
//! commands, echoed or kept beyond the credentials they decode to.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Event, Line, Session, State};
use crate::mail::Secret;
use crate::proto::smtp::command::{AuthStart, Mechanism};
use crate::proto::smtp::reply::Reply;

/// Whether a listener offers AUTH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOffer {
    /// The MX: AUTH is not advertised and answered 502 5.5.1.
    Off,
    /// Submission: AUTH PLAIN/LOGIN are offered under TLS only, and MAIL
    /// FROM needs a successful AUTH first (530 5.7.0).
    Required,
}

/// What a client presented; the password is a [`Secret`] (Debug redacts it).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: Secret,
}

/// The caller's verdict on [`Credentials`], for [`Session::auth_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// 235 2.7.0; the session remembers the user.
    Accepted,
    /// 535 5.7.8, the same text whatever was wrong (counts as an error).
    Rejected,
    /// 454 4.7.0: the check itself failed; the client may retry.
    TemporaryFailure,
    /// 421 4.7.0 too many failed authentications, then Close.
    Blocked,
}

/// An exchange in progress, owned by [`State::Auth`].
#[derive(Debug)]
pub(super) struct Exchange {
    helo: String,
    step: Step,
}

impl Exchange {
    pub(super) fn helo(&self) -> &str {
        &self.helo
    }
}

/// Which response the server waits for.
#[derive(Debug)]
enum Step {
    /// The PLAIN message after an empty `334 `.
    Plain,
    /// LOGIN's user name after `334 VXNlcm5hbWU6` ("Username:").
    LoginUser,
    /// LOGIN's password after `334 UGFzc3dvcmQ6` ("Password:").
    LoginPassword { user: String },
}

const USERNAME_PROMPT: &[u8] = b"334 VXNlcm5hbWU6\r\n";
const PASSWORD_PROMPT: &[u8] = b"334 UGFzc3dvcmQ6\r\n";
/// RFC 4954 requires the space even with nothing after it.
const EMPTY_CHALLENGE: &[u8] = b"334 \r\n";

impl Session {
    /// AUTH: checks it is allowed now, then starts the exchange. None when a
    /// challenge was queued or credentials await the caller.
    pub(super) fn auth(&mut self, start: Result<AuthStart, Reply>) -> Option<Reply> {
        use super::AuthOffer;
        if self.config.auth == AuthOffer::Off {
            return Some(Reply::new(
                502,
                Some((5, 5, 1)),
                "Error: authentication not available",
            ));
        }
        if !self.tls {
            return Some(Reply::new(
                538,
                Some((5, 7, 11)),
                "Encryption required for requested authentication mechanism",
            ));
        }
        let helo = match &self.state {
            State::Greeted { helo } => helo.clone(),
            State::Mail(_) => {
                let text = "Error: AUTH not allowed during a mail transaction";
                return Some(Reply::new(503, Some((5, 5, 1)), text));
            }
            _ => return Some(Reply::new(503, Some((5, 5, 1)), "Error: send EHLO first")),
        };
        if self.auth_user.is_some() {
            return Some(Reply::new(
                503,
                Some((5, 5, 1)),
                "Error: already authenticated",
            ));
        }
        let start = match start {
            Ok(start) => start,
            Err(reply) => return Some(reply),
        };
        // "=" is an empty initial response (RFC 4954 section 4).
        let initial = start
            .initial_response
            .map(|r| if r == b"=" { Vec::new() } else { r });
        match (start.mechanism, initial) {
            (Mechanism::Plain, None) => self.challenge(helo, Step::Plain, EMPTY_CHALLENGE),
            (Mechanism::Plain, Some(response)) => self.plain(helo, &response),
            (Mechanism::Login, None) => self.challenge(helo, Step::LoginUser, USERNAME_PROMPT),
            (Mechanism::Login, Some(response)) => self.login_user(helo, &response),
        }
    }

    /// After `Event::Authenticate`: queue the reply for the caller's verdict
    /// and read commands again (or close, for `Blocked`). Ignored in any
    /// other state.
    pub fn auth_done(&mut self, result: AuthResult) {
        let State::AwaitAuth { helo, user, .. } = &mut self.state else {
            return;
        };
        let (helo, user) = (std::mem::take(helo), std::mem::take(user));
        self.state = State::Greeted { helo };
        match result {
            AuthResult::Accepted => {
                self.auth_user = Some(user);
                self.respond(Reply::new(
                    235,
                    Some((2, 7, 0)),
                    "Authentication successful",
                ));
            }
            AuthResult::Rejected => self.respond(invalid_credentials()),
            AuthResult::TemporaryFailure => self.respond(Reply::new(
                454,
                Some((4, 7, 0)),
                "Temporary authentication failure",
            )),
            AuthResult::Blocked => self.close_with(Reply::new(
                421,
                Some((4, 7, 0)),
                "Too many failed authentications, try later",
            )),
        }
    }

    /// Reads one SASL response line in [`State::Auth`] and acts on it.
    pub(super) fn next_sasl_line(&mut self) -> Option<Event> {
        let range = match self.read_line() {
            Line::Complete(range) => range,
            Line::TooLong => {
                self.end_transaction();
                self.line_too_long();
                return None;
            }
            Line::Stop(event) => return Some(event),
        };
        let input = std::mem::take(&mut self.input);
        let line = input.get(range).unwrap_or_default().trim_ascii();
        let reply = self.sasl_response(line);
        self.input = input;
        if let Some(reply) = reply {
            self.respond(reply);
        }
        matches!(self.state, State::Closed).then_some(Event::Close)
    }

    fn sasl_response(&mut self, line: &[u8]) -> Option<Reply> {
        let State::Auth(Exchange { helo, step }) =
            std::mem::replace(&mut self.state, State::Closed)
        else {
            return None;
        };
        // Whatever happens next, this exchange step is over.
        self.state = State::Greeted { helo: helo.clone() };
        if line == b"*" {
            return Some(Reply::new(501, Some((5, 0, 0)), "Authentication cancelled"));
        }
        match step {
            Step::Plain => self.plain(helo, line),
            Step::LoginUser => self.login_user(helo, line),
            Step::LoginPassword { user } => match decode_field(line) {
                Ok(password) => self.credentials(helo, Mechanism::Login, user, password),
                Err(reply) => Some(reply),
            },
        }
    }

    /// A PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
    fn plain(&mut self, helo: String, response: &[u8]) -> Option<Reply> {
        let decoded = match decode(response) {
            Ok(decoded) => decoded,
            Err(reply) => return Some(reply),
        };
        let mut fields = decoded.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Some(malformed());
        };
        if authcid.is_empty() || passwd.is_empty() {
            return Some(malformed());
        }
        let (Ok(user), Ok(password)) = (
            String::from_utf8(authcid.to_vec()),
            String::from_utf8(passwd.to_vec()),
        ) else {
            return Some(malformed());
        };
        // Acting for another identity is not offered: fail as a wrong
        // password would, without saying why.
        if !authzid.is_empty() && authzid != authcid {
            return Some(invalid_credentials());
        }
        self.credentials(helo, Mechanism::Plain, user, password)
    }

    /// LOGIN's user name (a response, or AUTH LOGIN's initial response).
    fn login_user(&mut self, helo: String, response: &[u8]) -> Option<Reply> {
        match decode_field(response) {
            Ok(user) => self.challenge(helo, Step::LoginPassword { user }, PASSWORD_PROMPT),
            Err(reply) => Some(reply),
        }
    }

    /// Queues a `334` challenge and waits for the response line.
    fn challenge(&mut self, helo: String, step: Step, prompt: &[u8]) -> Option<Reply> {
        self.output.extend_from_slice(prompt);
        self.state = State::Auth(Exchange { helo, step });
        None
    }

    /// Credentials are complete: the next `poll` hands them out.
    fn credentials(
        &mut self,
        helo: String,
        mechanism: Mechanism,
        user: String,
        password: String,
    ) -> Option<Reply> {
        let credentials = Credentials {
            mechanism,
            user: user.clone(),
            password: Secret::new(password),
        };
        self.state = State::AwaitAuth {
            helo,
            user,
            pending: Some(credentials),
        };
        None
    }
}

fn decode(response: &[u8]) -> Result<Vec<u8>, Reply> {
    STANDARD.decode(response).map_err(|_| {
        Reply::new(
            501,
            Some((5, 5, 2)),
            "Error: invalid base64 in authentication response",
        )
    })
}

/// One LOGIN field: base64 of UTF-8 text without NUL.
fn decode_field(response: &[u8]) -> Result<String, Reply> {
    let decoded = decode(response)?;
    if decoded.contains(&0) {
        return Err(malformed());
    }
    String::from_utf8(decoded).map_err(|_| malformed())
}

fn malformed() -> Reply {
    Reply::new(
        501,
        Some((5, 5, 2)),
        "Error: malformed authentication response",
    )
}

fn invalid_credentials() -> Reply {
    Reply::new(535, Some((5, 7, 8)), "Authentication credentials invalid")
}
