//! From a mailbox's `[mailbox.upstream]` config to an open session, for
//! either protocol, so the engine and the commands need not care which.

use super::providers::gmail::{GmailSettings, GmailUpstream};
use super::providers::graph::{GraphSettings, GraphUpstream};
use super::providers::imap::{ImapSettings, ImapUpstream};
use super::providers::pop3::{Pop3Settings, Pop3Upstream};
use super::upstream::{ConnectSettings, FetchError, Probe, Upstream, UpstreamMessage, Verdict};
use crate::config::upstream::{Protocol, UpstreamConfig};
use crate::mail::Credential;

/// Settings for one upstream, credential included (kept out of Debug output).
#[derive(Debug, Clone)]
pub enum UpstreamSettings {
    Imap(ImapSettings),
    Pop3(Pop3Settings),
    Graph(GraphSettings),
    Gmail(Box<GmailSettings>),
}

impl UpstreamSettings {
    pub fn new(
        config: &UpstreamConfig,
        credential: Credential,
        max_message_size: u64,
    ) -> UpstreamSettings {
        let connect = ConnectSettings {
            host: config.host.clone(),
            port: config.port,
            security: config.security,
            user: config.user.clone(),
            credential,
            ca_file: config.ca_file.clone(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
        };
        match config.protocol {
            Protocol::Imap => UpstreamSettings::Imap(ImapSettings {
                connect,
                folder: config.folder.clone(),
                after: config.after_import.clone(),
                max_message_size,
            }),
            Protocol::Pop3 => UpstreamSettings::Pop3(Pop3Settings {
                connect,
                after: config.after_import.clone(),
                max_message_size,
            }),
            Protocol::Graph => UpstreamSettings::Graph(GraphSettings {
                connect,
                api_base: config.api_base.clone(),
                folder: config.folder.clone(),
                after: config.after_import.clone(),
                max_message_size,
            }),
            Protocol::Gmail => {
                let gmail = config.gmail.clone().unwrap_or_else(|| {
                    crate::config::upstream::GmailUpstreamConfig {
                        api_base: super::providers::gmail::DEFAULT_API_BASE.into(),
                        label: "INBOX".into(),
                        processed_label: "Mailgate".into(),
                        rejected_label: "RejectedByMailgate".into(),
                    }
                });
                UpstreamSettings::Gmail(Box::new(GmailSettings {
                    http: crate::oauth::http::HttpClient::new(
                        config.ca_file.clone(),
                        config.command_timeout,
                    ),
                    connect,
                    api_base: gmail.api_base,
                    label: gmail.label,
                    processed_label: gmail.processed_label,
                    rejected_label: gmail.rejected_label,
                    max_message_size,
                    backoff: GmailSettings::BACKOFF,
                    retries: GmailSettings::RETRIES,
                }))
            }
        }
    }

    pub async fn open(&self) -> Result<AnyUpstream, FetchError> {
        match self {
            UpstreamSettings::Imap(s) => {
                Ok(AnyUpstream::Imap(Box::new(ImapUpstream::open(s).await?)))
            }
            UpstreamSettings::Pop3(s) => {
                Ok(AnyUpstream::Pop3(Box::new(Pop3Upstream::open(s).await?)))
            }
            UpstreamSettings::Graph(s) => {
                Ok(AnyUpstream::Graph(Box::new(GraphUpstream::open(s).await?)))
            }
            UpstreamSettings::Gmail(s) => {
                Ok(AnyUpstream::Gmail(Box::new(GmailUpstream::open(s).await?)))
            }
        }
    }

    pub async fn probe(&self) -> Result<Probe, FetchError> {
        match self {
            UpstreamSettings::Imap(s) => ImapUpstream::probe(s).await,
            UpstreamSettings::Pop3(s) => Pop3Upstream::probe(s).await,
            UpstreamSettings::Graph(s) => GraphUpstream::probe(s).await,
            UpstreamSettings::Gmail(s) => GmailUpstream::probe(s).await,
        }
    }
}

/// An open session of either protocol.
pub enum AnyUpstream {
    Imap(Box<ImapUpstream>),
    Pop3(Box<Pop3Upstream>),
    Graph(Box<GraphUpstream>),
    Gmail(Box<GmailUpstream>),
}

impl Upstream for AnyUpstream {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.list_new().await,
            AnyUpstream::Pop3(u) => u.list_new().await,
            AnyUpstream::Graph(u) => u.list_new().await,
            AnyUpstream::Gmail(u) => u.list_new().await,
        }
    }

    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.fetch(message).await,
            AnyUpstream::Pop3(u) => u.fetch(message).await,
            AnyUpstream::Graph(u) => u.fetch(message).await,
            AnyUpstream::Gmail(u) => u.fetch(message).await,
        }
    }

    async fn fetch_many(
        &mut self,
        messages: &[UpstreamMessage],
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.fetch_many(messages).await,
            AnyUpstream::Pop3(u) => u.fetch_many(messages).await,
            AnyUpstream::Graph(u) => u.fetch_many(messages).await,
            AnyUpstream::Gmail(u) => u.fetch_many(messages).await,
        }
    }

    async fn mark_many(
        &mut self,
        messages: &[UpstreamMessage],
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.mark_many(messages, verdict).await,
            AnyUpstream::Pop3(u) => u.mark_many(messages, verdict).await,
            AnyUpstream::Graph(u) => u.mark_many(messages, verdict).await,
            AnyUpstream::Gmail(u) => u.mark_many(messages, verdict).await,
        }
    }

    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.fetch_headers(message).await,
            AnyUpstream::Pop3(u) => u.fetch_headers(message).await,
            AnyUpstream::Graph(u) => u.fetch_headers(message).await,
            AnyUpstream::Gmail(u) => u.fetch_headers(message).await,
        }
    }

    async fn mark(
        &mut self,
        message: &UpstreamMessage,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.mark(message, verdict).await,
            AnyUpstream::Pop3(u) => u.mark(message, verdict).await,
            AnyUpstream::Graph(u) => u.mark(message, verdict).await,
            AnyUpstream::Gmail(u) => u.mark(message, verdict).await,
        }
    }

    async fn finish(self) -> Result<(), FetchError> {
        match self {
            AnyUpstream::Imap(u) => u.finish().await,
            AnyUpstream::Pop3(u) => u.finish().await,
            AnyUpstream::Graph(u) => u.finish().await,
            AnyUpstream::Gmail(u) => u.finish().await,
        }
    }
}
