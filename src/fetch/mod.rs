//! Pulling mail from upstream mailboxes (IMAP, POP3) into ingest.

pub mod upstream;
pub mod tls;
