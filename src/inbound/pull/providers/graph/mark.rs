//! After import, upstream, each step safe to repeat (the engine marks a
//! committed message again when a later sync lists it):
//!
//! - Label: one `PATCH /messages/{id}` setting `isRead` and `categories`
//!   (the message's own plus ours: a PATCH replaces the list) at once.
//! - Move: `POST /messages/{id}/move` with the target's id, then `isRead`
//!   on the moved message. The move is the step that counts (the message
//!   leaves the listed folder atomically); a cut before the PATCH leaves it
//!   moved but unread, which nothing lists again.
//!
//! A message someone deleted meanwhile (404) has nothing left to mark.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::client::{Body, GraphClient, JSON_LIMIT, parse, segment, status_text};
use crate::inbound::pull::upstream::FetchError;

#[derive(Deserialize)]
struct Moved {
    id: String,
}

impl GraphClient {
    pub(super) async fn label(&self, id: &str, categories: &[String]) -> Result<(), FetchError> {
        self.patch(id, json!({"isRead": true, "categories": categories}))
            .await
    }

    pub(super) async fn move_to(&self, id: &str, destination: &str) -> Result<(), FetchError> {
        let url = self.url(&format!("/messages/{}/move", segment(id)));
        let response = self
            .call(
                Method::POST,
                &url,
                Body::Json(json!({"destinationId": destination})),
                JSON_LIMIT,
            )
            .await?;
        if response.status == StatusCode::NOT_FOUND {
            tracing::warn!(upstream = %id, "message gone before its move; nothing to mark");
            return Ok(());
        }
        if !response.status.is_success() {
            return Err(FetchError::Protocol(status_text(&response)));
        }
        let moved: Moved = parse(&response)?;
        self.patch(&moved.id, json!({"isRead": true})).await
    }

    async fn patch(&self, id: &str, body: serde_json::Value) -> Result<(), FetchError> {
        let url = self.url(&format!("/messages/{}", segment(id)));
        let response = self
            .call(Method::PATCH, &url, Body::Json(body), JSON_LIMIT)
            .await?;
        if response.status == StatusCode::NOT_FOUND {
            tracing::warn!(upstream = %id, "message gone before its mark; nothing to mark");
            return Ok(());
        }
        if !response.status.is_success() {
            return Err(FetchError::Protocol(status_text(&response)));
        }
        Ok(())
    }
}
