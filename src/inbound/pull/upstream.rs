//! What the sync engine needs from an upstream mailbox, whatever the
//! protocol: list what is new, download it, mark it once committed.
//!
//! IMAP and POP3 implement [`Upstream`]; the engine (list -> fetch -> ingest
//! -> commit -> mark) is written once against it, so "mark only after the
//! commit" holds for every protocol.

use std::path::PathBuf;
use std::time::Duration;

use crate::mail::{Credential, Security};

/// Everything needed to open an authenticated session.
#[derive(Clone)]
pub struct ConnectSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: String,
    /// How to log in (dispatched on at IMAP and POP3 login). Never
    /// logged, never in Debug output.
    pub credential: Credential,
    /// Extra trusted CA certificate (PEM), on top of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Connect + greeting + TLS + login must finish within this.
    pub connect_timeout: Duration,
    /// Any single command must finish within this.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("credential", &self.credential)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One message waiting upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamMessage {
    /// Stable upstream identity, unique per mailbox:
    /// `imap:<UIDVALIDITY>:<UID>`, `pop3:<UIDL>` or `graph:<immutable id>`.
    pub key: String,
    /// Size the server announces (RFC822.SIZE / LIST), in bytes.
    pub size: u64,
    /// Listed only because an interrupted mark may have left it half done
    /// (IMAP: flagged but not yet moved or expunged). Never imported: the
    /// engine finishes its mark when it was committed, and skips it otherwise.
    pub leftover: bool,
}

/// What to do with a message once its outcome is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Became a ticket message (or was a duplicate of one).
    Processed,
    /// Became a rejection record.
    Rejected,
}

/// What a connection test found.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Messages in the folder (POP3: in the maildrop).
    pub messages: u64,
    /// Unread (IMAP UNSEEN); POP3 has no flags: None.
    pub unseen: Option<u64>,
    /// Capabilities the server announced after login.
    pub capabilities: Vec<String>,
    /// IMAP: the folder actually selected (after hierarchy separator mapping).
    pub folder: Option<String>,
}

/// Why talking to the upstream failed. `kind()` is the metrics label.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot resolve {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("cannot connect to {address}: {detail}")]
    Connect { address: String, detail: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("authentication failed for {user}: {detail}")]
    Auth { user: String, detail: String },
    #[error("folder {folder:?} not found or not selectable: {detail}")]
    Folder { folder: String, detail: String },
    #[error("server does not support {what}")]
    Unsupported { what: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("timed out during {0}")]
    Timeout(String),
    #[error("connection error: {0}")]
    Io(String),
    /// The server asked us to slow down (HTTP 429/503/504, Gmail's
    /// rate-limit 403): the scheduler waits at least `retry_after` before
    /// the next sync.
    #[error("throttled by the server: {detail}")]
    Throttled {
        retry_after: Option<Duration>,
        detail: String,
    },
}

impl FetchError {
    /// Why `user` has no access token: a grant that is gone or settings
    /// that cannot work are an authentication failure (the mailbox pauses
    /// as auth_failed after `auth_failure_limit`); a token endpoint that
    /// cannot be reached now is transient.
    pub fn token(user: &str, e: crate::mail::TokenError) -> FetchError {
        use crate::mail::TokenError as T;
        match e {
            T::Revoked { .. } | T::NotConfigured(_) => FetchError::Auth {
                user: user.to_string(),
                detail: e.to_string(),
            },
            T::Unavailable(_) => FetchError::Io(format!("token endpoint: {e}")),
        }
    }
}

impl From<crate::mail::TokenError> for FetchError {
    fn from(e: crate::mail::TokenError) -> Self {
        FetchError::token("the OAuth2 grant", e)
    }
}

impl From<crate::tls::client::ConnectError> for FetchError {
    fn from(e: crate::tls::client::ConnectError) -> Self {
        use crate::tls::client::ConnectError as C;
        match e {
            C::Dns { host, detail } => FetchError::Dns { host, detail },
            C::Connect { address, detail } => FetchError::Connect { address, detail },
            C::Tls { host, detail } => FetchError::Tls { host, detail },
            C::Timeout(what) => FetchError::Timeout(what),
        }
    }
}

impl ConnectSettings {
    /// Where the TLS/TCP helpers connect to.
    pub fn target(&self) -> crate::tls::client::Target {
        crate::tls::client::Target {
            host: self.host.clone(),
            port: self.port,
            ca_file: self.ca_file.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

impl FetchError {
    /// Short, stable label for metrics and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Dns { .. } => "dns",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Auth { .. } => "auth",
            FetchError::Folder { .. } => "folder",
            FetchError::Unsupported { .. } => "unsupported",
            FetchError::Protocol(_) => "protocol",
            FetchError::Timeout(_) => "timeout",
            FetchError::Io(_) => "io",
            FetchError::Throttled { .. } => "throttled",
        }
    }
}

/// An open, authenticated session on one upstream mailbox (folder selected).
///
/// Implementations must not mark or delete anything except in `mark`, and
/// `finish` must make deletions/moves final (IMAP expunge, POP3 QUIT).
#[allow(async_fn_in_trait)]
pub trait Upstream {
    /// Messages to import now, oldest first: IMAP `UNSEEN` without our
    /// keywords; POP3 every UIDL (the engine skips UIDLs it has committed).
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError>;
    /// The whole message, byte-exact.
    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError>;
    /// Several whole messages, byte-exact, in the order given. IMAP asks
    /// for them in one command (one round trip); the default downloads
    /// them one by one. The engine bounds the set by count and bytes.
    async fn fetch_many(
        &mut self,
        messages: &[UpstreamMessage],
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        let mut raws = Vec::with_capacity(messages.len());
        for message in messages {
            raws.push(self.fetch(message).await?);
        }
        Ok(raws)
    }
    /// Only the header block (for messages too large to download).
    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError>;
    /// Apply the after-import action for this verdict.
    async fn mark(&mut self, message: &UpstreamMessage, verdict: Verdict)
    -> Result<(), FetchError>;
    /// [`mark`](Self::mark) for several messages with the same verdict,
    /// every one of them already committed. IMAP labels (or moves, or
    /// deletes) them with one command where that is as safe as one by
    /// one; the default marks them one by one. On an error any prefix of
    /// them may be marked: the next sync marks the rest (they are committed).
    async fn mark_many(
        &mut self,
        messages: &[UpstreamMessage],
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        for message in messages {
            self.mark(message, verdict).await?;
        }
        Ok(())
    }
    /// Make marks final and log out.
    async fn finish(self) -> Result<(), FetchError>;
}
