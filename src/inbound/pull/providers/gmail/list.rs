//! What is new: `users.messages.list?q=is:unread label:<label>` page by
//! page (`nextPageToken`), then `format=minimal` per message for the size
//! the engine checks against the cap before any download, the labels (to
//! leave out what carries ours) and `internalDate` (to import oldest first;
//! Gmail lists newest first).

use serde::Deserialize;

use super::GmailUpstream;
use super::api::{JSON_MAX, segment};
use crate::inbound::pull::upstream::{FetchError, UpstreamMessage};

/// Messages per page asked for (Gmail's default is 100, its maximum 500).
const PAGE: &str = "100";
/// At most this many messages per sync; the rest comes with the next one.
const MAX_LISTED: usize = 5000;

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    messages: Vec<Ref>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Ref {
    id: String,
}

#[derive(Deserialize)]
pub(super) struct Minimal {
    #[serde(default, rename = "labelIds")]
    pub label_ids: Vec<String>,
    #[serde(default, rename = "sizeEstimate")]
    pub size_estimate: Option<u64>,
    /// Milliseconds since the epoch, as a JSON string.
    #[serde(default, rename = "internalDate")]
    pub internal_date: Option<String>,
}

/// The search for unread mail under a label, quoting names with spaces.
pub(super) fn query(label: &str) -> String {
    if label.chars().any(|c| c.is_whitespace() || c == '"') {
        format!("is:unread label:\"{}\"", label.replace('"', ""))
    } else {
        format!("is:unread label:{label}")
    }
}

impl GmailUpstream {
    pub(super) async fn list(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        let q = query(&self.label_name);
        let mut ids: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = vec![("q", q.as_str()), ("maxResults", PAGE)];
            if let Some(t) = &token {
                params.push(("pageToken", t.as_str()));
            }
            let page: ListPage = self.api.get("messages", &params, JSON_MAX).await?;
            for m in page.messages {
                if !ids.contains(&m.id) {
                    ids.push(m.id);
                }
            }
            match page.next_page_token {
                Some(next) if !next.is_empty() && ids.len() < MAX_LISTED => {
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(FetchError::Protocol(
                            "Gmail API messages.list returned the same nextPageToken twice".into(),
                        ));
                    }
                    token = Some(next);
                }
                _ => break,
            }
        }
        ids.truncate(MAX_LISTED);
        let ours: Vec<String> = [&self.processed_label, &self.rejected_label]
            .iter()
            .filter_map(|name| self.labels.find(name))
            .collect();
        let mut found = Vec::with_capacity(ids.len());
        for (order, id) in ids.into_iter().enumerate() {
            let m: Minimal = self
                .api
                .get(
                    &format!("messages/{}", segment(&id)),
                    &[("format", "minimal")],
                    JSON_MAX,
                )
                .await?;
            if m.label_ids.iter().any(|l| ours.contains(l)) {
                continue;
            }
            let date = m
                .internal_date
                .as_deref()
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or(0);
            let size = m.size_estimate.ok_or_else(|| {
                FetchError::Protocol(format!("Gmail message {id} has no sizeEstimate"))
            })?;
            // Same date: Gmail's order (newest first) reversed.
            found.push((date, std::cmp::Reverse(order), id, size));
        }
        found.sort();
        Ok(found
            .into_iter()
            .map(|(_, _, id, size)| UpstreamMessage {
                key: format!("gmail:{id}"),
                size,
                leftover: false,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::query;

    #[test]
    fn label_names_with_spaces_are_quoted() {
        assert_eq!(query("INBOX"), "is:unread label:INBOX");
        assert_eq!(query("Support Desk"), "is:unread label:\"Support Desk\"");
    }
}
