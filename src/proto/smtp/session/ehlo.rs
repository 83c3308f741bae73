//! EHLO and HELO: the client names itself, any open transaction ends, and
//! EHLO answers with the capabilities this session offers.

use super::{AuthOffer, Session, State};
use crate::proto::smtp::reply::Reply;

impl Session {
    /// EHLO: greet, list extensions. Resets any transaction (RFC 5321 4.1.4).
    pub(super) fn ehlo(&mut self, name: String) -> Reply {
        self.state = State::Greeted { helo: name };
        Reply::new(250, None, self.capabilities())
    }

    /// HELO: greet without extensions.
    pub(super) fn helo_command(&mut self, name: String) -> Reply {
        self.state = State::Greeted { helo: name };
        Reply::new(250, None, self.config.hostname.clone())
    }

    /// The EHLO reply text: hostname, then one extension per line. STARTTLS
    /// only while it can still be used; AUTH only where it is offered and
    /// under TLS (RFC 4954 section 4: no plaintext passwords in the clear).
    fn capabilities(&self) -> String {
        let mut text = format!(
            "{}\nPIPELINING\nSIZE {}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\n",
            self.config.hostname, self.config.max_message_size
        );
        if self.config.starttls_available && !self.tls {
            text.push_str("STARTTLS\n");
        }
        if self.config.auth == AuthOffer::Required && self.tls {
            text.push_str("AUTH PLAIN LOGIN\n");
        }
        text.push_str("HELP");
        text
    }
}
