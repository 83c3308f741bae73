//! GET /healthz: 200 when the store answers, 503 otherwise (for load
//! balancers and probes; open without the API token).

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
            Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            _ => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "error", "message": "store not readable"}),
            ),
        },
    )
}
