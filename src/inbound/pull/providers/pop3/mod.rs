//! POP3 upstream: RFC 1939 with UIDL and TOP, CAPA (RFC 2449), STLS
//! (RFC 2595), USER/PASS or AUTH PLAIN (RFC 5034).
//!
//! [`crate::proto::pop3`] is the sans-IO core (responses from bytes,
//! bounded, any chunking); here are the thin tokio layers around it:
//! `conn` (one command exchange under a timeout), `login` (TLS/STLS,
//! greeting, credential) and `upstream` ([`Pop3Upstream`], implementing
//! [`Upstream`](crate::inbound::pull::upstream::Upstream)).
//!
//! POP3 has no flags: every message in the maildrop is listed, keyed by
//! its UIDL, and the engine skips the ones it already committed. Deletions
//! (DELE) only take effect at QUIT in
//! [`finish`](crate::inbound::pull::upstream::Upstream::finish); a dropped
//! session deletes nothing.

mod conn;
mod login;
mod upstream;

pub use upstream::{FETCH_SLACK, HEADERS_MAX, Pop3Upstream};

use crate::inbound::pull::upstream::ConnectSettings;
use crate::mail::AfterImport;

/// Everything a POP3 mailbox needs.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub connect: ConnectSettings,
    /// [`AfterImport::Delete`] (DELE) or [`AfterImport::Keep`]; the others
    /// are IMAP-only and refused with `FetchError::Unsupported`.
    pub after: AfterImport,
    /// RETR refuses a message larger than this plus [`FETCH_SLACK`].
    pub max_message_size: u64,
}

#[cfg(test)]
mod tests;
