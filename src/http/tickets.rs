//! /api/v1/tickets: the list (filters, paging) and one ticket with its
//! messages.

use hyper::{Method, StatusCode};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::params::{filter, id, paging};
use super::read::read;
use super::respond::json;
use super::router::{Ctx, Route};
use crate::store::query::TicketFilter;
use crate::tickets::model::{
    BodyStore, Direction, OutboxEntry, StoredMessage, Ticket, TicketEvent, TicketStatus,
};
use crate::tickets::{OpOutcome, Operation, TicketUpdate, UpdateOutcome};

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/tickets",
        handler: |c| Box::pin(list(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tickets/{id}",
        handler: |c| Box::pin(one(c)),
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/tickets/{id}",
        handler: |c| Box::pin(patch(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/categories",
        handler: |c| Box::pin(categories(c)),
    },
];

/// `{"status"?, "assignee"? (an address, or null to clear), "categories"?
/// (the whole set of keys), "by"? (who makes the change)}`.
async fn patch(c: Ctx) -> ApiResult {
    let ticket_id = id("ticket", c.param(0))?;
    let body = match super::body::read(c.body, 64 * 1024).await {
        Ok(b) => b,
        Err(refused) => return Ok(refused),
    };
    let bad = |m: String| ApiError::BadRequest(m);
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "invalid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Some(fields) = value.as_object() else {
        return Err(bad("expected a JSON object".into()));
    };
    let mut update = TicketUpdate {
        ticket_id,
        at: crate::now_rfc3339(),
        ..TicketUpdate::default()
    };
    for (key, v) in fields {
        match key.as_str() {
            "status" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad("status must be a string".into()))?;
                update.status = Some(TicketStatus::parse(s).ok_or_else(|| {
                    bad(format!(
                        "unknown status {s:?} (one of new, open, pending, done, rejected, accepted)"
                    ))
                })?);
            }
            "assignee" => {
                update.assignee = Some(match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    _ => return Err(bad("assignee must be an address or null".into())),
                });
            }
            "categories" => {
                let list = v
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                    .ok_or_else(|| bad("categories must be a list of category keys".into()))?;
                update.categories = Some(list);
            }
            "by" => {
                update.by = v
                    .as_str()
                    .map(str::to_string)
                    .filter(|s| !s.trim().is_empty())
            }
            other => return Err(bad(format!("unknown field {other:?}"))),
        }
    }
    match c.state.committer.apply(Operation::Update(update)).await? {
        OpOutcome::Updated(UpdateOutcome::Updated { ticket, events }) => {
            for e in &events {
                tracing::info!(ticket = ticket.number, by = ?e.by, change = ?e.change, "ticket changed");
            }
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"ticket": ticket, "events": events}),
            ))
        }
        OpOutcome::Updated(UpdateOutcome::NoTicket) => {
            Err(ApiError::NotFound(format!("no ticket with id {ticket_id}")))
        }
        OpOutcome::Updated(UpdateOutcome::Invalid(why)) => Err(ApiError::Unprocessable(why)),
        other => Err(ApiError::Store(crate::store::StoreError::Failed(format!(
            "unexpected outcome {other:?}"
        )))),
    }
}

/// The configured categories with their labels in `?lang=` (else English,
/// else the key).
async fn categories(c: Ctx) -> ApiResult {
    let lang = filter(&c.query, "lang").unwrap_or_else(|| "en".into());
    let list: Vec<serde_json::Value> = c
        .state
        .categories
        .iter()
        .map(|cat| serde_json::json!({"key": cat.key, "label": cat.label(&lang), "labels": cat.labels}))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"categories": list}),
    ))
}

async fn list(c: Ctx) -> ApiResult {
    let (limit, cursor) = paging(&c.query)?;
    let filter = TicketFilter {
        mailbox: filter(&c.query, "mailbox"),
        status: filter(&c.query, "status"),
        category: filter(&c.query, "category"),
    };
    let page = read(&c.state.store, move |s| {
        s.list_tickets(&filter, cursor, limit)
    })
    .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"tickets": page.items, "next": page.next.map(|n| n.to_string())}),
    ))
}

#[derive(Serialize)]
struct TicketWithMessages {
    #[serde(flatten)]
    ticket: Ticket,
    messages: Vec<MessageView>,
    /// Every change made to the ticket, oldest first.
    events: Vec<TicketEvent>,
    /// Automatic messages sent about it (acknowledgement, notices), with
    /// their delivery state.
    notifications: Vec<MessageView>,
}

/// A message as the ticket shows it: outbound ones with their delivery
/// state (queued, deferred, sent, failed).
#[derive(Serialize)]
pub(super) struct MessageView {
    #[serde(flatten)]
    pub message: StoredMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<OutboxEntry>,
}

impl MessageView {
    pub fn of(
        store: &crate::store::Store,
        mut message: StoredMessage,
    ) -> Result<MessageView, crate::store::StoreError> {
        if message.body == BodyStore::Raw {
            // The record keeps no copy of the body: parse it from the raw bytes.
            if let Some((text, html)) = store
                .message_raw(message.id)?
                .and_then(|raw| crate::ingest::parse::body(&raw))
            {
                message.text = text;
                message.html = html;
            }
            message.body = BodyStore::Record;
        }
        let delivery = match message.direction {
            Direction::Outbound => store.outbox(message.id)?,
            _ => None,
        };
        Ok(MessageView { message, delivery })
    }
}

async fn one(c: Ctx) -> ApiResult {
    let ticket_id = id("ticket", c.param(0))?;
    let found = read(&c.state.store, move |s| {
        Ok(match s.ticket(ticket_id)? {
            Some(ticket) => Some(TicketWithMessages {
                messages: s
                    .ticket_messages(ticket_id)?
                    .into_iter()
                    .map(|m| MessageView::of(s, m))
                    .collect::<Result<_, _>>()?,
                events: s.ticket_events(ticket_id)?,
                notifications: s
                    .ticket_notifications(ticket_id)?
                    .into_iter()
                    .map(|m| MessageView::of(s, m))
                    .collect::<Result<_, _>>()?,
                ticket,
            }),
            None => None,
        })
    })
    .await?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("no ticket with id {ticket_id}")))?;
    Ok(json(StatusCode::OK, &found))
}
