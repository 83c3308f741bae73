//! MAIL FROM and RCPT TO: opening a transaction and collecting its
//! recipients, with the AUTH requirement of submission listeners, the
//! SMTPUTF8, SIZE and recipient-count rules and the caller's
//! [`RecipientPolicy`] deciding the sender and each recipient.

use super::{AuthOffer, Envelope, Recipient, RecipientPolicy, Session, State};
use crate::proto::smtp::command::{Body, MailFrom};
use crate::proto::smtp::reply::Reply;

/// The transaction opened by MAIL FROM, owned by [`State::Mail`].
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) envelope: Envelope,
    /// Some RCPT reached the policy (distinguishes 554 from 503 at DATA).
    pub(super) rcpt_attempted: bool,
}

impl Session {
    pub(super) fn mail(&mut self, mail: MailFrom, policy: &dyn RecipientPolicy) -> Reply {
        let helo = match &self.state {
            State::Greeted { helo } => helo,
            State::Mail(_) => {
                return Reply::new(503, Some((5, 5, 1)), "Error: nested MAIL command");
            }
            _ => return Reply::new(503, Some((5, 5, 1)), "Error: send HELO/EHLO first"),
        };
        if self.config.auth == AuthOffer::Required && self.auth_user.is_none() {
            return Reply::new(530, Some((5, 7, 0)), "Authentication required");
        }
        if mail.path.utf8 && !mail.smtputf8 {
            return smtputf8_required();
        }
        if mail.size_overflow || mail.size.is_some_and(|s| s > self.config.max_message_size) {
            let text = "Error: message size exceeds fixed maximum message size";
            return Reply::new(552, Some((5, 3, 4)), text);
        }
        if let Err(reply) = policy.check_sender(self.auth_user.as_deref(), &mail.path.address) {
            return reply;
        }
        let envelope = Envelope {
            helo: helo.clone(),
            mail_from: mail.path.address,
            recipients: Vec::new(),
            declared_size: mail.size,
            body_8bitmime: mail.body == Body::EightBitMime,
            smtputf8: mail.smtputf8,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
        };
        self.state = State::Mail(Transaction {
            envelope,
            rcpt_attempted: false,
        });
        Reply::new(250, Some((2, 1, 0)), "Sender OK")
    }

    pub(super) fn rcpt(
        &mut self,
        address: String,
        utf8: bool,
        policy: &dyn RecipientPolicy,
    ) -> Reply {
        let max = self.config.max_recipients;
        let State::Mail(tx) = &mut self.state else {
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
}

fn smtputf8_required() -> Reply {
    Reply::new(
        553,
        Some((5, 6, 7)),
        "Error: non-ASCII address requires SMTPUTF8",
    )
}
