//! The small commands: RSET, NOOP, QUIT, VRFY, EXPN, HELP. (AUTH has its
//! own file, `auth.rs`.)

use super::{AuthOffer, Session, State};
use crate::proto::smtp::reply::Reply;

impl Session {
    /// RSET: drop the transaction, keep the EHLO name.
    pub(super) fn rset(&mut self) -> Reply {
        self.end_transaction();
        ok()
    }

    pub(super) fn noop(&mut self) -> Reply {
        ok()
    }

    pub(super) fn quit(&mut self) -> Reply {
        self.state = State::Closed;
        Reply::new(221, Some((2, 0, 0)), "Bye")
    }

    /// VRFY never confirms an address (no harvesting), as RFC 5321 3.5.3 allows.
    pub(super) fn vrfy(&mut self) -> Reply {
        Reply::new(
            252,
            Some((2, 1, 5)),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    pub(super) fn expn(&mut self) -> Reply {
        Reply::new(502, Some((5, 5, 1)), "Error: EXPN not available")
    }

    pub(super) fn help(&mut self) -> Reply {
        let mut text =
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS".to_owned();
        if self.config.auth == AuthOffer::Required {
            text.push_str(" AUTH");
        }
        Reply::new(214, Some((2, 0, 0)), text)
    }
}

fn ok() -> Reply {
    Reply::new(250, Some((2, 0, 0)), "OK")
}
