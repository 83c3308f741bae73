//! GET /healthz: 200 when the store answers, 503 otherwise (for load
//! balancers and probes; open without the API token). Still 200 but
//! `degraded`, with the mailboxes named, when an OAuth2 mailbox is about to
//! stop working (refreshes failing too long, client secret expiring).

use hyper::{Method, StatusCode};

use super::error::ApiResult;
use super::respond::json;
use super::router::{Ctx, Route};

pub const ROUTES: &[Route] = &[Route {
    method: Method::GET,
    path: "/healthz",
    handler: |c| Box::pin(health(c)),
}];

async fn health(c: Ctx) -> ApiResult {
    let store = c.state.store.clone();
    Ok(
        match tokio::task::spawn_blocking(move || store.ping()).await {
            Ok(Ok(())) => {
                let mut degraded = Vec::new();
                for m in &c.state.mailboxes {
                    if let Some(o) = &m.oauth2 {
                        let health = super::mailboxes::oauth_health(&c.state, &m.name, o).await;
                        if let Some(reasons) = health["degraded_reasons"].as_array()
                            && !reasons.is_empty()
                        {
                            degraded
                                .push(serde_json::json!({"mailbox": m.name, "reasons": reasons}));
                        }
                    }
                }
                if degraded.is_empty() {
                    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
                } else {
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"status": "degraded", "degraded": degraded}),
                    )
                }
            }
            _ => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "error", "message": "store not readable"}),
            ),
        },
    )
}
