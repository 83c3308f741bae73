//! How the gateway proves who it is to an upstream server: a password or
//! an OAuth2 access-token source, dispatched on at login, without the sync
//! engine knowing which it is.

use std::sync::Arc;

use super::access_token::AccessTokens;
use super::secret::Secret;

/// What to log in with. Debug never shows the secret.
#[derive(Clone)]
pub enum Credential {
    /// IMAP LOGIN; POP3 USER/PASS, or AUTH PLAIN where USER is not offered.
    Password(Secret),
    /// SASL XOAUTH2 (IMAP, SMTP) or a bearer token (Graph, Gmail).
    OAuth2(Arc<dyn AccessTokens>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password(s) => f.debug_tuple("Password").field(s).finish(),
            Credential::OAuth2(_) => f.write_str("OAuth2(<token source>)"),
        }
    }
}

impl Credential {
    pub fn password(secret: Secret) -> Credential {
        Credential::Password(secret)
    }
}
