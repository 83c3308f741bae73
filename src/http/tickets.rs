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
use crate::tickets::model::{Direction, OutboxEntry, StoredMessage, Ticket};

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
];

async fn list(c: Ctx) -> ApiResult {
    let (limit, cursor) = paging(&c.query)?;
    let filter = TicketFilter {
        mailbox: filter(&c.query, "mailbox"),
        status: filter(&c.query, "status"),
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
        message: StoredMessage,
    ) -> Result<MessageView, crate::store::StoreError> {
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
