//! The SMTP server session as a sans-IO state machine.
//!
//! The listener owns the socket and TLS; this type owns the protocol. It
//! takes bytes ([`Session::feed`]), produces bytes ([`Session::take_output`])
//! and tells the caller, through [`Event`]s from [`Session::poll`], the few
//! moments it must act: a message to commit, a TLS handshake to run, a
//! connection to close. Keeping it free of I/O makes every protocol decision
//! testable and fuzzable byte by byte, like rustls' core.
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
//! - `max_commands` command lines are processed per session; the next gets
//!   `421 4.7.0 too many commands` and the session closes;
//! - `max_errors` is a per-session *total* (not consecutive): every command
//!   answered with a 5xx reply counts — unknown or malformed commands, bad
//!   sequence, too-long lines, and recipients refused by policy (which also
//!   throttles address harvesting). When the total reaches `max_errors`,
//!   `421 4.7.0 too many errors` follows the reply and the session closes.
//!   A 552 for an oversized message body does not count;
//! - message content is capped while streaming (see [`super::data`]).

use std::sync::Arc;

use memchr::memchr;

use super::command::{Body, Command, MailFrom};
pub use super::data::OversizeInfo;
use super::data::{DataDecoder, DataEnd, Decoded};
use super::reply::Reply;
pub use crate::mail::BareLf;

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
}

/// What the server decides about one RCPT address (pure; the gateway implements it from config).
pub trait RecipientPolicy {
    /// Ok(mailbox name) to accept, or Err(reply) e.g. 550 5.7.1 relaying denied / 550 5.1.1 unknown user.
    fn check_recipient(&self, address: &str) -> Result<String, Reply>;
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
    /// Write `take_output()`, then close the connection. Every later `poll`
    /// returns `Close` again.
    Close,
}

/// Where the session is in the protocol.
#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// After 354: input is message content.
    Data(DataDecoder),
    /// `Event::Message` was returned; waiting for `message_done`.
    AwaitMessageDone,
    /// `Event::StartTls` was returned; waiting for `tls_established`.
    AwaitTls,
    Closed,
}

/// The transaction opened by MAIL FROM.
#[derive(Debug)]
struct Transaction {
    envelope: Envelope,
    /// Some RCPT reached the policy (distinguishes 554 from 503 at DATA).
    rcpt_attempted: bool,
}

/// One SMTP server session. See the module docs for the driving loop.
#[derive(Debug)]
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
    helo: Option<String>,
    tx: Option<Transaction>,
    commands: usize,
    errors: usize,
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, tls: bool) -> Self {
        Self {
            config,
            tls,
            state: State::Command,
            input: Vec::new(),
            pos: 0,
            scanned: 0,
            discarding: false,
            output: Vec::new(),
            helo: None,
            tx: None,
            commands: 0,
            errors: 0,
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
        match &mut self.state {
            State::Closed | State::AwaitTls => {}
            State::Data(decoder) if self.pos >= self.input.len() && decoder.end().is_none() => {
                self.input.clear();
                self.pos = 0;
                self.scanned = 0;
                let (used, end) = decoder.decode(input);
                if end == Some(DataEnd::Complete) {
                    self.input
                        .extend_from_slice(input.get(used..).unwrap_or_default());
                }
            }
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

    /// After `Event::Message`: queue the final reply for that message and go
    /// back to reading commands. Ignored in any other state.
    pub fn message_done(&mut self, reply: Reply) {
        if matches!(self.state, State::AwaitMessageDone) {
            reply.write_to(&mut self.output);
            self.state = State::Command;
        }
    }

    /// After the TLS handshake finished: commands are read again (EHLO first).
    pub fn tls_established(&mut self) {
        if matches!(self.state, State::AwaitTls) {
            self.input.clear();
            self.pos = 0;
            self.scanned = 0;
            self.discarding = false;
            self.state = State::Command;
        }
    }

    /// Idle timeout: queue "421 4.4.2 <host> idle timeout, closing" and close.
    pub fn timed_out(&mut self) {
        let text = format!("{} idle timeout, closing", self.config.hostname);
        self.close_with(Reply::new(421, Some((4, 4, 2)), text));
    }

    /// Server shutting down: queue "421 4.3.2" and close.
    pub fn shutting_down(&mut self) {
        let text = format!("{} service shutting down, closing", self.config.hostname);
        self.close_with(Reply::new(421, Some((4, 3, 2)), text));
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A mail transaction is open (MAIL accepted, or DATA being received):
    /// a message may soon be handed over. Used to batch store commits.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some() || matches!(self.state, State::Data(_))
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
                State::AwaitMessageDone | State::AwaitTls => return Event::NeedInput,
                State::Data(decoder) => {
                    let rest = self.input.get(self.pos..).unwrap_or_default();
                    let (used, end) = decoder.decode(rest);
                    self.pos += used;
                    match end {
                        None => return Event::NeedInput,
                        Some(end) => return self.end_data(end),
                    }
                }
                State::Command => {
                    if let Some(event) = self.next_command(policy) {
                        return event;
                    }
                }
            }
        }
    }

    /// Handles the end of DATA: a message, an oversize report or a bare-LF close.
    fn end_data(&mut self, end: DataEnd) -> Event {
        let State::Data(decoder) = std::mem::replace(&mut self.state, State::Command) else {
            return Event::NeedInput;
        };
        let envelope = self.tx.take().map(|tx| tx.envelope).unwrap_or_default();
        match (end, decoder.finish()) {
            (DataEnd::BareLf, _) => {
                self.bare_lf_close();
                Event::Close
            }
            (DataEnd::Complete, Decoded::Message(body)) => {
                self.state = State::AwaitMessageDone;
                Event::Message(envelope, body)
            }
            (DataEnd::Complete, Decoded::Oversize(info)) => {
                let text = "Error: message size exceeds fixed maximum message size";
                Reply::new(552, Some((5, 3, 4)), text).write_to(&mut self.output);
                Event::Oversize(envelope, info)
            }
        }
    }

    fn bare_lf_close(&mut self) {
        let text = format!("{} Error: bare <LF> received", self.config.hostname);
        self.close_with(Reply::new(521, Some((5, 5, 2)), text));
    }

    /// Extracts and executes the next complete command line, if any.
    /// Returns an event when the caller must act, `None` to keep going.
    fn next_command(&mut self, policy: &dyn RecipientPolicy) -> Option<Event> {
        let buf = self.input.get(self.pos..).unwrap_or_default();
        if self.discarding {
            let Some(lf) = memchr(b'\n', buf) else {
                self.pos = self.input.len();
                return Some(Event::NeedInput);
            };
            self.pos += lf + 1;
            self.discarding = false;
            if !self.count_command() {
                return Some(Event::Close);
            }
            self.line_too_long();
            return None;
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
            return Some(Event::NeedInput);
        };
        let crlf = lf > 0 && buf.get(lf - 1) == Some(&b'\r');
        let start = self.pos;
        self.pos += lf + 1;
        self.scanned = 0;
        if !self.count_command() {
            return Some(Event::Close);
        }
        if lf + 1 > self.config.max_line_length {
            self.line_too_long();
            return None;
        }
        if !crlf && self.config.bare_lf == BareLf::Reject {
            self.bare_lf_close();
            return Some(Event::Close);
        }
        let end = start + if crlf { lf - 1 } else { lf };
        let input = std::mem::take(&mut self.input);
        let line = input.get(start..end).unwrap_or_default();
        let reply = match Command::parse(line) {
            Ok(command) => self.execute(command, policy),
            Err(reply) => reply,
        };
        self.input = input;
        self.respond(reply);
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

    /// Executes a parsed command; returns its reply (state changes happen here).
    fn execute(&mut self, command: Command, policy: &dyn RecipientPolicy) -> Reply {
        match command {
            Command::Ehlo(name) => {
                self.tx = None;
                self.helo = Some(name);
                Reply::new(250, None, self.ehlo_text())
            }
            Command::Helo(name) => {
                self.tx = None;
                self.helo = Some(name);
                Reply::new(250, None, self.config.hostname.clone())
            }
            Command::Mail(mail) => self.mail(mail),
            Command::Rcpt(path) => self.rcpt(path.address, path.utf8, policy),
            Command::Data => self.data(),
            Command::Rset => {
                self.tx = None;
                Reply::new(250, Some((2, 0, 0)), "OK")
            }
            Command::Noop => Reply::new(250, Some((2, 0, 0)), "OK"),
            Command::Quit => {
                self.state = State::Closed;
                Reply::new(221, Some((2, 0, 0)), "Bye")
            }
            Command::Vrfy => Reply::new(
                252,
                Some((2, 1, 5)),
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Expn => Reply::new(502, Some((5, 5, 1)), "Error: EXPN not available"),
            Command::Help => Reply::new(
                214,
                Some((2, 0, 0)),
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
            ),
            Command::StartTls => self.starttls(),
            Command::Auth => {
                Reply::new(502, Some((5, 5, 1)), "Error: authentication not available")
            }
        }
    }

    fn ehlo_text(&self) -> String {
        let mut text = format!(
            "{}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\n",
            self.config.hostname, self.config.max_message_size
        );
        if self.config.starttls_available && !self.tls {
            text.push_str("STARTTLS\n");
        }
        text.push_str("HELP");
        text
    }

    fn mail(&mut self, mail: MailFrom) -> Reply {
        let Some(helo) = &self.helo else {
            return Reply::new(503, Some((5, 5, 1)), "Error: send HELO/EHLO first");
        };
        if self.tx.is_some() {
            return Reply::new(503, Some((5, 5, 1)), "Error: nested MAIL command");
        }
        if mail.path.utf8 && !mail.smtputf8 {
            return smtputf8_required();
        }
        if mail.size_overflow || mail.size.is_some_and(|s| s > self.config.max_message_size) {
            let text = "Error: message size exceeds fixed maximum message size";
            return Reply::new(552, Some((5, 3, 4)), text);
        }
        self.tx = Some(Transaction {
            envelope: Envelope {
                helo: helo.clone(),
                mail_from: mail.path.address,
                recipients: Vec::new(),
                declared_size: mail.size,
                body_8bitmime: mail.body == Body::EightBitMime,
                smtputf8: mail.smtputf8,
                tls: self.tls,
            },
            rcpt_attempted: false,
        });
        Reply::new(250, Some((2, 1, 0)), "Sender OK")
    }

    fn rcpt(&mut self, address: String, utf8: bool, policy: &dyn RecipientPolicy) -> Reply {
        let max = self.config.max_recipients;
        let Some(tx) = &mut self.tx else {
            return Reply::new(503, Some((5, 5, 1)), "Error: need MAIL command");
        };
        if utf8 && !tx.envelope.smtputf8 {
            return smtputf8_required();
        }
        let recipients = &mut tx.envelope.recipients;
        if recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(&address))
        {
            return Reply::new(250, Some((2, 1, 5)), "Recipient OK");
        }
        if recipients.len() >= max {
            return Reply::new(452, Some((4, 5, 3)), "Error: too many recipients");
        }
        tx.rcpt_attempted = true;
        match policy.check_recipient(&address) {
            Ok(mailbox) => {
                recipients.push(Recipient { address, mailbox });
                Reply::new(250, Some((2, 1, 5)), "Recipient OK")
            }
            Err(reply) => reply,
        }
    }

    fn data(&mut self) -> Reply {
        let Some(tx) = &self.tx else {
            return Reply::new(503, Some((5, 5, 1)), "Error: need MAIL command");
        };
        if tx.envelope.recipients.is_empty() {
            return if tx.rcpt_attempted {
                Reply::new(554, Some((5, 5, 1)), "Error: no valid recipients")
            } else {
                Reply::new(503, Some((5, 5, 1)), "Error: need RCPT command")
            };
        }
        let decoder = DataDecoder::new(self.config.max_message_size, self.config.bare_lf);
        self.state = State::Data(decoder);
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }

    fn starttls(&mut self) -> Reply {
        if self.tls {
            return Reply::new(503, Some((5, 5, 1)), "Error: TLS already active");
        }
        if !self.config.starttls_available {
            return Reply::new(502, Some((5, 5, 1)), "Error: STARTTLS not available");
        }
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.state = State::AwaitTls;
        Reply::new(220, Some((2, 0, 0)), "Ready to start TLS")
    }
}

fn smtputf8_required() -> Reply {
    Reply::new(
        553,
        Some((5, 6, 7)),
        "Error: non-ASCII address requires SMTPUTF8",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `@example.com` (mailbox = local part), except `unknown@`.
    struct TestPolicy;
    impl RecipientPolicy for TestPolicy {
        fn check_recipient(&self, address: &str) -> Result<String, Reply> {
            let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
            if address.eq_ignore_ascii_case("postmaster") {
                return Ok("postmaster".into());
            }
            if !domain.eq_ignore_ascii_case("example.com") {
                return Err(Reply::new(550, Some((5, 7, 1)), "relaying denied"));
            }
            if local == "unknown" {
                return Err(Reply::new(550, Some((5, 1, 1)), "unknown user"));
            }
            Ok(local.to_owned())
        }
    }

    fn config() -> SessionConfig {
        SessionConfig {
            hostname: "mx.example.com".into(),
            max_message_size: 10_000,
            max_recipients: 3,
            max_line_length: 512,
            max_commands: 100,
            max_errors: 10,
            bare_lf: BareLf::Reject,
            starttls_available: true,
        }
    }

    fn session_with(config: SessionConfig) -> Session {
        let mut s = Session::new(Arc::new(config), false);
        s.greeting();
        s.take_output();
        s
    }

    fn session() -> Session {
        session_with(config())
    }

    /// What a driver saw: events (messages answered with 250) and output.
    #[derive(Debug, Default)]
    struct Outcome {
        messages: Vec<(Envelope, Vec<u8>)>,
        oversize: Vec<(Envelope, OversizeInfo)>,
        starttls: bool,
        closed: bool,
        output: String,
    }

    impl Outcome {
        /// Codes of the final lines of all replies, in order.
        fn codes(&self) -> Vec<u16> {
            self.output
                .split("\r\n")
                .filter(|l| l.as_bytes().get(3) != Some(&b'-') && l.len() >= 3)
                .map(|l| l[..3].parse().unwrap())
                .collect()
        }
    }

    /// Feeds `input` in one piece and polls until the session needs input.
    fn drive(s: &mut Session, input: &[u8]) -> Outcome {
        drive_chunks(s, &[input])
    }

    fn drive_chunks(s: &mut Session, chunks: &[&[u8]]) -> Outcome {
        let mut out = Outcome::default();
        let mut raw = Vec::new();
        'chunks: for chunk in chunks {
            s.feed(chunk);
            loop {
                match s.poll(&TestPolicy) {
                    Event::NeedInput => break,
                    Event::Message(env, body) => {
                        out.messages.push((env, body));
                        s.message_done(Reply::new(250, Some((2, 0, 0)), "queued as 1"));
                    }
                    Event::Oversize(env, info) => out.oversize.push((env, info)),
                    Event::StartTls => {
                        out.starttls = true;
                        raw.extend(s.take_output());
                        s.tls_established();
                        break 'chunks;
                    }
                    Event::Close => {
                        out.closed = true;
                        break 'chunks;
                    }
                }
            }
        }
        raw.extend(s.take_output());
        out.output = String::from_utf8(raw).unwrap();
        out
    }

    const TX: &[u8] = b"EHLO client.example\r\nMAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n";

    #[test]
    fn greeting() {
        let mut s = Session::new(Arc::new(config()), false);
        s.greeting();
        assert_eq!(s.take_output(), b"220 mx.example.com ESMTP mailgate\r\n");
    }

    #[test]
    fn full_transaction() {
        let mut s = session();
        let mut input = TX.to_vec();
        input.extend_from_slice(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n");
        let out = drive(&mut s, &input);
        assert_eq!(out.codes(), [250, 250, 250, 354, 250, 221]);
        assert!(out.closed);
        let (env, body) = &out.messages[0];
        assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
        assert_eq!(env.helo, "client.example");
        assert_eq!(env.mail_from, "alice@sender.example");
        assert_eq!(env.recipients.len(), 1);
        assert_eq!(env.recipients[0].address, "bob@example.com");
        assert_eq!(env.recipients[0].mailbox, "bob");
        assert!(!env.tls);
        assert!(
            out.output
                .contains("250 2.0.0 queued as 1\r\n221 2.0.0 Bye\r\n")
        );
    }

    #[test]
    fn ehlo_lists_extensions() {
        let out = drive(&mut session(), b"EHLO c\r\n");
        assert_eq!(
            out.output,
            "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-STARTTLS\r\n250 HELP\r\n"
        );
        let out = drive(&mut session(), b"HELO c\r\n");
        assert_eq!(out.output, "250 mx.example.com\r\n");
    }

    #[test]
    fn no_starttls_when_unavailable_or_already_tls() {
        let mut implicit = Session::new(Arc::new(config()), true);
        let out = drive(&mut implicit, b"EHLO c\r\nSTARTTLS\r\n");
        assert!(!out.output.contains("250-STARTTLS"));
        assert_eq!(out.codes(), [250, 503]);
        assert!(implicit.is_tls());
        let mut cfg = config();
        cfg.starttls_available = false;
        let out = drive(&mut session_with(cfg), b"EHLO c\r\nSTARTTLS\r\n");
        assert!(!out.output.contains("250-STARTTLS"));
        assert_eq!(out.codes(), [250, 502]);
        assert_eq!(drive(&mut session(), b"STARTTLS now\r\n").codes(), [501]);
    }

    #[test]
    fn starttls_discards_pipelined_plaintext_and_resets() {
        let mut s = session();
        let out = drive(
            &mut s,
            b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\n",
        );
        assert!(out.starttls);
        assert!(out.output.ends_with("220 2.0.0 Ready to start TLS\r\n"));
        assert!(s.is_tls());
        // The pipelined MAIL was dropped, and EHLO is required again.
        let out = drive(&mut s, b"MAIL FROM:<a@b.example>\r\nEHLO c\r\n");
        assert_eq!(out.codes(), [503, 250]);
        assert!(!out.output.contains("250-STARTTLS"));
        let out = drive(
            &mut s,
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n",
        );
        assert!(out.messages[0].0.tls);
        assert_eq!(drive(&mut s, b"STARTTLS\r\n").codes(), [503]);
    }

    #[test]
    fn input_before_tls_established_is_discarded() {
        let mut s = session();
        s.feed(b"EHLO c\r\nSTARTTLS\r\n");
        assert!(matches!(s.poll(&TestPolicy), Event::StartTls));
        s.feed(b"NOOP\r\n");
        assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
        s.tls_established();
        s.take_output();
        assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
        assert!(s.take_output().is_empty());
    }

    #[test]
    fn sequence_errors_are_503() {
        assert_eq!(
            drive(&mut session(), b"MAIL FROM:<a@b.example>\r\n").codes(),
            [503]
        );
        assert_eq!(
            drive(&mut session(), b"EHLO c\r\nRCPT TO:<a@example.com>\r\n").codes(),
            [250, 503]
        );
        assert_eq!(
            drive(&mut session(), b"EHLO c\r\nDATA\r\n").codes(),
            [250, 503]
        );
        assert_eq!(
            drive(
                &mut session(),
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n"
            )
            .codes(),
            [250, 250, 503]
        );
        assert_eq!(
            drive(
                &mut session(),
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n"
            )
            .codes(),
            [250, 250, 503]
        );
        // All recipients refused: 554 no valid recipients.
        let out = drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@other.example>\r\nDATA\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 550, 554]);
        assert!(out.output.contains("550 5.7.1 relaying denied\r\n"));
    }

    #[test]
    fn simple_commands() {
        let out = drive(
            &mut session(),
            b"NOOP\r\nRSET\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nAUTH PLAIN AGFAAGI=\r\nFROB\r\n\r\nquit\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 252, 502, 214, 502, 500, 500, 221]);
        assert!(out.output.contains("252 2.1.5 "));
        assert!(out.output.contains("214 2.0.0 "));
        assert!(out.output.contains("500 5.5.2 "));
        assert!(out.closed);
    }

    #[test]
    fn rset_and_ehlo_clear_the_transaction() {
        let out = drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nRCPT TO:<x@example.com>\r\n\
              MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<x@example.com>\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 250, 503, 250, 250, 503]);
    }

    #[test]
    fn pipelined_batch_replies_in_order() {
        let mut s = session();
        let out = drive(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<unknown@example.com>\r\n\
              RCPT TO:<b@other.example>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 250, 550, 550, 250, 354]);
        assert!(out.output.contains("550 5.1.1 unknown user"));
        // Whatever follows DATA is content, even in the same read.
        let out = drive(&mut s, b"x\r\n.\r\nNOOP\r\n");
        assert_eq!(out.codes(), [250, 250]);
        let (env, body) = &out.messages[0];
        assert_eq!(env.mail_from, "");
        assert_eq!(
            env.recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>(),
            ["a@example.com", "Postmaster"]
        );
        assert_eq!(body, b"x\r\n");
    }

    #[test]
    fn nothing_is_processed_while_a_message_awaits_commit() {
        let mut s = session();
        let mut input = TX.to_vec();
        input.extend_from_slice(b"hi\r\n.\r\nNOOP\r\nQUIT\r\n");
        s.feed(&input);
        let Event::Message(_, body) = s.poll(&TestPolicy) else {
            panic!()
        };
        assert_eq!(body, b"hi\r\n");
        let before = s.take_output();
        assert!(matches!(s.poll(&TestPolicy), Event::NeedInput));
        assert!(s.take_output().is_empty());
        s.message_done(Reply::new(451, Some((4, 3, 0)), "store failed"));
        assert!(matches!(s.poll(&TestPolicy), Event::Close));
        let after = String::from_utf8(s.take_output()).unwrap();
        assert!(before.ends_with(b"354 End data with <CR><LF>.<CR><LF>\r\n"));
        assert_eq!(
            after,
            "451 4.3.0 store failed\r\n250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"
        );
    }

    #[test]
    fn smuggled_commands_stay_content() {
        for (mode, seqs) in [
            (
                BareLf::Normalize,
                &[&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\n"][..],
            ),
            (BareLf::Reject, &[&b"\r.\r"[..], b"\r.\r\n"][..]),
        ] {
            for seq in seqs {
                let mut cfg = config();
                cfg.bare_lf = mode;
                let mut s = session_with(cfg);
                let mut input = TX.to_vec();
                input.extend_from_slice(b"Subject: x\r\n\r\nhello");
                input.extend_from_slice(seq);
                input.extend_from_slice(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n.\r\n");
                let out = drive(&mut s, &input);
                assert_eq!(out.messages.len(), 1, "{seq:?}");
                assert_eq!(out.codes(), [250, 250, 250, 354, 250], "{seq:?}");
                let body = &out.messages[0].1;
                assert!(body.ends_with(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n"), "{seq:?}");
                assert_eq!(out.messages[0].0.recipients.len(), 1);
            }
        }
    }

    #[test]
    fn bare_lf_reject_in_data_and_commands() {
        let mut input = TX.to_vec();
        input.extend_from_slice(b"hello\n.\nMAIL FROM:<e@x.example>\r\n");
        let out = drive(&mut session(), &input);
        assert!(out.closed);
        assert!(out.messages.is_empty());
        assert!(
            out.output
                .ends_with("521 5.5.2 mx.example.com Error: bare <LF> received\r\n")
        );
        let out = drive(&mut session(), b"NOOP\nNOOP\r\n");
        assert_eq!(out.codes(), [521]);
        assert!(out.closed);
    }

    #[test]
    fn bare_lf_normalize_in_data_and_commands() {
        let mut cfg = config();
        cfg.bare_lf = BareLf::Normalize;
        let mut s = session_with(cfg);
        let out = drive(&mut s, b"EHLO c\nMAIL FROM:<a@b.example>\nRCPT TO:<x@example.com>\nDATA\nline1\nline2\r\n.\r\n");
        assert_eq!(out.codes(), [250, 250, 250, 354, 250]);
        assert_eq!(out.messages[0].1, b"line1\r\nline2\r\n");
    }

    #[test]
    fn decoding_is_independent_of_chunking() {
        let mut input = TX.to_vec();
        input.extend_from_slice(b"A: b\r\n\r\n..x\r\n\ry\r.\r\nz\r\n.\r\nNOOP\r\n");
        let whole = drive(&mut session(), &input);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let bytewise = drive_chunks(&mut session(), &bytes);
        assert_eq!(whole.output, bytewise.output);
        assert_eq!(whole.messages[0].1, bytewise.messages[0].1);
        assert_eq!(whole.messages[0].1, b"A: b\r\n\r\n.x\r\n\ry\r.\r\nz\r\n");
        let mut rng = 7u64;
        for _ in 0..200 {
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                rng = xorshift(rng);
                let n = ((rng % 13) as usize + 1).min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            let split = drive_chunks(&mut session(), &chunks);
            assert_eq!(split.output, whole.output);
            assert_eq!(split.messages[0].1, whole.messages[0].1);
        }
    }

    #[test]
    fn oversize_message_is_drained_with_552() {
        let mut cfg = config();
        cfg.max_message_size = 100;
        let mut s = session_with(cfg);
        let mut input = TX.to_vec();
        input.extend_from_slice(b"Subject: big\r\n\r\n");
        let mut chunks: Vec<Vec<u8>> = vec![input];
        for _ in 0..100 {
            chunks.push(b"0123456789012345678901234567890123456789\r\n".to_vec());
        }
        chunks.push(b".\r\nNOOP\r\n".to_vec());
        let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
        let out = drive_chunks(&mut s, &refs);
        assert_eq!(out.codes(), [250, 250, 250, 354, 552, 250]);
        assert!(out.output.contains("552 5.3.4 "));
        assert!(out.messages.is_empty());
        let (env, info) = &out.oversize[0];
        assert_eq!(env.recipients.len(), 1);
        assert_eq!(info.head, b"Subject: big\r\n\r\n");
        assert_eq!(info.size, 16 + 100 * 42);
        // The transaction is over.
        assert_eq!(drive(&mut s, b"RCPT TO:<a@example.com>\r\n").codes(), [503]);
    }

    #[test]
    fn declared_size_too_big_is_552() {
        let out = drive(&mut session(), b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=10001\r\nMAIL FROM:<a@b.example> SIZE=10000\r\n");
        assert_eq!(out.codes(), [250, 552, 250]);
        assert!(out.output.contains("552 5.3.4 "));
        let out = drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=999999999999999999999999\r\n",
        );
        assert_eq!(out.codes(), [250, 552]);
    }

    #[test]
    fn mail_parameters_reach_the_envelope() {
        let mut s = session();
        let out = drive(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=5 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<x@example.com>\r\nDATA\r\nhi\r\n.\r\n",
        );
        let env = &out.messages[0].0;
        assert_eq!(env.declared_size, Some(5));
        assert!(env.body_8bitmime && env.smtputf8);
        assert_eq!(
            drive(
                &mut session(),
                b"EHLO c\r\nMAIL FROM:<a@b.example> XFOO=1\r\n"
            )
            .codes(),
            [250, 555]
        );
    }

    #[test]
    fn smtputf8_address_rules() {
        let out = drive(
            &mut session(),
            "EHLO c\r\nMAIL FROM:<jörg@b.example>\r\n".as_bytes(),
        );
        assert_eq!(out.codes(), [250, 553]);
        assert!(out.output.contains("553 5.6.7 "));
        let out = drive(
            &mut session(),
            "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<jörg@example.com>\r\n".as_bytes(),
        );
        assert_eq!(out.codes(), [250, 250, 553]);
        let out = drive(
            &mut session(),
            "EHLO c\r\nMAIL FROM:<jörg@b.example> SMTPUTF8\r\nRCPT TO:<Ünïcode@example.com>\r\n"
                .as_bytes(),
        );
        assert_eq!(out.codes(), [250, 250, 250]);
    }

    #[test]
    fn source_routes_and_quoted_local_parts() {
        let mut s = session();
        let out = drive(
            &mut s,
            b"EHLO c\r\nMAIL FROM:<@relay.example:a@b.example>\r\nRCPT TO:<\"john doe\"@example.com>\r\nDATA\r\nx\r\n.\r\n",
        );
        let env = &out.messages[0].0;
        assert_eq!(env.mail_from, "a@b.example");
        assert_eq!(env.recipients[0].address, "\"john doe\"@example.com");
    }

    #[test]
    fn address_length_limit() {
        let long = format!("EHLO c\r\nMAIL FROM:<{}@b.example>\r\n", "a".repeat(260));
        let out = drive(&mut session(), long.as_bytes());
        assert_eq!(out.codes(), [250, 501]);
        assert!(out.output.contains("501 5.1.7 "));
    }

    #[test]
    fn max_recipients() {
        let out = drive(
            &mut session(),
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@example.com>\r\nRCPT TO:<2@example.com>\r\n\
              RCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\nRCPT TO:<1@example.com>\r\nDATA\r\nx\r\n.\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 250, 250, 250, 452, 250, 354, 250]);
        assert!(out.output.contains("452 4.5.3 "));
        assert_eq!(out.messages[0].0.recipients.len(), 3);
    }

    #[test]
    fn max_commands() {
        let mut cfg = config();
        cfg.max_commands = 3;
        let out = drive(
            &mut session_with(cfg),
            b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n",
        );
        assert_eq!(out.codes(), [250, 250, 250, 421]);
        assert!(
            out.output
                .ends_with("421 4.7.0 Error: too many commands\r\n")
        );
        assert!(out.closed);
    }

    #[test]
    fn max_errors_is_a_session_total() {
        let mut cfg = config();
        cfg.max_errors = 3;
        let out = drive(
            &mut session_with(cfg),
            b"FOO\r\nNOOP\r\nBAR\r\nNOOP\r\nRCPT TO:<a@b>\r\nNOOP\r\n",
        );
        assert_eq!(out.codes(), [500, 250, 500, 250, 503, 421]);
        assert!(out.output.ends_with("421 4.7.0 Error: too many errors\r\n"));
        assert!(out.closed);
    }

    #[test]
    fn line_too_long() {
        let mut cfg = config();
        cfg.max_line_length = 20;
        let mut s = session_with(cfg);
        // Exactly 20 bytes including CRLF is fine.
        let out = drive(&mut s, b"NOOP 4567890123456\r\n");
        assert_eq!(out.codes(), [250]);
        let out = drive(&mut s, b"NOOP 45678901234567\r\nNOOP\r\n");
        assert_eq!(out.codes(), [500, 250]);
        assert!(out.output.starts_with("500 5.5.6 "));
        // A long line arriving in pieces is discarded as it comes.
        let long = [b'x'; 1000];
        let out = drive_chunks(&mut s, &[b"NOOP ", &long, &long, b"\r\nQUIT\r\n"]);
        assert_eq!(out.codes(), [500, 221]);
        assert!(s.input.capacity() < 4096);
    }

    #[test]
    fn timeout_and_shutdown() {
        let mut s = session();
        s.timed_out();
        assert_eq!(
            s.take_output(),
            b"421 4.4.2 mx.example.com idle timeout, closing\r\n"
        );
        assert!(matches!(s.poll(&TestPolicy), Event::Close));
        let mut s = session();
        s.shutting_down();
        assert!(s.take_output().starts_with(b"421 4.3.2 "));
        s.feed(b"NOOP\r\n");
        assert!(matches!(s.poll(&TestPolicy), Event::Close));
        assert!(s.take_output().is_empty());
    }

    fn xorshift(mut x: u64) -> u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }

    /// Random bytes (biased toward SMTP-ish tokens) in random chunks: no
    /// panic, buffers and output stay bounded.
    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        const TOKENS: &[&[u8]] = &[
            b"EHLO a\r\n",
            b"HELO a\r\n",
            b"MAIL FROM:<a@b.example>\r\n",
            b"MAIL FROM:<>\r\n",
            b"RCPT TO:<x@example.com>\r\n",
            b"RCPT TO:<y@other.example>\r\n",
            b"DATA\r\n",
            b"STARTTLS\r\n",
            b"RSET\r\n",
            b"QUIT\r\n",
            b".\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b".",
            b"..",
            b"\x00",
            b"\xff",
            b"<",
            b">",
            b"SIZE=9999999",
            b" ",
            b"x",
        ];
        let mut rng = 0x1234_5678_9abc_def1u64;
        for iter in 0..2000 {
            let mut cfg = config();
            cfg.bare_lf = if iter % 2 == 0 {
                BareLf::Normalize
            } else {
                BareLf::Reject
            };
            cfg.max_line_length = 64;
            cfg.max_message_size = 300;
            cfg.max_commands = 50;
            let mut s = session_with(cfg);
            let mut input = Vec::new();
            rng = xorshift(rng);
            let len = rng % 200;
            for _ in 0..len {
                rng = xorshift(rng);
                if rng.is_multiple_of(3) {
                    input.push((rng >> 8) as u8);
                } else {
                    input.extend_from_slice(TOKENS[(rng >> 8) as usize % TOKENS.len()]);
                }
            }
            let mut rest = &input[..];
            let mut total_out = 0;
            'feed: while !rest.is_empty() {
                rng = xorshift(rng);
                let n = ((rng % 100) as usize + 1).min(rest.len());
                s.feed(&rest[..n]);
                rest = &rest[n..];
                loop {
                    let event = s.poll(&TestPolicy);
                    assert!(
                        s.input.len() <= 64 + 100,
                        "input buffer grew to {}",
                        s.input.len()
                    );
                    match event {
                        Event::NeedInput => break,
                        Event::Message(_, body) => {
                            assert!(body.len() <= 300);
                            s.message_done(Reply::new(250, Some((2, 0, 0)), "ok"));
                        }
                        Event::Oversize(_, info) => assert!(info.head.len() <= HEAD_MAX_FOR_TEST),
                        Event::StartTls => s.tls_established(),
                        Event::Close => break 'feed,
                    }
                }
                total_out += s.take_output().len();
            }
            total_out += s.take_output().len();
            // Every reply is answer to a command (≤ 50 + a few closing lines).
            assert!(total_out <= 60 * 300, "output {total_out}");
        }
    }

    const HEAD_MAX_FOR_TEST: usize = super::super::data::HEAD_MAX;
}
