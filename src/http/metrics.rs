//! GET /metrics: the Prometheus exposition, OpenMetrics when the scraper's
//! Accept header asks for it, the classic text format otherwise.

use hyper::header::{ACCEPT, HeaderValue, VARY};
use hyper::{Method, StatusCode};

use super::error::ApiResult;
use super::respond::bytes;
use super::router::{Ctx, Route};
use crate::metrics::Format;

pub const ROUTES: &[Route] = &[Route {
    method: Method::GET,
    path: "/metrics",
    handler: |c| Box::pin(metrics(c)),
}];

async fn metrics(c: Ctx) -> ApiResult {
    let accept: Vec<&str> = c
        .headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accept = accept.join(",");
    let format = Format::negotiate((!accept.is_empty()).then_some(accept.as_str()));
    let mut r = bytes(
        StatusCode::OK,
        format.content_type(),
        c.state.metrics.render_as(format),
    );
    r.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept"));
    Ok(r)
}
