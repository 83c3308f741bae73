//! /api/v1/rejections: the quarantine — what was refused and why (filter by
//! reason and age, paging), one record with its decision trace, its raw
//! bytes when kept, and replaying it through the current pipeline.

use hyper::{Method, StatusCode};

use super::error::{ApiError, ApiResult};
use super::params::{filter, id, paging};
use super::read::read;
use super::respond::{bytes, json};
use super::router::{Ctx, Route};
use serde::Deserialize;

use crate::ingest::Inbound;
use crate::mail::Origin;
use crate::mail::reason::RejectReason;
use crate::tickets::ReplayOutcome;
use crate::tickets::model::Replayed;

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
    Route {
        method: Method::POST,
        path: "/api/v1/rejections/{id}/replay",
        handler: |c| Box::pin(replay(c)),
    },
];

/// `{"as": "ticket"}`: treat the message as written by a person.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(rename = "as")]
    treat_as: Option<TreatAs>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TreatAs {
    Ticket,
}

async fn replay(c: Ctx) -> ApiResult {
    let rejection_id = id("rejection", c.param(0))?;
    let body = match super::body::read(c.body, 4096).await {
        Ok(b) => b,
        Err(refused) => return Ok(refused),
    };
    let parsed: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            ApiError::BadRequest(
                "invalid replay body: expected nothing, {} or {\"as\": \"ticket\"}".into(),
            )
        })?
    };
    let as_ticket = parsed.treat_as == Some(TreatAs::Ticket);
    let found = read(&c.state.store, move |s| {
        let Some(r) = s.rejection(rejection_id)? else {
            return Ok(None);
        };
        let raw = if r.replayed.is_none() {
            s.rejection_raw(rejection_id)?
        } else {
            None
        };
        Ok(Some((r, raw)))
    })
    .await?;
    let (rejection, raw) =
        found.ok_or_else(|| ApiError::NotFound(format!("no rejection with id {rejection_id}")))?;
    if let Some(replayed) = rejection.replayed {
        return Ok(replayed_reply(rejection_id, &replayed, false));
    }
    let (Some(raw), Some(mailbox)) = (raw, rejection.mailbox.clone()) else {
        return Err(ApiError::Conflict(if rejection.mailbox.is_none() {
            format!("rejection {rejection_id} has no mailbox to replay into")
        } else {
            format!(
                "rejection {rejection_id} kept no raw message (reason {}): nothing to replay",
                rejection.reason
            )
        }));
    };
    let inbound = Inbound {
        // SMTP knew the reverse-path; pulled mail reads its Return-Path.
        return_path: (rejection.source == "smtp").then(|| rejection.envelope.mail_from.clone()),
        origin: Origin {
            source: rejection.source,
            envelope: rejection.envelope,
            received_at: rejection.received_at,
        },
        raw: raw.into(),
        mailboxes: vec![mailbox.clone()],
        upstream_key: None,
    };
    let outcome = c
        .state
        .ingestor
        .replay(rejection_id, inbound, as_ticket, crate::now_rfc3339())
        .await?;
    match outcome {
        ReplayOutcome::Done { replayed, first } => {
            if first.is_some() {
                c.state.outbound_wake.notify_one();
            }
            Ok(replayed_reply(rejection_id, &replayed, first.is_some()))
        }
        ReplayOutcome::NotFound => Err(ApiError::NotFound(format!(
            "no rejection with id {rejection_id}"
        ))),
        ReplayOutcome::NoRaw => Err(ApiError::Conflict(format!(
            "rejection {rejection_id} kept no raw message: nothing to replay"
        ))),
        ReplayOutcome::NoMailbox => Err(ApiError::Conflict(format!(
            "mailbox {mailbox:?} of rejection {rejection_id} is not configured any more"
        ))),
    }
}

/// 201 for the replay that ran, 200 for a repeat answering its result.
fn replayed_reply(rejection_id: u64, replayed: &Replayed, first: bool) -> super::respond::Reply {
    let status = if first {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(
        status,
        &serde_json::json!({"rejection_id": rejection_id, "replayed": replayed, "first": first}),
    )
}

async fn list(c: Ctx) -> ApiResult {
    let (limit, cursor) = paging(&c.query)?;
    let reason = filter(&c.query, "reason");
    if let Some(r) = &reason
        && RejectReason::parse(r).is_none()
    {
        return Err(ApiError::BadRequest(format!("unknown reason {r:?}")));
    }
    let since = match filter(&c.query, "since") {
        None => None,
        Some(v) => Some(crate::parse_rfc3339(&v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "since {v:?} is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"
            ))
        })?),
    };
    let page = read(&c.state.store, move |s| {
        s.list_rejections_since(reason.as_deref(), since, cursor, limit)
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
