//! Routing and handlers: /healthz, /metrics, /api/v1/...
//!
//! Store reads are synchronous (redb), so each runs on the blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::HttpState;
use super::respond::{Reply, bytes, error, json};
use crate::store::query::TicketFilter;
use crate::store::{Store, StoreError};
use crate::tickets::model::{StoredMessage, Ticket};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub async fn route(state: Arc<HttpState>, req: Request<Incoming>) -> Reply {
    let req = match super::mailboxes::handle(&state, req).await {
        Ok(reply) => return reply,
        Err(req) => req,
    };
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is supported here (POST only on /api/v1/mailboxes/{name}/resume and /sync)",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match segments.as_slice() {
        ["healthz"] => health(&state).await,
        ["metrics"] => bytes(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        ["api", "v1", rest @ ..] => {
            if let Some(denied) = check_token(&state, &req) {
                return denied;
            }
            match api(&state, rest, &query).await {
                Ok(reply) => reply,
                Err(ApiError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, "bad_request", m),
                Err(ApiError::NotFound(m)) => error(StatusCode::NOT_FOUND, "not_found", m),
                Err(ApiError::Store(e)) => {
                    tracing::error!(error = %e, path = %path, "api read failed");
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the store could not be read; see the server log",
                    )
                }
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such path: {path}"),
        ),
    }
}

async fn health(state: &HttpState) -> Reply {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        _ => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "error", "message": "store not readable"}),
        ),
    }
}

pub(super) fn check_token(state: &HttpState, req: &Request<Incoming>) -> Option<Reply> {
    let expected = state.api_token.as_ref()?;
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
        return None;
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token (Authorization: Bearer ...)",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mailgate\""),
    );
    Some(r)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum ApiError {
    BadRequest(String),
    NotFound(String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

type ApiResult = Result<Reply, ApiError>;

/// Runs a store read on the blocking pool.
async fn read<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(ApiError::Store),
        Err(e) => Err(ApiError::Store(StoreError::Failed(e.to_string()))),
    }
}

fn id(kind: &str, s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::NotFound(format!("no {kind} with id {s:?}")))
}

fn paging(query: &HashMap<String, String>) -> Result<(usize, Option<u64>), ApiError> {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a number from 1 to {MAX_LIMIT}, not {s:?}"
                )));
            }
        },
    };
    let cursor = match query.get("cursor").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid cursor {s:?}")))?,
        ),
    };
    Ok((limit, cursor))
}

#[derive(Serialize)]
struct TicketWithMessages {
    #[serde(flatten)]
    ticket: Ticket,
    messages: Vec<StoredMessage>,
}

async fn api(state: &HttpState, rest: &[&str], query: &HashMap<String, String>) -> ApiResult {
    let store = &state.store;
    match rest {
        ["tickets"] => {
            let (limit, cursor) = paging(query)?;
            let filter = TicketFilter {
                mailbox: query.get("mailbox").cloned().filter(|s| !s.is_empty()),
                status: query.get("status").cloned().filter(|s| !s.is_empty()),
            };
            let page = read(store, move |s| s.list_tickets(&filter, cursor, limit)).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"tickets": page.items, "next": page.next.map(|n| n.to_string())}),
            ))
        }
        ["tickets", t] => {
            let ticket_id = id("ticket", t)?;
            let found = read(store, move |s| {
                Ok(match s.ticket(ticket_id)? {
                    Some(ticket) => Some(TicketWithMessages {
                        messages: s.ticket_messages(ticket_id)?,
                        ticket,
                    }),
                    None => None,
                })
            })
            .await?;
            let found = found
                .ok_or_else(|| ApiError::NotFound(format!("no ticket with id {ticket_id}")))?;
            Ok(json(StatusCode::OK, &found))
        }
        ["messages", m] => {
            let message_id = id("message", m)?;
            let found = read(store, move |s| s.message(message_id)).await?;
            let found = found
                .ok_or_else(|| ApiError::NotFound(format!("no message with id {message_id}")))?;
            Ok(json(StatusCode::OK, &found))
        }
        ["messages", m, "raw"] => {
            let message_id = id("message", m)?;
            let raw = read(store, move |s| s.message_raw(message_id)).await?;
            let raw =
                raw.ok_or_else(|| ApiError::NotFound(format!("no message with id {message_id}")))?;
            Ok(bytes(StatusCode::OK, "message/rfc822", raw))
        }
        ["messages", m, "attachments", a] => {
            let message_id = id("message", m)?;
            let index: u32 = a
                .parse()
                .map_err(|_| ApiError::NotFound(format!("no attachment {a:?}")))?;
            let found = read(store, move |s| {
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
        ["rejections"] => {
            let (limit, cursor) = paging(query)?;
            let reason = query.get("reason").cloned().filter(|s| !s.is_empty());
            if let Some(r) = &reason
                && crate::mail::reason::RejectReason::parse(r).is_none()
            {
                return Err(ApiError::BadRequest(format!("unknown reason {r:?}")));
            }
            let page = read(store, move |s| {
                s.list_rejections(reason.as_deref(), cursor, limit)
            })
            .await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"rejections": page.items, "next": page.next.map(|n| n.to_string())}),
            ))
        }
        ["rejections", r] => {
            let rejection_id = id("rejection", r)?;
            let found = read(store, move |s| s.rejection(rejection_id)).await?;
            let found = found.ok_or_else(|| {
                ApiError::NotFound(format!("no rejection with id {rejection_id}"))
            })?;
            Ok(json(StatusCode::OK, &found))
        }
        ["rejections", r, "raw"] => {
            let rejection_id = id("rejection", r)?;
            let raw = read(store, move |s| s.rejection_raw(rejection_id)).await?;
            let raw = raw.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no raw message kept for rejection {rejection_id} (unknown id, or not kept, e.g. oversize)"
                ))
            })?;
            Ok(bytes(StatusCode::OK, "message/rfc822", raw))
        }
        _ => Err(ApiError::NotFound(format!(
            "no such API path: /api/v1/{}",
            rest.join("/")
        ))),
    }
}
