//! Listing a folder's unread messages: one `GET .../messages` with
//! `$filter`, `$select`, `$orderby`, `$top` and the message size as an
//! extended property, then every `@odata.nextLink` page.
//!
//! - Order: oldest first. Graph refuses `$orderby` unless the ordered
//!   property also comes first in `$filter` ("InefficientFilter"), hence
//!   `receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false`.
//! - Size: v1.0 has no `size` property; `PidTagMessageSize` (MAPI
//!   property tag 0x0E08, type Integer) is read through
//!   `$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')`.
//!   Its value comes as a decimal string. It is the approximate sum of the
//!   message's properties in the store (MAPI's definition), not the MIME
//!   length; a message listed under the cap whose MIME turns out larger is
//!   still caught after download (see `fetch`).
//! - At most [`MAX_LISTED`] per sync; the rest comes with the next one.

use serde::Deserialize;

use super::client::{GraphClient, query, segment};
use crate::inbound::pull::upstream::FetchError;

/// Messages asked for per page (Graph's own maximum for messages is 1000).
const PAGE: usize = 100;
/// Messages listed per sync at most.
pub(super) const MAX_LISTED: usize = 5000;

/// The extended property holding a message's size.
pub(super) const SIZE_PROPERTY: &str = "Integer 0x0E08";

/// One unread message as listed.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub id: String,
    pub size: u64,
    pub categories: Vec<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Item>,
    #[serde(rename = "@odata.nextLink")]
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    single_value_extended_properties: Vec<Property>,
}

#[derive(Deserialize)]
struct Property {
    id: String,
    value: Option<String>,
}

impl Item {
    /// The size property's value (Graph answers the id in its own case,
    /// e.g. `Integer 0xe08`); 0 when absent.
    fn size(&self) -> u64 {
        self.single_value_extended_properties
            .iter()
            .find(|p| same_property(&p.id, SIZE_PROPERTY))
            .and_then(|p| p.value.as_deref())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `Integer 0x0E08` and `Integer 0xe08` name the same property.
fn same_property(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let mut parts = s.split_whitespace();
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let tag = parts.next().unwrap_or("").to_ascii_lowercase();
        let tag = tag
            .strip_prefix("0x")
            .unwrap_or(&tag)
            .trim_start_matches('0')
            .to_string();
        (kind, tag)
    };
    norm(a) == norm(b)
}

/// The first page's URL.
pub(super) fn first_page(client: &GraphClient, folder_id: &str) -> String {
    let params = [
        (
            "$filter",
            "receivedDateTime ge 1900-01-01T00:00:00Z and isRead eq false".to_string(),
        ),
        ("$orderby", "receivedDateTime asc".to_string()),
        (
            "$select",
            "id,receivedDateTime,isRead,categories".to_string(),
        ),
        (
            "$expand",
            format!("singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"),
        ),
        ("$top", PAGE.to_string()),
    ];
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", query(v)))
        .collect();
    client.url(&format!(
        "/mailFolders/{}/messages?{}",
        segment(folder_id),
        q.join("&")
    ))
}

impl GraphClient {
    /// Every unread message of the folder, oldest first (at most MAX_LISTED).
    pub(super) async fn unread(&self, folder_id: &str) -> Result<Vec<Listed>, FetchError> {
        let mut out = Vec::new();
        let mut url = first_page(self, folder_id);
        loop {
            let page: Page = self.get_json(&url).await?;
            for item in page.value {
                out.push(Listed {
                    size: item.size(),
                    id: item.id,
                    categories: item.categories,
                });
            }
            match page.next {
                Some(next) if out.len() < MAX_LISTED => url = self.checked_link(&next)?,
                _ => break,
            }
        }
        out.truncate(MAX_LISTED);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_property_names_compare_as_graph_writes_them() {
        assert!(same_property("Integer 0xe08", SIZE_PROPERTY));
        assert!(same_property("integer 0x0E08", SIZE_PROPERTY));
        assert!(!same_property("Integer 0x0E07", SIZE_PROPERTY));
        assert!(!same_property("String 0x0E08", SIZE_PROPERTY));
        let item: Item = serde_json::from_str(
            r#"{"id":"A=","categories":["Blue"],"singleValueExtendedProperties":[{"id":"Integer 0xe08","value":"12345"}]}"#,
        )
        .unwrap();
        assert_eq!(item.size(), 12345);
    }
}
