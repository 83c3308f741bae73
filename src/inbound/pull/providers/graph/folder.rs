//! From the configured `folder` (or a move target) to a Graph folder id:
//! a well-known name (`inbox`, `archive`, ...) is asked for directly
//! (`GET /mailFolders/{name}`); a path `Inbox/Support` starts at its first
//! segment (well-known name, else a top-level folder by display name) and
//! walks `childFolders` one segment at a time, display names compared
//! ignoring case (as Outlook does). A missing folder is a Folder error.

use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Body, GraphClient, JSON_LIMIT, parse, query, segment, status_text};
use crate::inbound::pull::upstream::{FetchError, Probe};

/// Graph's well-known folder names (mailFolder resource, v1.0).
const WELL_KNOWN: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Folder {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    total_item_count: Option<u64>,
    #[serde(default)]
    unread_item_count: Option<u64>,
}

#[derive(Deserialize)]
struct Folders {
    #[serde(default)]
    value: Vec<Folder>,
    #[serde(rename = "@odata.nextLink")]
    next: Option<String>,
}

impl GraphClient {
    /// The id of the folder at `path`.
    pub(super) async fn resolve_folder(&self, path: &str) -> Result<String, FetchError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let Some((first, rest)) = segments.split_first() else {
            return Err(not_found(path, "empty folder path"));
        };
        let mut id = if let Some(name) = well_known(first) {
            self.folder(name, path).await?.id
        } else {
            self.child(None, first, path).await?
        };
        for name in rest {
            id = self.child(Some(&id), name, path).await?;
        }
        Ok(id)
    }

    /// Counts for `test-connection`.
    pub(super) async fn probe(&self, id: &str) -> Result<Probe, FetchError> {
        let f = self.folder(id, id).await?;
        Ok(Probe {
            messages: f.total_item_count.unwrap_or(0),
            unseen: f.unread_item_count,
            capabilities: vec!["graph".into()],
            folder: Some(f.display_name),
        })
    }

    async fn folder(&self, id: &str, path: &str) -> Result<Folder, FetchError> {
        let url = self.url(&format!(
            "/mailFolders/{}?$select=id,displayName,totalItemCount,unreadItemCount",
            segment(id)
        ));
        let response = self.call(Method::GET, &url, Body::None, JSON_LIMIT).await?;
        if response.status == StatusCode::NOT_FOUND || response.status == StatusCode::BAD_REQUEST {
            return Err(not_found(path, &status_text(&response)));
        }
        if !response.status.is_success() {
            return Err(FetchError::Protocol(status_text(&response)));
        }
        parse(&response)
    }

    /// The child of `parent` (None: the top level) named `name`.
    async fn child(
        &self,
        parent: Option<&str>,
        name: &str,
        path: &str,
    ) -> Result<String, FetchError> {
        let select = format!("$select=id,displayName&$top={}", query("100"));
        let mut url = match parent {
            Some(p) => self.url(&format!(
                "/mailFolders/{}/childFolders?{select}",
                segment(p)
            )),
            None => self.url(&format!("/mailFolders?{select}")),
        };
        loop {
            let response = self.call(Method::GET, &url, Body::None, JSON_LIMIT).await?;
            if response.status == StatusCode::NOT_FOUND {
                return Err(not_found(path, &status_text(&response)));
            }
            if !response.status.is_success() {
                return Err(FetchError::Protocol(status_text(&response)));
            }
            let page: Folders = parse(&response)?;
            if let Some(f) = page
                .value
                .iter()
                .find(|f| f.display_name.to_lowercase() == name.to_lowercase())
            {
                return Ok(f.id.clone());
            }
            match page.next {
                Some(next) => url = self.checked_link(&next)?,
                None => return Err(not_found(path, &format!("no folder named {name:?}"))),
            }
        }
    }
}

fn well_known(name: &str) -> Option<&'static str> {
    WELL_KNOWN
        .iter()
        .find(|w| w.eq_ignore_ascii_case(name))
        .copied()
}

fn not_found(path: &str, detail: &str) -> FetchError {
    FetchError::Folder {
        folder: path.to_string(),
        detail: detail.to_string(),
    }
}
