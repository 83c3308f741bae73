//! The [`Upstream`] impl of a Gmail mailbox, and opening it: a first
//! `users.labels.list` checks the token and finds the configured label
//! (a missing label is a folder error, like a missing IMAP folder).

use super::api::{Api, segment};
use super::labels::{Label, Labels};
use super::message::gmail_id;
use super::{GmailSettings, GmailUpstream, tokens};
use crate::inbound::pull::upstream::{FetchError, Probe, Upstream, UpstreamMessage, Verdict};

impl GmailUpstream {
    pub async fn open(settings: &GmailSettings) -> Result<GmailUpstream, FetchError> {
        let tokens = tokens(&settings.connect)?;
        let http = settings.http.clone().map_err(|e| FetchError::Tls {
            host: settings.api_base.clone(),
            detail: e.to_string(),
        })?;
        let user = if settings.connect.user.trim().is_empty() {
            super::DEFAULT_USER
        } else {
            settings.connect.user.trim()
        };
        let api = Api::new(
            http,
            &settings.api_base,
            user,
            tokens,
            settings.backoff,
            settings.retries,
        );
        let labels = Labels::load(&api).await?;
        let label_id = labels
            .find(&settings.label)
            .ok_or_else(|| FetchError::Folder {
                folder: settings.label.clone(),
                detail: "no Gmail label with this name or id".into(),
            })?;
        Ok(GmailUpstream {
            api,
            label_id,
            label_name: settings.label.clone(),
            labels,
            processed_label: settings.processed_label.clone(),
            rejected_label: settings.rejected_label.clone(),
            max_message_size: settings.max_message_size,
        })
    }

    /// Connection test: the label's message and unread counts (`labels.get`).
    pub async fn probe(settings: &GmailSettings) -> Result<Probe, FetchError> {
        let up = GmailUpstream::open(settings).await?;
        let label: Label = up
            .api
            .get(
                &format!("labels/{}", segment(&up.label_id)),
                &[],
                super::api::JSON_MAX,
            )
            .await?;
        Ok(Probe {
            messages: label.messages_total.unwrap_or(0),
            unseen: label.messages_unread,
            capabilities: Vec::new(),
            folder: Some(label.name),
        })
    }

    /// The id of the label read (e.g. `INBOX`, `Label_3`).
    pub fn label_id(&self) -> &str {
        &self.label_id
    }
}

impl Upstream for GmailUpstream {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        self.list().await
    }

    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        self.download(message).await
    }

    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        self.headers(message).await
    }

    async fn mark(
        &mut self,
        message: &UpstreamMessage,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        let id = gmail_id(message)?.to_string();
        let mut add = vec![
            self.labels
                .ensure(&self.api, &self.processed_label.clone())
                .await?,
        ];
        if verdict == Verdict::Rejected {
            let rejected = self
                .labels
                .ensure(&self.api, &self.rejected_label.clone())
                .await?;
            if !add.contains(&rejected) {
                add.push(rejected);
            }
        }
        let body = serde_json::json!({
            "addLabelIds": add,
            "removeLabelIds": ["UNREAD"],
        });
        let _: serde_json::Value = self
            .api
            .post(&format!("messages/{}/modify", segment(&id)), &body)
            .await?;
        Ok(())
    }

    async fn finish(self) -> Result<(), FetchError> {
        // Every mark is final when its modify call returns.
        Ok(())
    }
}
