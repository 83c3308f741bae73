//! /api/v1/rejections: what was refused and why (filter by reason, paging),
//! one record, and its raw bytes when kept.

use hyper::{Method, StatusCode};

use super::error::{ApiError, ApiResult};
use super::params::{filter, id, paging};
use super::read::read;
use super::respond::{bytes, json};
use super::router::{Ctx, Route};
use crate::mail::reason::RejectReason;

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/rejections",
        handler: |c| Box::pin(list(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/rejections/{id}",
        handler: |c| Box::pin(one(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/rejections/{id}/raw",
        handler: |c| Box::pin(raw(c)),
    },
];

async fn list(c: Ctx) -> ApiResult {
    let (limit, cursor) = paging(&c.query)?;
    let reason = filter(&c.query, "reason");
    if let Some(r) = &reason
        && RejectReason::parse(r).is_none()
    {
        return Err(ApiError::BadRequest(format!("unknown reason {r:?}")));
    }
    let page = read(&c.state.store, move |s| {
        s.list_rejections(reason.as_deref(), cursor, limit)
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"rejections": page.items, "next": page.next.map(|n| n.to_string())}),
    ))
}

async fn one(c: Ctx) -> ApiResult {
    let rejection_id = id("rejection", c.param(0))?;
    let found = read(&c.state.store, move |s| s.rejection(rejection_id)).await?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("no rejection with id {rejection_id}")))?;
    Ok(json(StatusCode::OK, &found))
}

async fn raw(c: Ctx) -> ApiResult {
    let rejection_id = id("rejection", c.param(0))?;
    let raw = read(&c.state.store, move |s| s.rejection_raw(rejection_id)).await?;
    let raw = raw.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no raw message kept for rejection {rejection_id} (unknown id, or not kept, e.g. oversize)"
        ))
    })?;
    Ok(bytes(StatusCode::OK, "message/rfc822", raw))
}
