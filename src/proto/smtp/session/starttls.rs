//! STARTTLS (RFC 3207): the 220 reply, then the caller runs the handshake.
//! Everything the client said before is forgotten — EHLO name, transaction,
//! authentication and any plaintext pipelined after the command.

use super::{Session, State};
use crate::proto::smtp::reply::Reply;

impl Session {
    pub(super) fn starttls(&mut self) -> Reply {
        if self.tls {
            return Reply::new(503, Some((5, 5, 1)), "Error: TLS already active");
        }
        if !self.config.starttls_available {
            return Reply::new(502, Some((5, 5, 1)), "Error: STARTTLS not available");
        }
        self.tls = true;
        self.auth_user = None;
        self.state = State::AwaitTls;
        Reply::new(220, Some((2, 0, 0)), "Ready to start TLS")
    }

    /// After the TLS handshake finished: commands are read again (EHLO first).
    pub fn tls_established(&mut self) {
        if matches!(self.state, State::AwaitTls) {
            self.input.clear();
            self.pos = 0;
            self.scanned = 0;
            self.discarding = false;
            self.state = State::Connected;
        }
    }
}
