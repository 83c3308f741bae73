//! Agent replies and the outbox: `POST /api/v1/tickets/{id}/reply` stores an
//! answer (or an internal note) on its ticket and queues it in the same
//! transaction; `/api/v1/outbound` lists the queue with each message's
//! delivery state (agent replies, notifications and submitted mail, which
//! carries its `account`; `?state=` and `?account=` filter); `POST
//! /api/v1/outbound/{id}/retry` queues a failed or deferred message again.

use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::params::{filter, id, paging};
use super::read::read;
use super::respond::json;
use super::router::{Ctx, Route};
use crate::tickets::model::DeliveryState;
use crate::tickets::outgoing::Attachment;
use crate::tickets::{
    Attempt, DeliveryOutcome, DeliveryUpdate, OpOutcome, Operation, ReplyOutcome, ReplyRequest,
};

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::POST,
        path: "/api/v1/tickets/{id}/reply",
        handler: |c| Box::pin(reply(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/outbound",
        handler: |c| Box::pin(list(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/outbound/{id}",
        handler: |c| Box::pin(one(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/outbound/{id}/retry",
        handler: |c| Box::pin(retry(c)),
    },
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default)]
    text: String,
    html: Option<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
    #[serde(default)]
    internal: bool,
    /// Who wrote it (an agent's address), for the ticket's record.
    author: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    name: String,
    #[serde(default = "octet_stream")]
    content_type: String,
    /// The bytes, base64 (standard alphabet).
    data: String,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

fn now() -> (String, i64) {
    let ms = crate::now_ms();
    (crate::rfc3339_at(ms), ms)
}

async fn reply(c: Ctx) -> ApiResult {
    let ticket_id = id("ticket", c.param(0))?;
    // base64 is 4/3 of the bytes; the JSON around it is small.
    let max = c.state.max_message_size / 3 * 4 + 64 * 1024;
    let body = match super::body::read(c.body, max).await {
        Ok(b) => b,
        Err(refused) => return Ok(refused),
    };
    let parsed: ReplyBody = serde_json::from_slice(&body).map_err(|e| {
        // serde's message quotes values; keep only where it went wrong.
        ApiError::BadRequest(format!(
            "invalid reply body (line {}, column {}): expected {{\"text\": ..., \"html\"?, \"cc\"?, \"attachments\"?, \"internal\"?, \"author\"?}}",
            e.line(),
            e.column()
        ))
    })?;
    if parsed.text.trim().is_empty() && parsed.html.as_deref().is_none_or(|h| h.trim().is_empty()) {
        return Err(ApiError::BadRequest("a reply needs text or html".into()));
    }
    let mut attachments = Vec::with_capacity(parsed.attachments.len());
    for (i, a) in parsed.attachments.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.data.trim())
            .map_err(|_| ApiError::BadRequest(format!("attachments[{i}].data: not base64")))?;
        attachments.push(Attachment {
            name: a.name,
            content_type: a.content_type,
            bytes,
        });
    }
    let size = parsed.text.len()
        + parsed.html.as_ref().map_or(0, String::len)
        + attachments.iter().map(|a| a.bytes.len()).sum::<usize>();
    if size > c.state.max_message_size {
        return Err(ApiError::Unprocessable(format!(
            "the reply is {size} bytes; the limit is {} (limits.max_message_size)",
            c.state.max_message_size
        )));
    }
    let (at, at_ms) = now();
    let internal = parsed.internal;
    let request = ReplyRequest {
        ticket_id,
        author: parsed.author.filter(|a| !a.trim().is_empty()),
        text: parsed.text,
        html: parsed.html,
        cc: parsed.cc,
        attachments,
        internal,
        at,
        at_ms,
    };
    match c.state.committer.apply(Operation::Reply(request)).await? {
        OpOutcome::Replied(ReplyOutcome::Stored { message_id, queued }) => {
            if queued {
                c.state.outbound_wake.notify_one();
            }
            tracing::info!(
                ticket = ticket_id,
                internal,
                queued,
                "agent reply stored message={message_id}"
            );
            let (message, delivery) = read(&c.state.store, move |s| {
                Ok((s.message(message_id)?, s.outbox(message_id)?))
            })
            .await?;
            Ok(json(
                StatusCode::CREATED,
                &serde_json::json!({
                    "message_id": message_id,
                    "queued": queued,
                    "message": message,
                    "delivery": delivery,
                }),
            ))
        }
        OpOutcome::Replied(ReplyOutcome::NoTicket) => {
            Err(ApiError::NotFound(format!("no ticket with id {ticket_id}")))
        }
        OpOutcome::Replied(ReplyOutcome::Invalid(why)) => Err(ApiError::Unprocessable(why)),
        other => Err(ApiError::Store(crate::store::StoreError::Failed(format!(
            "unexpected outcome {other:?}"
        )))),
    }
}

async fn list(c: Ctx) -> ApiResult {
    let (limit, cursor) = paging(&c.query)?;
    let state = match filter(&c.query, "state") {
        None => None,
        Some(s) => Some(DeliveryState::parse(&s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?} (one of queued, deferred, sent, failed)"
            ))
        })?),
    };
    let account = filter(&c.query, "account");
    let page = read(&c.state.store, move |s| {
        s.list_outbox(state, account.as_deref(), cursor, limit)
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"outbound": page.items, "next": page.next.map(|n| n.to_string())}),
    ))
}

async fn one(c: Ctx) -> ApiResult {
    let outbound = id("outbound message", c.param(0))?;
    let found = read(&c.state.store, move |s| s.outbox(outbound)).await?;
    let found = found
        .ok_or_else(|| ApiError::NotFound(format!("no outbound message with id {outbound}")))?;
    Ok(json(StatusCode::OK, &found))
}

async fn retry(c: Ctx) -> ApiResult {
    let outbound = id("outbound message", c.param(0))?;
    let (at, at_ms) = now();
    let update = DeliveryUpdate {
        id: outbound,
        attempt: Attempt::Retry,
        at,
        at_ms,
    };
    match c.state.committer.apply(Operation::Delivery(update)).await? {
        OpOutcome::Delivery(DeliveryOutcome::Updated(_)) => {
            c.state.outbound_wake.notify_one();
            tracing::info!(outbound, "outbound message queued again by the API");
            let entry = read(&c.state.store, move |s| s.outbox(outbound)).await?;
            Ok(json(StatusCode::OK, &entry))
        }
        OpOutcome::Delivery(DeliveryOutcome::Unchanged) => Err(ApiError::Conflict(format!(
            "outbound message {outbound} was already sent"
        ))),
        OpOutcome::Delivery(DeliveryOutcome::NotFound) => Err(ApiError::NotFound(format!(
            "no outbound message with id {outbound}"
        ))),
        other => Err(ApiError::Store(crate::store::StoreError::Failed(format!(
            "unexpected outcome {other:?}"
        )))),
    }
}
