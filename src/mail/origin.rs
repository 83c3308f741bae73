//! Where a message came from: the SMTP envelope or the upstream mailbox,
//! shared by every record made of it.

use serde::{Deserialize, Serialize};

/// How a message reached the gateway: the SMTP envelope, or the upstream
/// mailbox it was pulled from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeInfo {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub client: String,
    pub helo: String,
}

/// Where a message came from, shared by all its items.
#[derive(Debug, Clone)]
pub struct Origin {
    /// "smtp", "imap", "pop3", ...
    pub source: String,
    pub envelope: EnvelopeInfo,
    /// RFC 3339, when the gateway received it.
    pub received_at: String,
}
