//! OAuth2 for mailboxes at Microsoft 365 and Google: the HTTPS client the
//! token endpoint and the mail APIs share, and (coming in this layer) the
//! token provider that refreshes, caches, rotates and stores tokens.
//!
//! Its own layer between `auth`/`tls` and `tickets`: it uses the TLS client
//! configuration, and the store (above it) keeps its encrypted tokens
//! through a trait defined here.

pub mod health;
pub mod http;
pub mod provider;
pub mod vault;

#[cfg(test)]
mod provider_tests;
