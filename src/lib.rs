//! mailgate: a self-hosted mail gateway that turns email into helpdesk tickets.
//!
//! The crate is a library so that the protocol cores can be fuzzed and tested
//! without sockets; `main.rs` is only the command line around it.

pub mod commands;
pub mod config;
pub mod fetch;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod server;
pub mod smtp;
pub mod store;
pub mod tls;

/// The current time as RFC 3339 (UTC), as stored in records.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
