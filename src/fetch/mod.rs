//! Pulling mail from upstream mailboxes (IMAP, POP3) into ingest.

pub mod imap;
pub mod upstream;
pub mod tls;
pub mod pop3;
pub mod connect;
pub mod engine;
pub mod password;
pub mod scheduler;
