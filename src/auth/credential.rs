//! The credential a mailbox logs in with, from its `[mailbox.upstream]`
//! config. Today that is a password ([`super::password`]); an OAuth2
//! token provider becomes one more source here, and the sync engine, the
//! scheduler and the commands keep asking only for "the credential".

use super::password::{self, PasswordError};
use crate::config::upstream::UpstreamConfig;
use crate::mail::{Credential, Secret};

/// For `serve` (and the API's sync): no prompt possible.
pub fn resolve(upstream: &UpstreamConfig) -> Result<Credential, PasswordError> {
    password::resolve(&upstream.password).map(Credential::Password)
}

/// For `mailgate sync` / `test-connection`: asks for the password when
/// the config names no source for it.
pub fn resolve_or_prompt(
    upstream: &UpstreamConfig,
    mailbox: &str,
) -> Result<Credential, PasswordError> {
    password::resolve_or_prompt(&upstream.password, mailbox, &upstream.user)
        .map(Credential::Password)
}

/// A password given with the request (the API's sync body).
pub fn from_password(password: String) -> Credential {
    Credential::Password(Secret::new(password))
}
