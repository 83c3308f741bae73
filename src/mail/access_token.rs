//! Where an OAuth2 access token comes from, as the code that uses one sees
//! it: IMAP/SMTP XOAUTH2, Graph and Gmail ask for a token before a request
//! and report a token the server refused; refreshing, caching, rotation and
//! storage are the business of the token provider (the oauth layer).

use std::future::Future;
use std::pin::Pin;

use super::secret::Secret;

/// Why no access token can be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The grant is gone (`invalid_grant`: revoked, expired, password
    /// changed, consent withdrawn): an admin must connect the mailbox again.
    #[error("the authorization server refused the grant: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Revoked {
        error: String,
        description: Option<String>,
    },
    /// The token endpoint could not be used now (network, 5xx, 429); the
    /// provider backs off, the caller tries again later.
    #[error("no access token available now: {0}")]
    Unavailable(String),
    /// The mailbox's OAuth2 settings cannot work (no refresh token yet,
    /// a client the server does not know, a bad scope).
    #[error("OAuth2 is not set up for this mailbox: {0}")]
    NotConfigured(String),
}

pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Secret, TokenError>> + Send + 'a>>;

/// A source of access tokens for one mailbox and one use (scope).
pub trait AccessTokens: Send + Sync {
    /// A token valid for at least a little while: cached until shortly
    /// before it expires; concurrent callers share one refresh.
    fn token(&self) -> TokenFuture<'_>;
    /// The server answered 401 (or refused XOAUTH2) to this token: forget
    /// it, so the next `token()` refreshes.
    fn refused(&self, token: &Secret);
}
