//! HTTP: health, Prometheus metrics and the JSON API (hyper, HTTP/1.1).
//!
//! Loopback by default. The API can require a bearer token, read from an
//! environment variable at start (never from the config, never logged).

mod api;
mod mailboxes;
mod respond;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::Store;

/// Concurrent HTTP connections; more are closed at once.
const MAX_CONNECTIONS: usize = 256;

/// What the handlers read.
pub struct HttpState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Required bearer token for /api/, when configured.
    pub api_token: Option<String>,
    /// Configured mailboxes, in config order.
    pub mailboxes: Vec<crate::config::MailboxConfig>,
    /// Upstream workers, for status, resume and sync-now.
    pub fetch: Arc<crate::inbound::pull::scheduler::FetchControl>,
}

pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("http.listen: cannot listen on {address}"))
}

/// Serves until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "too many HTTP connections; closing this one");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| handle(state.clone(), req));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "http connection ended");
            }
        });
    }
}

async fn handle(
    state: Arc<HttpState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(api::route(state, req).await)
}
