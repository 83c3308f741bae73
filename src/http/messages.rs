//! /api/v1/messages/{id}: one stored message, its raw bytes, and its
//! decoded attachments.

use hyper::{Method, StatusCode};

use super::error::{ApiError, ApiResult};
use super::params::id;
use super::read::read;
use super::respond::{bytes, json};
use super::router::{Ctx, Route};

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/messages/{id}",
        handler: |c| Box::pin(one(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/messages/{id}/raw",
        handler: |c| Box::pin(raw(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/messages/{id}/attachments/{index}",
        handler: |c| Box::pin(attachment(c)),
    },
];

fn not_found(message_id: u64) -> ApiError {
    ApiError::NotFound(format!("no message with id {message_id}"))
}

async fn one(c: Ctx) -> ApiResult {
    let message_id = id("message", c.param(0))?;
    let found = read(&c.state.store, move |s| match s.message(message_id)? {
        Some(m) => Ok(Some(super::tickets::MessageView::of(s, m)?)),
        None => Ok(None),
    })
    .await?;
    let found = found.ok_or_else(|| not_found(message_id))?;
    Ok(json(StatusCode::OK, &found))
}

async fn raw(c: Ctx) -> ApiResult {
    let message_id = id("message", c.param(0))?;
    let raw = read(&c.state.store, move |s| s.message_raw(message_id)).await?;
    let raw = raw.ok_or_else(|| not_found(message_id))?;
    Ok(bytes(StatusCode::OK, "message/rfc822", raw))
}

async fn attachment(c: Ctx) -> ApiResult {
    let message_id = id("message", c.param(0))?;
    let a = c.param(1);
    let index: u32 = a
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no attachment {a:?}")))?;
    let found = read(&c.state.store, move |s| {
        let Some(message) = s.message(message_id)? else {
            return Ok(None);
        };
        let Some(meta) = message.attachments.into_iter().find(|x| x.index == index) else {
            return Ok(None);
        };
        Ok(s.attachment(message_id, index)?.map(|b| (meta, b)))
    })
    .await?;
    let (_, data) = found.ok_or_else(|| {
        ApiError::NotFound(format!("no attachment {index} on message {message_id}"))
    })?;
    Ok(bytes(StatusCode::OK, "application/octet-stream", data))
}
