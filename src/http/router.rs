//! Method + path -> handler. Each resource file lists its routes; a path
//! that matches no route is 404, a known path with another method is 405
//! with `Allow`. Before a handler runs: the Host check (every request), the
//! bearer token (everything under /api/), and for state-changing methods the
//! same-origin and JSON checks.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};

use super::HttpState;
use super::auth;
use super::error::ApiResult;
use super::respond::{Reply, error};

/// What a handler gets: the state, the `{...}` segments of its path in
/// order, the query string, the request headers and body.
pub struct Ctx {
    pub state: Arc<HttpState>,
    pub params: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Incoming,
}

impl Ctx {
    /// The `i`-th `{...}` segment of the path.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = ApiResult> + Send>>;
pub type Handler = fn(Ctx) -> HandlerFuture;

/// One route: `path` is a pattern of literal segments and `{name}` captures.
/// A GET route answers HEAD too.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub handler: Handler,
}

/// Every resource's routes; a new resource adds its list here.
fn tables() -> [&'static [Route]; 7] {
    [
        super::outbound::ROUTES,
        super::health::ROUTES,
        super::metrics::ROUTES,
        super::tickets::ROUTES,
        super::messages::ROUTES,
        super::rejections::ROUTES,
        super::mailboxes::ROUTES,
    ]
}

pub async fn route(state: Arc<HttpState>, req: Request<Incoming>) -> Reply {
    if let Some(refused) = auth::check_host(&state.http, &req) {
        return refused;
    }
    let path = req.uri().path().to_string();
    let trimmed = path.trim_end_matches('/');
    if (trimmed == "/api" || trimmed.starts_with("/api/"))
        && let Some(denied) = auth::check_token(state.api_token.as_deref(), req.headers())
    {
        return denied;
    }
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let method = req.method().clone();
    let mut allowed: Vec<&str> = Vec::new();
    let mut chosen = None;
    for route in tables().into_iter().flatten() {
        let Some(params) = matches(route.path, &segments) else {
            continue;
        };
        if route.method == method || (method == Method::HEAD && route.method == Method::GET) {
            chosen = Some((route.handler, params));
            break;
        }
        allowed.push(route.method.as_str());
        if route.method == Method::GET {
            allowed.push("HEAD");
        }
    }
    let Some((handler, params)) = chosen else {
        if allowed.is_empty() {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such path: {path}"),
            );
        }
        let allow = allowed.join(", ");
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}; use {allow}"),
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(ALLOW, v);
        }
        return r;
    };
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(refused) = auth::check_same_origin(req.headers()) {
            return refused;
        }
        if let Some(refused) = auth::check_json(req.headers()) {
            return refused;
        }
    }
    let query = super::params::query(req.uri().query());
    let (parts, body) = req.into_parts();
    let ctx = Ctx {
        state,
        params,
        query,
        headers: parts.headers,
        body,
    };
    match handler(ctx).await {
        Ok(reply) => reply,
        Err(e) => e.into_reply(&path),
    }
}

/// The captured segments when `segments` fit `pattern`.
fn matches(pattern: &str, segments: &[&str]) -> Option<Vec<String>> {
    let mut want = pattern.split('/').skip(1);
    let mut params = Vec::new();
    for got in segments {
        let w = want.next()?;
        if w.starts_with('{') && w.ends_with('}') {
            params.push((*got).to_string());
        } else if w != *got {
            return None;
        }
    }
    want.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        let seg = |p: &'static str| {
            p.trim_end_matches('/')
                .split('/')
                .skip(1)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            matches("/api/v1/tickets/{id}", &seg("/api/v1/tickets/7")),
            Some(vec!["7".to_string()])
        );
        assert_eq!(
            matches("/api/v1/tickets/{id}", &seg("/api/v1/tickets")),
            None
        );
        assert_eq!(matches("/api/v1/tickets", &seg("/api/v1/tickets/7")), None);
        assert_eq!(matches("/healthz", &seg("/healthz/")), Some(vec![]));
        assert_eq!(matches("/healthz", &seg("/metrics")), None);
    }
}
