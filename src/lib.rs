//! mailgate: a self-hosted mail gateway that turns email into helpdesk tickets.
//!
//! The crate is a library so that the protocol cores can be fuzzed and tested
//! without sockets; `main.rs` is only the command line around it.
//!
//! Layers, lowest first; a module only imports from its own layer or below
//! (`scripts/check_layers.py` enforces it):
//! `mail`, `metrics`, `proto`, `rules` -> `config` -> `tls`, `auth` -> `oauth` ->
//! `tickets` -> `store` -> `ingest` -> `inbound` -> `outbound` -> `http` ->
//! `app`.

pub mod app;
pub mod auth;
pub mod config;
pub mod http;
pub mod inbound;
pub mod ingest;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod proto;
pub mod rules;
pub mod store;
pub mod tickets;
pub mod tls;

/// The current time as RFC 3339 (UTC), as stored in records.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An RFC 3339 time, as records store it (None when it is not one).
pub fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// The current time in milliseconds since the epoch, as the outbox keeps it.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A time in milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339_at(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
