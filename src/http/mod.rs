//! HTTP: health, Prometheus metrics and the JSON API (hyper, HTTP/1.1).
//!
//! Loopback by default. Every request must name an accepted `Host` (DNS
//! rebinding); state-changing requests must be same-origin JSON (cross-site
//! requests); the API can require a bearer token, read from an environment
//! variable at start (never from the config, never logged).
//!
//! `router` maps method and path to a handler of one of the resource files;
//! `auth` holds the checks; `connections` keeps health reachable when idle
//! connections fill the cap.

mod auth;
mod body;
mod connections;
mod error;
mod health;
mod mailboxes;
mod messages;
mod metrics;
mod outbound;
mod params;
mod read;
mod rejections;
mod respond;
mod router;
mod tickets;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use connections::Connections;

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
    /// The `[http]` section: accepted hosts, connection cap, timeouts.
    pub http: HttpConfig,
    /// Writes (agent replies, retries) go through the group-commit writer.
    pub committer: crate::store::commit::Committer,
    /// Wakes the send worker when something was queued.
    pub outbound_wake: Arc<tokio::sync::Notify>,
    /// Largest reply (text, HTML and attachments) accepted, in bytes.
    pub max_message_size: usize,
    /// The configured categories, for `/api/v1/categories`.
    pub categories: Vec<crate::config::categories::CategoryConfig>,
    /// `[oauth] degraded_after`: failing refreshes this long make /healthz degraded.
    pub oauth_degraded_after: std::time::Duration,
    /// The ingest pipeline, for replaying a rejection the way SMTP ingests.
    pub ingestor: crate::ingest::Ingestor,
}

pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("http.listen: cannot listen on {address}"))
}

/// Serves until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    let connections = Connections::new(state.http.max_connections);
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
        let Some(slot) = connections.admit() else {
            tracing::warn!(client = %peer, "too many busy HTTP connections; closing this one");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service_slot = slot.clone();
            let service_state = state.clone();
            let service = service_fn(move |req| {
                let busy = service_slot.busy();
                let state = service_state.clone();
                async move {
                    let reply = router::route(state, req).await;
                    drop(busy);
                    Ok::<_, Infallible>(reply)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                // Also bounds the idle time between keep-alive requests.
                .header_read_timeout(state.http.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "http connection ended");
                },
                () = slot.evicted() => {
                    tracing::debug!(client = %peer, "idle http connection closed to make room");
                }
            }
        });
    }
}
