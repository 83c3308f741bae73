//! Gmail API upstream: the [`Upstream`] of a Google mailbox reached over
//! HTTPS with an OAuth2 access token instead of IMAP and a password.
//!
//! - `list_new`: `users.messages.list` with `q=is:unread label:<label>`,
//!   following `nextPageToken`; then `users.messages.get?format=minimal`
//!   per message for its `sizeEstimate`, `labelIds` and `internalDate`
//!   (oldest first). Messages already carrying our processed or rejected
//!   label are left out (someone marked them unread again).
//! - `fetch`: `format=raw`, base64url decoded and checked (a bad body is a
//!   protocol error, never a panic). `fetch_headers` (oversize messages):
//!   `format=metadata`, the header block rebuilt from `payload.headers`
//!   (see `message`), so an oversize message is never downloaded whole.
//! - `mark`, only after the engine's commit: one `users.messages.modify`
//!   removing `UNREAD` and adding the processed label (rejected: both),
//!   labels found with `users.labels.list` or made with `users.labels.create`,
//!   their ids cached for the session. One modify call is atomic, so a cut
//!   leaves the message either untouched (listed again, the engine marks it
//!   without importing it twice) or marked.
//!
//! One concept per file: `api` is one authenticated request (a token per
//! request, a 401 refreshes once, rate limits back off), `error` reads
//! Google's error bodies, `labels` resolves and creates labels, `list`
//! lists, `message` downloads, `upstream` is the [`Upstream`] impl.

mod api;
mod error;
mod labels;
mod list;
mod message;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

pub use error::{GoogleError, rate_limited};

use crate::inbound::pull::upstream::ConnectSettings;
#[cfg(doc)]
use crate::inbound::pull::upstream::Upstream;
use crate::oauth::http::{HttpClient, HttpError};

/// Where Google serves the Gmail API.
pub const DEFAULT_API_BASE: &str = "https://gmail.googleapis.com";
/// Gmail's name for the mailbox whose token is used.
pub const DEFAULT_USER: &str = "me";

/// Everything needed to open one Gmail mailbox.
#[derive(Clone)]
pub struct GmailSettings {
    /// `user` is the Gmail userId (`me` or an address); the credential must
    /// be `Credential::OAuth2`. host, port and security are not used.
    pub connect: ConnectSettings,
    /// The HTTPS client (built from `ca_file` and the command timeout); an
    /// error here is reported when the mailbox is opened.
    pub http: Result<HttpClient, HttpError>,
    /// `https://gmail.googleapis.com` or a test server; no trailing slash needed.
    pub api_base: String,
    /// The label to read (`INBOX`, or a user label's name or id).
    pub label: String,
    pub processed_label: String,
    pub rejected_label: String,
    /// Never download more than this (+ 64 KiB) per message.
    pub max_message_size: u64,
    /// First wait after a rate limit or a 5xx; doubled each try.
    pub backoff: Duration,
    /// Tries after the first one before giving up with `Throttled`.
    pub retries: u32,
}

impl std::fmt::Debug for GmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailSettings")
            .field("connect", &self.connect)
            .field("api_base", &self.api_base)
            .field("label", &self.label)
            .field("processed_label", &self.processed_label)
            .field("rejected_label", &self.rejected_label)
            .finish()
    }
}

impl GmailSettings {
    /// Defaults for the backoff: 1 s, 2 s, 4 s, then `Throttled`.
    pub const BACKOFF: Duration = Duration::from_secs(1);
    pub const RETRIES: u32 = 3;
}

/// An open Gmail session (token obtained, label found).
pub struct GmailUpstream {
    api: api::Api,
    label_id: String,
    /// The label as configured (name or id), for the search query.
    label_name: String,
    labels: labels::Labels,
    processed_label: String,
    rejected_label: String,
    max_message_size: u64,
}

impl std::fmt::Debug for GmailUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailUpstream")
            .field("api", &self.api)
            .field("label_id", &self.label_id)
            .finish()
    }
}

/// Tokens of an OAuth2 credential, or why there are none.
fn tokens(
    connect: &ConnectSettings,
) -> Result<Arc<dyn crate::mail::AccessTokens>, crate::inbound::pull::upstream::FetchError> {
    match &connect.credential {
        crate::mail::Credential::OAuth2(tokens) => Ok(tokens.clone()),
        _ => Err(crate::inbound::pull::upstream::FetchError::Unsupported {
            what: "the Gmail API with a password (configure [mailbox.oauth2])".into(),
        }),
    }
}
