//! How the gateway proves who it is to an upstream server. A password today;
//! an OAuth2 bearer-token provider slots in as another variant, dispatched on
//! at login, without the sync engine knowing which it is.

use super::secret::Secret;

/// What to log in with. Debug never shows the secret.
#[derive(Clone, Debug)]
pub enum Credential {
    /// IMAP LOGIN; POP3 USER/PASS, or AUTH PLAIN where USER is not offered.
    Password(Secret),
}

impl Credential {
    pub fn password(secret: Secret) -> Credential {
        Credential::Password(secret)
    }
}
