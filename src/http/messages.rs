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
        attachment_bytes(s, message_id, index)
    })
    .await?;
    let data = found.ok_or_else(|| {
        ApiError::NotFound(format!("no attachment {index} on message {message_id}"))
    })?;
    Ok(bytes(StatusCode::OK, "application/octet-stream", data))
}

/// The decoded bytes of attachment `index` of a message, None when it has
/// no such attachment. Messages stored before bodies were derived have them
/// in their own table; the others are decoded from the raw bytes.
fn attachment_bytes(
    s: &crate::store::Store,
    message_id: u64,
    index: u32,
) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
    let Some(message) = s.message(message_id)? else {
        return Ok(None);
    };
    if !message.attachments.iter().any(|x| x.index == index) {
        return Ok(None);
    }
    if let Some(bytes) = s.attachment(message_id, index)? {
        return Ok(Some(bytes));
    }
    Ok(s.message_raw(message_id)?
        .and_then(|raw| crate::ingest::parse::attachment(&raw, index)))
}

#[cfg(test)]
mod tests {
    use super::attachment_bytes;
    use crate::http::tickets::MessageView;
    use crate::store::Store;
    use crate::store::schema::{ATTACHMENTS, MESSAGE_RAW, MESSAGES};
    use crate::tickets::model::{BodyStore, Direction, StoredMessage};

    const RAW: &[u8] = b"From: Ann <ann@customer.test>\r\nSubject: printer\r\nMessage-ID: <p1@customer.test>\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=\"c\"\r\n\r\n--c\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nIt smokes =E0 nouveau.\r\n--c\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>It smokes</p>\r\n--c--\r\n--b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";

    /// The record as ingest makes it, with the body in the record (as
    /// versions before derived bodies wrote it) or only in the raw bytes.
    fn record(id: u64, body: BodyStore) -> StoredMessage {
        let parsed = crate::ingest::parse::parse(RAW).unwrap();
        let derived = body == BodyStore::Raw;
        StoredMessage {
            id,
            ticket_id: 1,
            direction: Direction::Inbound,
            message_id: "p1@customer.test".into(),
            in_reply_to: vec![],
            references: vec![],
            from: parsed.from.clone(),
            to: vec![],
            cc: vec![],
            date: None,
            subject: parsed.subject.clone(),
            text: if derived {
                String::new()
            } else {
                parsed.text.clone()
            },
            html: if derived { None } else { parsed.html.clone() },
            attachments: parsed.attachments.clone(),
            auto_submitted: false,
            source: "smtp".into(),
            envelope: Default::default(),
            received_at: "2026-01-01T00:00:00Z".into(),
            size: RAW.len() as u64,
            body,
            trace: Default::default(),
        }
    }

    #[test]
    fn old_records_and_derived_bodies_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let old = serde_json::to_vec(&record(1, BodyStore::Record)).unwrap();
        // What older versions wrote has no "body" key at all.
        assert!(!String::from_utf8_lossy(&old).contains("\"body\""));
        let new = serde_json::to_vec(&record(2, BodyStore::Raw)).unwrap();
        assert!(new.len() < old.len());
        let txn = store.db().begin_write().unwrap();
        {
            let mut messages = txn.open_table(MESSAGES).unwrap();
            let mut raw = txn.open_table(MESSAGE_RAW).unwrap();
            let mut attachments = txn.open_table(ATTACHMENTS).unwrap();
            messages.insert(1, old.as_slice()).unwrap();
            messages.insert(2, new.as_slice()).unwrap();
            raw.insert(1, RAW).unwrap();
            raw.insert(2, RAW).unwrap();
            attachments.insert((1, 0), &b"%PDF-1.4\n"[..]).unwrap();
        }
        txn.commit().unwrap();

        let view = |id| {
            let m = store.message(id).unwrap().unwrap();
            let mut json = serde_json::to_value(MessageView::of(&store, m).unwrap()).unwrap();
            json["id"] = 0.into();
            json
        };
        let (a, b) = (view(1), view(2));
        assert_eq!(a, b);
        assert_eq!(a["text"], "It smokes \u{e0} nouveau.");
        assert_eq!(a["html"], "<p>It smokes</p>");
        assert!(
            a.get("body").is_none(),
            "the API shows no storage detail: {a}"
        );
        for id in [1, 2] {
            assert_eq!(
                attachment_bytes(&store, id, 0).unwrap().as_deref(),
                Some(&b"%PDF-1.4\n"[..])
            );
            assert_eq!(attachment_bytes(&store, id, 1).unwrap(), None);
        }
    }
}
