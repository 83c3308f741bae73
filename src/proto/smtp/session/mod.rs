//! The SMTP server session as a sans-IO state machine.
//!
//! The listener owns the socket and TLS; this type owns the protocol. It
//! takes bytes ([`Session::feed`]), produces bytes ([`Session::take_output`])
//! and tells the caller, through [`Event`]s from [`Session::poll`], the few
//! moments it must act: a message to commit, a TLS handshake to run,
//! credentials to check, a connection to close. Keeping it free of I/O
//! makes every protocol decision testable and fuzzable byte by byte, like
//! rustls' core.
//!
//! This file holds the session, its [`State`] and the feed/poll driver (the
//! command-line reader and the limits); each command group has its own file,
//! as in Stalwart's smtp inbound crate: `ehlo.rs` (EHLO/HELO, capabilities),
//! `mail.rs` (MAIL FROM, RCPT TO), `data.rs` (DATA and the data phase),
//! `starttls.rs`, `auth.rs` (AUTH and its SASL exchange, offered only on
//! submission listeners: [`AuthOffer`]), `misc.rs` (RSET, NOOP, QUIT, VRFY,
//! EXPN, HELP).
//!
//! Driving loop (what the listener does):
//!
//! ```text
//! session.greeting();
//! loop {
//!     loop match session.poll(&policy) {
//!         NeedInput          => break,
//!         Message(env, body) => { write(take_output()); commit; session.message_done(reply) }
//!         Oversize(env, info)=> record it (552 already queued)
//!         StartTls           => { write(take_output()); handshake; session.tls_established() }
//!         Authenticate(cred) => { write(take_output()); check cred; session.auth_done(result) }
//!         Close              => { write(take_output()); close; return }
//!     }
//!     write(take_output());
//!     read ≤ 64 KiB (timeout → session.timed_out(), then write + close);
//!     session.feed(bytes);
//! }
//! ```
//!
//! Limits, all enforced here:
//! - a command line is at most `max_line_length` bytes including CRLF; a
//!   longer one is discarded up to its LF and answered `500 5.5.6`;
//! - `max_commands` command lines are processed per session (SASL response
//!   lines count, and obey the same length and line-ending rules); the next
//!   gets `421 4.7.0 too many commands` and the session closes;
//! - `max_errors` is a per-session *total* (not consecutive): every command
//!   answered with a 5xx reply counts — unknown or malformed commands, bad
//!   sequence, too-long lines, recipients refused by policy (which also
//!   throttles address harvesting) and failed authentications (535). When
//!   the total reaches `max_errors`, `421 4.7.0 too many errors` follows the
//!   reply and the session closes.
//!   A 552 for an oversized message body does not count;
//! - message content is capped while streaming (see [`super::data`]).

mod auth;
#[cfg(test)]
mod auth_tests;
mod data;
mod ehlo;
mod mail;
mod misc;
mod starttls;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::Arc;

use memchr::memchr;

use super::command::Command;
pub use super::command::Mechanism;
use super::data::DataDecoder;
pub use super::data::OversizeInfo;
use super::reply::Reply;
pub use crate::mail::BareLf;
pub use auth::{AuthOffer, AuthResult, Credentials};
use mail::Transaction;

/// Per-listener settings, shared by all its sessions.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub hostname: String,
    /// Bytes after dot-unstuffing.
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Command lines, bytes including CRLF.
    pub max_line_length: usize,
    /// Per session; then 421 4.7.0 and Close.
    pub max_commands: usize,
    /// Total 5xx-answered commands per session (not consecutive; see the
    /// module docs); reaching it queues 421 4.7.0 and closes.
    pub max_errors: usize,
    pub bare_lf: BareLf,
    /// Advertise/accept STARTTLS (false on implicit-TLS listeners or without a cert).
    pub starttls_available: bool,
    /// Whether AUTH is offered (and then required before MAIL): `Off` on the
    /// MX, `Required` on submission listeners.
    pub auth: AuthOffer,
}

/// An accepted recipient: the address as sent and the mailbox policy chose.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub address: String,
    pub mailbox: String,
}

/// Everything known about one mail transaction besides its content.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    pub helo: String,
    /// "" for the null reverse-path `<>`.
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    pub declared_size: Option<usize>,
    pub body_8bitmime: bool,
    pub smtputf8: bool,
    /// The transaction happened over TLS.
    pub tls: bool,
    /// The user the session authenticated as before MAIL FROM, if any.
    pub auth_user: Option<String>,
}

/// What the server decides about one RCPT address (pure; the gateway implements it from config).
pub trait RecipientPolicy {
    /// Ok(mailbox name) to accept, or Err(reply) e.g. 550 5.7.1 relaying denied / 550 5.1.1 unknown user.
    fn check_recipient(&self, address: &str) -> Result<String, Reply>;

    /// Called by MAIL FROM after its own checks, with the authenticated user
    /// (None without AUTH): Err(reply) refuses the sender, e.g. 550 5.7.1 for
    /// an address the account may not use. Accepts every sender by default.
    fn check_sender(&self, auth_user: Option<&str>, address: &str) -> Result<(), Reply> {
        let _ = (auth_user, address);
        Ok(())
    }
}

/// What [`Session::poll`] needs the caller to do.
#[derive(Debug)]
pub enum Event {
    /// All buffered input is processed; write `take_output()` and read more.
    NeedInput,
    /// `take_output()` holds "220 2.0.0 Ready to start TLS"; write it, then run
    /// the TLS handshake and call [`Session::tls_established`]. Input buffered
    /// after the STARTTLS line has been discarded and the session is back in
    /// the pre-EHLO state with TLS on.
    StartTls,
    /// A complete message: the dot-unstuffed bytes between the 354 and the
    /// final `.CRLF` (the last line's CRLF included). Commit it, then call
    /// [`Session::message_done`]; until then `poll` processes nothing and
    /// returns `NeedInput`.
    Message(Envelope, Vec<u8>),
    /// The message exceeded `max_message_size`: it was drained to its end and
    /// "552 5.3.4" is already queued; the transaction is reset. Record it and
    /// keep polling.
    Oversize(Envelope, OversizeInfo),
    /// An AUTH exchange delivered complete credentials: check them, then call
    /// [`Session::auth_done`]; until then `poll` processes nothing (pipelined
    /// input stays buffered) and returns `NeedInput`.
    Authenticate(Credentials),
    /// Write `take_output()`, then close the connection. Every later `poll`
    /// returns `Close` again.
    Close,
}

/// Where the session is in the protocol; each phase owns its data, so a
/// transaction cannot outlive its phase (RSET, EHLO and STARTTLS drop it by
/// changing the state).
#[derive(Debug)]
enum State {
    /// Reading commands, no EHLO/HELO yet (after connect and after STARTTLS).
    Connected,
    /// EHLO/HELO accepted, no transaction open.
    Greeted {
        helo: String,
    },
    /// MAIL FROM accepted: collecting recipients (the envelope holds the helo).
    Mail(Transaction),
    /// After 354: input is message content.
    Data {
        envelope: Envelope,
        decoder: DataDecoder,
    },
    /// `Event::Message` was returned; waiting for `message_done`.
    AwaitMessageDone {
        helo: String,
    },
    /// `Event::StartTls` was returned; waiting for `tls_established`.
    AwaitTls,
    /// After AUTH: input lines are SASL responses, not commands.
    Auth(auth::Exchange),
    /// Credentials are complete: `pending` until `poll` hands them out as
    /// `Event::Authenticate`, then waiting for `auth_done`.
    AwaitAuth {
        helo: String,
        user: String,
        pending: Option<Credentials>,
    },
    Closed,
}

impl State {
    /// Reading command lines (as opposed to content or waiting for the caller).
    fn reads_commands(&self) -> bool {
        matches!(
            self,
            State::Connected | State::Greeted { .. } | State::Mail(_)
        )
    }
}

/// One SMTP server session. See the module docs for the driving loop.
/// Its Debug shows how much input is buffered, never the bytes (they may
/// hold a SASL response).
pub struct Session {
    config: Arc<SessionConfig>,
    tls: bool,
    state: State,
    /// Unprocessed input is `input[pos..]`.
    input: Vec<u8>,
    pos: usize,
    /// Bytes of `input[pos..]` known to hold no LF (avoids rescanning).
    scanned: usize,
    /// Discarding the rest of an over-long command line.
    discarding: bool,
    output: Vec<u8>,
    commands: usize,
    errors: usize,
    /// Set by a successful AUTH; reset only by STARTTLS.
    auth_user: Option<String>,
}

/// What [`Session::read_line`] found in the buffered input.
enum Line {
    /// A complete line at this range of `input`, its line ending excluded.
    Complete(Range<usize>),
    /// An over-long line was discarded up to its LF (and counted).
    TooLong,
    /// Nothing to act on: return this event (more input needed, or closed).
    Stop(Event),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("state", &self.state)
            .field("buffered", &self.input.len().saturating_sub(self.pos))
            .field("output_len", &self.output.len())
            .field("commands", &self.commands)
            .field("errors", &self.errors)
            .field("auth_user", &self.auth_user)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, tls: bool) -> Self {
        Self {
            config,
            tls,
            state: State::Connected,
            input: Vec::new(),
            pos: 0,
            scanned: 0,
            discarding: false,
            output: Vec::new(),
            commands: 0,
            errors: 0,
            auth_user: None,
        }
    }

    /// Queue the "220 <hostname> ESMTP mailgate" greeting.
    pub fn greeting(&mut self) {
        let text = format!("{} ESMTP mailgate", self.config.hostname);
        Reply::new(220, None, text).write_to(&mut self.output);
    }

    /// Append bytes read from the client. Read at most 64 KiB at a time and
    /// call `poll` until `NeedInput` before feeding more. In DATA mode the
    /// bytes are decoded straight into the message buffer; after Close, and
    /// between `StartTls` and `tls_established`, input is discarded.
    pub fn feed(&mut self, input: &[u8]) {
        match &self.state {
            State::Closed | State::AwaitTls => {}
            State::Data { .. } if self.pos >= self.input.len() => self.feed_data(input),
            _ => self.input.extend_from_slice(input),
        }
    }

    /// Process buffered input until something needs the caller.
    pub fn poll(&mut self, policy: &dyn RecipientPolicy) -> Event {
        let event = self.run(policy);
        if self.pos > 0 {
            self.input.drain(..self.pos.min(self.input.len()));
            self.pos = 0;
        }
        event
    }

    /// Output bytes to write to the client; drains the internal buffer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes waiting in the output buffer.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Idle timeout: queue "421 4.4.2 <host> idle timeout, closing" and close.
    pub fn timed_out(&mut self) {
        let text = format!("{} idle timeout, closing", self.config.hostname);
        self.close_with(Reply::new(421, Some((4, 4, 2)), text));
    }

    /// A request too slow for the minimum data rate: queue "421 4.4.2" and close.
    pub fn too_slow(&mut self) {
        let text = format!("{} request too slow, closing", self.config.hostname);
        self.close_with(Reply::new(421, Some((4, 4, 2)), text));
    }

    /// A request is partly received: a command or SASL line without its
    /// end yet, or message content. The I/O layer bounds how long one takes.
    pub fn mid_request(&self) -> bool {
        matches!(self.state, State::Data { .. }) || self.pos < self.input.len()
    }

    /// Server shutting down: queue "421 4.3.2" and close.
    pub fn shutting_down(&mut self) {
        let text = format!("{} service shutting down, closing", self.config.hostname);
        self.close_with(Reply::new(421, Some((4, 3, 2)), text));
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The user a successful AUTH authenticated, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// A mail transaction is open (MAIL accepted, or DATA being received):
    /// a message may soon be handed over. Used to batch store commits.
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Mail(_) | State::Data { .. })
    }

    /// The HELO/EHLO name of the current phase, if one was given.
    fn helo(&self) -> Option<&str> {
        match &self.state {
            State::Greeted { helo }
            | State::AwaitMessageDone { helo }
            | State::AwaitAuth { helo, .. } => Some(helo),
            State::Auth(exchange) => Some(exchange.helo()),
            State::Mail(tx) => Some(&tx.envelope.helo),
            State::Data { envelope, .. } => Some(&envelope.helo),
            State::Connected | State::AwaitTls | State::Closed => None,
        }
    }

    /// Leaves the transaction (if any) and goes back to the greeted state,
    /// or to `Connected` when there was no EHLO/HELO.
    fn end_transaction(&mut self) {
        self.state = match self.helo() {
            Some(helo) => State::Greeted {
                helo: helo.to_owned(),
            },
            None => State::Connected,
        };
    }

    fn close_with(&mut self, reply: Reply) {
        if !matches!(self.state, State::Closed) {
            reply.write_to(&mut self.output);
            self.state = State::Closed;
        }
    }

    fn run(&mut self, policy: &dyn RecipientPolicy) -> Event {
        loop {
            match &mut self.state {
                State::Closed => return Event::Close,
                State::AwaitMessageDone { .. } | State::AwaitTls => return Event::NeedInput,
                State::AwaitAuth { pending, .. } => {
                    return pending.take().map_or(Event::NeedInput, Event::Authenticate);
                }
                State::Auth(_) => {
                    if let Some(event) = self.next_sasl_line() {
                        return event;
                    }
                }
                State::Data { .. } => {
                    if let Some(event) = self.run_data() {
                        return event;
                    }
                }
                State::Connected | State::Greeted { .. } | State::Mail(_) => {
                    if let Some(event) = self.next_command(policy) {
                        return event;
                    }
                }
            }
        }
    }

    /// Extracts and executes the next complete command line, if any.
    /// Returns an event when the caller must act, `None` to keep going.
    fn next_command(&mut self, policy: &dyn RecipientPolicy) -> Option<Event> {
        let range = match self.read_line() {
            Line::Complete(range) => range,
            Line::TooLong => {
                self.line_too_long();
                return None;
            }
            Line::Stop(event) => return Some(event),
        };
        let input = std::mem::take(&mut self.input);
        let line = input.get(range).unwrap_or_default();
        let reply = match Command::parse(line) {
            Ok(command) => self.execute(command, policy),
            Err(reply) => Some(reply),
        };
        self.input = input;
        if let Some(reply) = reply {
            self.respond(reply);
        }
        match self.state {
            State::Closed => Some(Event::Close),
            State::AwaitTls => {
                // Pipelined plaintext after STARTTLS must never be acted on.
                self.input.clear();
                self.pos = 0;
                Some(Event::StartTls)
            }
            _ => None,
        }
    }

    /// Takes the next line (command or SASL response) off the input,
    /// enforcing the line-length cap, the command count and the bare-LF
    /// policy.
    fn read_line(&mut self) -> Line {
        let buf = self.input.get(self.pos..).unwrap_or_default();
        if self.discarding {
            let Some(lf) = memchr(b'\n', buf) else {
                self.pos = self.input.len();
                return Line::Stop(Event::NeedInput);
            };
            self.pos += lf + 1;
            self.discarding = false;
            if !self.count_command() {
                return Line::Stop(Event::Close);
            }
            return Line::TooLong;
        }
        let from = self.scanned.min(buf.len());
        let Some(lf) = buf
            .get(from..)
            .and_then(|b| memchr(b'\n', b))
            .map(|p| p + from)
        else {
            self.scanned = buf.len();
            if buf.len() >= self.config.max_line_length {
                // Cannot fit any more: drop it and skip to its end.
                self.discarding = true;
                self.pos = self.input.len();
                self.scanned = 0;
            }
            return Line::Stop(Event::NeedInput);
        };
        let crlf = lf > 0 && buf.get(lf - 1) == Some(&b'\r');
        let start = self.pos;
        self.pos += lf + 1;
        self.scanned = 0;
        if !self.count_command() {
            return Line::Stop(Event::Close);
        }
        if lf + 1 > self.config.max_line_length {
            return Line::TooLong;
        }
        if !crlf && self.config.bare_lf == BareLf::Reject {
            self.bare_lf_close();
            return Line::Stop(Event::Close);
        }
        let end = start + if crlf { lf - 1 } else { lf };
        Line::Complete(start..end)
    }

    /// Counts one command line; false (with 421 queued, closed) over the cap.
    fn count_command(&mut self) -> bool {
        if self.commands >= self.config.max_commands {
            self.close_with(Reply::new(421, Some((4, 7, 0)), "Error: too many commands"));
            return false;
        }
        self.commands += 1;
        true
    }

    fn line_too_long(&mut self) {
        self.respond(Reply::new(500, Some((5, 5, 6)), "Error: line too long"));
    }

    fn bare_lf_close(&mut self) {
        let text = format!("{} Error: bare <LF> received", self.config.hostname);
        self.close_with(Reply::new(521, Some((5, 5, 2)), text));
    }

    /// Queues a command reply, counting 5xx replies toward `max_errors`.
    fn respond(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        if reply.is_permanent_failure() {
            self.errors += 1;
            if self.errors >= self.config.max_errors {
                self.close_with(Reply::new(421, Some((4, 7, 0)), "Error: too many errors"));
            }
        }
    }

    /// Dispatches a parsed command to its group's file; returns its reply
    /// (state changes happen there), None when AUTH has queued a challenge
    /// or has credentials for the caller instead.
    fn execute(&mut self, command: Command, policy: &dyn RecipientPolicy) -> Option<Reply> {
        debug_assert!(self.state.reads_commands());
        let reply = match command {
            Command::Ehlo(name) => self.ehlo(name),
            Command::Helo(name) => self.helo_command(name),
            Command::Mail(mail) => self.mail(mail, policy),
            Command::Rcpt(path) => self.rcpt(path.address, path.utf8, policy),
            Command::Data => self.data(),
            Command::Rset => self.rset(),
            Command::Noop => self.noop(),
            Command::Quit => self.quit(),
            Command::Vrfy => self.vrfy(),
            Command::Expn => self.expn(),
            Command::Help => self.help(),
            Command::StartTls => self.starttls(),
            Command::Auth(start) => return self.auth(start),
        };
        Some(reply)
    }
}
