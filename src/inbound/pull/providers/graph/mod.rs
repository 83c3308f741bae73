//! Microsoft Graph as an upstream mailbox (a Microsoft 365 / Exchange
//! Online mailbox read over REST with an OAuth2 bearer token), implementing
//! [`Upstream`] so the engine's "mark only after the commit" holds as for
//! IMAP and POP3.
//!
//! - `list_new`: the folder's unread messages, oldest first, with their
//!   size (`PidTagMessageSize`, an extended property: `size` is not a v1.0
//!   message property) and categories, following `@odata.nextLink`.
//! - `fetch`: the MIME (`/messages/{id}/$value`); `fetch_headers`: Graph
//!   has no header-only MIME download, so the header block of an oversize
//!   message is rebuilt from `internetMessageHeaders` (see `fetch`).
//! - `mark`: label (read + categories, one PATCH) or move (`/move`, then read).
//! - Identity: `graph:<immutable id>` (every request says
//!   `Prefer: IdType="ImmutableId"`, so the id survives moves).
//! - Every request asks the token source for a token; a 401 reports it
//!   refused and retries once; 429/503/504 end the sync as
//!   [`FetchError::Throttled`] with the server's `Retry-After`.

mod client;
mod fetch;
mod folder;
mod list;
mod mark;

use std::collections::HashMap;
use std::sync::Arc;

pub use client::{GraphClient, retry_after, segment, status_text};

use super::super::upstream::{
    ConnectSettings, FetchError, Probe, Upstream, UpstreamMessage, Verdict,
};
use crate::mail::{AccessTokens, AfterImport, Credential};
use crate::oauth::http::HttpClient;

/// Everything needed to read one Graph mailbox folder.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// `user` (UPN or id), `credential` (must be OAuth2), `ca_file`,
    /// `command_timeout` (per request) are used; host and port are not.
    pub connect: ConnectSettings,
    /// e.g. `https://graph.microsoft.com/v1.0`, no trailing slash.
    pub api_base: String,
    /// A well-known folder name (`inbox`) or a path (`Inbox/Support`).
    pub folder: String,
    pub after: AfterImport,
    pub max_message_size: u64,
}

/// An open Graph "session": the client and the resolved folder. Graph is
/// stateless, so there is nothing to log out of.
pub struct GraphUpstream {
    client: GraphClient,
    folder_id: String,
    after: AfterImport,
    max_message_size: u64,
    /// Categories each listed message had, so a label adds ours to them
    /// (a PATCH of `categories` replaces the whole list).
    categories: HashMap<String, Vec<String>>,
    /// Move targets resolved so far (path -> folder id).
    targets: HashMap<String, String>,
}

impl GraphUpstream {
    /// Checks the credential and resolves the folder.
    pub async fn open(settings: &GraphSettings) -> Result<GraphUpstream, FetchError> {
        let client = GraphSettings::client(settings)?;
        let folder_id = client.resolve_folder(&settings.folder).await?;
        Ok(GraphUpstream {
            client,
            folder_id,
            after: settings.after.clone(),
            max_message_size: settings.max_message_size,
            categories: HashMap::new(),
            targets: HashMap::new(),
        })
    }

    /// Opens the folder and counts its messages (`test-connection`).
    pub async fn probe(settings: &GraphSettings) -> Result<Probe, FetchError> {
        let client = GraphSettings::client(settings)?;
        let id = client.resolve_folder(&settings.folder).await?;
        client.probe(&id).await
    }

    /// The folder id messages are listed from.
    pub fn folder_id(&self) -> &str {
        &self.folder_id
    }
}

impl GraphSettings {
    fn client(settings: &GraphSettings) -> Result<GraphClient, FetchError> {
        let tokens: Arc<dyn AccessTokens> = match &settings.connect.credential {
            Credential::OAuth2(tokens) => tokens.clone(),
            Credential::Password(_) => {
                return Err(FetchError::Unsupported {
                    what: "password login (Microsoft Graph needs an [mailbox.oauth2] token)".into(),
                });
            }
        };
        let http = HttpClient::new(
            settings.connect.ca_file.clone(),
            settings.connect.command_timeout,
        )
        .map_err(|e| FetchError::Tls {
            host: settings.api_base.clone(),
            detail: e.to_string(),
        })?;
        Ok(GraphClient::new(
            http,
            &settings.api_base,
            &settings.connect.user,
            tokens,
        ))
    }
}

/// The Graph message id in a `graph:<id>` key.
fn id_of(message: &UpstreamMessage) -> Result<&str, FetchError> {
    message
        .key
        .strip_prefix("graph:")
        .ok_or_else(|| FetchError::Protocol(format!("not a Graph message: {}", message.key)))
}

impl Upstream for GraphUpstream {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        let listed = self.client.unread(&self.folder_id).await?;
        self.categories = listed
            .iter()
            .map(|m| (m.id.clone(), m.categories.clone()))
            .collect();
        Ok(listed
            .into_iter()
            .map(|m| UpstreamMessage {
                key: format!("graph:{}", m.id),
                size: m.size,
                leftover: false,
            })
            .collect())
    }

    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let id = id_of(message)?.to_string();
        self.client.mime(&id, self.max_message_size).await
    }

    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let id = id_of(message)?.to_string();
        self.client.header_block(&id).await
    }

    async fn mark(
        &mut self,
        message: &UpstreamMessage,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        let id = id_of(message)?.to_string();
        match self.after.clone() {
            AfterImport::Label {
                processed,
                rejected,
            } => {
                let mut categories = self.categories.get(&id).cloned().unwrap_or_default();
                let ours = match verdict {
                    Verdict::Processed => vec![processed],
                    Verdict::Rejected => vec![processed, rejected],
                };
                for c in ours {
                    if !categories.iter().any(|have| have.eq_ignore_ascii_case(&c)) {
                        categories.push(c);
                    }
                }
                self.client.label(&id, &categories).await
            }
            AfterImport::Move {
                processed,
                rejected,
            } => {
                let path = match verdict {
                    Verdict::Processed => processed,
                    Verdict::Rejected => rejected,
                };
                let target = match self.targets.get(&path) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self.client.resolve_folder(&path).await?;
                        self.targets.insert(path, t.clone());
                        t
                    }
                };
                self.client.move_to(&id, &target).await
            }
            AfterImport::Delete | AfterImport::Keep => Err(FetchError::Unsupported {
                what: "this after_import mode with Graph (label or move)".into(),
            }),
        }
    }

    async fn finish(self) -> Result<(), FetchError> {
        Ok(())
    }
}
