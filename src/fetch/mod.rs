//! Pulling mail from upstream mailboxes (IMAP, POP3) into ingest.

pub mod connect;
pub mod engine;
pub mod imap;
pub mod password;
pub mod pop3;
pub mod scheduler;
pub mod tls;
pub mod upstream;
