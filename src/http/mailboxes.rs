//! /api/v1/mailboxes: each mailbox with its upstream sync status, and the
//! two operator actions: resume (after auth_failed) and sync now.

use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpState;
use super::error::ApiResult;
use super::respond::{Reply, error, json as json_reply};
use super::router::{Ctx, Route};
use crate::config::MailboxConfig;
use crate::mail::{AfterImport, Security};
use crate::store::mailbox_state::{MailboxState, SyncStatus};

/// Largest POST body accepted (it holds at most a password).
const MAX_BODY: usize = 8 * 1024;

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/mailboxes",
        handler: |c| Box::pin(async move { Ok(list(&c.state).await) }),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/mailboxes/{name}",
        handler: |c| Box::pin(get_one(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/mailboxes/{name}/resume",
        handler: |c| Box::pin(action(c, "resume")),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/mailboxes/{name}/sync",
        handler: |c| Box::pin(action(c, "sync")),
    },
];

async fn get_one(c: Ctx) -> ApiResult {
    let name = c.param(0);
    Ok(match one(&c.state, name).await {
        Some(r) => r,
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no mailbox named {name:?}"),
        ),
    })
}

async fn action(c: Ctx, action: &'static str) -> ApiResult {
    let name = c.param(0).to_string();
    Ok(post(&c.state, &name, action, c.body).await)
}

async fn list(state: &HttpState) -> Reply {
    let mut out = Vec::new();
    for m in &state.mailboxes {
        out.push(describe(state, m).await);
    }
    json_reply(StatusCode::OK, &json!({ "mailboxes": out }))
}

async fn one(state: &HttpState, name: &str) -> Option<Reply> {
    let m = state.mailboxes.iter().find(|m| m.name == name)?;
    Some(json_reply(StatusCode::OK, &describe(state, m).await))
}

async fn describe(state: &HttpState, m: &MailboxConfig) -> Value {
    let mut v = json!({
        "name": m.name,
        "addresses": m.addresses,
        "queue": m.queue,
        "default": m.default,
        "upstream": Value::Null,
        "status": "none",
    });
    if let Some(o) = &m.oauth2 {
        v["oauth"] = oauth_health(state, &m.name, o).await;
    }
    let (Some(upstream), Some(worker)) = (&m.upstream, state.fetch.get(&m.name)) else {
        return v;
    };
    v["upstream"] = json!({
        "protocol": upstream.protocol.as_str(),
        "host": upstream.host,
        "port": upstream.port,
        "security": match upstream.security {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::None => "none",
        },
        "user": upstream.user,
        "folder": upstream.folder,
        "after_import": match upstream.after_import {
            AfterImport::Label { .. } => "label",
            AfterImport::Move { .. } => "move",
            AfterImport::Delete => "delete",
            AfterImport::Keep => "keep",
        },
        "active": upstream.active,
        "poll_interval_seconds": upstream.poll_interval.as_secs(),
    });
    merge_state(&mut v, &worker.state().await);
    v
}

/// The mailbox's token health (from the store; no secret in it).
pub(super) async fn oauth_health(
    state: &HttpState,
    name: &str,
    config: &crate::config::oauth2::OAuth2Config,
) -> Value {
    let store = state.store.clone();
    let key = name.to_string();
    let health = tokio::task::spawn_blocking(move || store.oauth_tokens(&key))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .map(|r| r.health);
    crate::oauth::health::describe(
        config,
        health.as_ref(),
        state.oauth_degraded_after,
        crate::oauth::health::now(),
    )
}

fn merge_state(v: &mut Value, s: &MailboxState) {
    v["status"] = json!(match s.status {
        SyncStatus::Ok => "ok",
        SyncStatus::Paused => "paused",
        SyncStatus::AuthFailed => "auth_failed",
        SyncStatus::Error => "error",
    });
    v["last_success"] = json!(s.last_success);
    v["last_error"] = json!(s.last_error);
    v["last_error_kind"] = json!(s.last_error_kind);
    v["last_error_at"] = json!(s.last_error_at);
    v["imported"] = json!(s.imported);
    v["auth_failures"] = json!(s.auth_failures);
}

#[derive(Deserialize, Default)]
struct SyncBody {
    password: Option<String>,
}

async fn post(state: &HttpState, name: &str, action: &str, body: Incoming) -> Reply {
    let Some(worker) = state.fetch.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no mailbox named {name:?} with an upstream"),
        );
    };
    match action {
        "resume" => {
            let s = worker.resume().await;
            let mut v = json!({"name": name});
            merge_state(&mut v, &s);
            json_reply(StatusCode::OK, &v)
        }
        "sync" => {
            let bytes = match super::body::read(body, MAX_BODY).await {
                Ok(b) => b,
                Err(refused) => return refused,
            };
            let parsed: SyncBody = if bytes.iter().all(u8::is_ascii_whitespace) {
                SyncBody::default()
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(b) => b,
                    // serde's message may quote the value (the password): not echoed.
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            format!(
                                "invalid JSON body at line {} column {}: expected {{\"password\": \"...\"}} or nothing",
                                e.line(),
                                e.column()
                            ),
                        );
                    }
                }
            };
            let credential = match parsed.password.filter(|p| !p.is_empty()) {
                Some(p) => crate::auth::credential::from_password(p),
                None => match worker.credential() {
                    Ok(p) => p,
                    Err(e) => return error(StatusCode::BAD_REQUEST, "no_password", e.to_string()),
                },
            };
            match worker.sync_with(credential).await {
                Ok(report) => json_reply(
                    StatusCode::OK,
                    &json!({
                        "name": name,
                        "listed": report.listed,
                        "imported": report.imported,
                        "rejected": report.rejected,
                        "duplicates": report.duplicates,
                        "resumed": report.resumed,
                        "throttled": report.throttled,
                    }),
                ),
                Err(e) => json_reply(
                    StatusCode::BAD_GATEWAY,
                    &json!({"error": "sync_failed", "kind": e.kind(), "message": e.to_string()}),
                ),
            }
        }
        other => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no mailbox action {other:?} (resume, sync)"),
        ),
    }
}
