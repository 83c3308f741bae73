//! Gmail labels by name: the API takes label ids, the config has names
//! (system labels such as `INBOX` have id = name; user labels have ids like
//! `Label_12`). `users.labels.list` once per session, `users.labels.create`
//! for a processed/rejected label that does not exist yet (a 409 means
//! another client made it meanwhile: list again), ids cached.

use std::collections::HashMap;

use serde::Deserialize;

use super::api::{Answer, Api};
use crate::inbound::pull::upstream::FetchError;

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Label {
    pub id: String,
    pub name: String,
    #[serde(default, rename = "messagesTotal")]
    pub messages_total: Option<u64>,
    #[serde(default, rename = "messagesUnread")]
    pub messages_unread: Option<u64>,
}

#[derive(Deserialize)]
struct LabelList {
    #[serde(default)]
    labels: Vec<Label>,
}

/// Label ids by name (Gmail compares label names case-insensitively).
#[derive(Debug, Default)]
pub(super) struct Labels {
    by_name: HashMap<String, String>,
    ids: Vec<String>,
}

impl Labels {
    pub(super) async fn load(api: &Api) -> Result<Labels, FetchError> {
        let list: LabelList = api.get("labels", &[], super::api::JSON_MAX).await?;
        let mut labels = Labels::default();
        for l in list.labels {
            labels.insert(&l.name, &l.id);
        }
        Ok(labels)
    }

    fn insert(&mut self, name: &str, id: &str) {
        self.by_name.insert(name.to_lowercase(), id.to_string());
        self.ids.push(id.to_string());
    }

    /// The id of a label given by name or by id.
    pub(super) fn find(&self, name_or_id: &str) -> Option<String> {
        if self.ids.iter().any(|i| i == name_or_id) {
            return Some(name_or_id.to_string());
        }
        self.by_name.get(&name_or_id.to_lowercase()).cloned()
    }

    /// The id of a label, created when missing.
    pub(super) async fn ensure(&mut self, api: &Api, name: &str) -> Result<String, FetchError> {
        if let Some(id) = self.find(name) {
            return Ok(id);
        }
        let body = serde_json::json!({
            "name": name,
            "labelListVisibility": "labelShow",
            "messageListVisibility": "show",
        });
        match api.post_answer("labels", &body).await? {
            Answer::Ok(body) => {
                let label: Label = super::api::parse("labels.create", &body)?;
                tracing::info!(label = %name, id = %label.id, "created Gmail label");
                self.insert(&label.name, &label.id);
                Ok(label.id)
            }
            Answer::Failed(e) if e.code == 409 => {
                *self = Labels::load(api).await?;
                self.find(name).ok_or_else(|| {
                    FetchError::Protocol(format!(
                        "Gmail says label {name:?} exists ({e}) but does not list it"
                    ))
                })
            }
            Answer::Failed(e) => Err(api.failure("labels.create", e)),
        }
    }
}
