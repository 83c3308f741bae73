//! `mailgate serve`: wires store, ingest, SMTP and HTTP together and runs
//! them until SIGINT/SIGTERM, then lets open sessions finish.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::config::Config;
use crate::inbound::mx::listener::{self, SmtpServer};
use crate::ingest::Ingestor;
use crate::ingest::route::Router;
use crate::metrics::Metrics;
use crate::proto::smtp::session::SessionConfig;
use crate::store::Store;
use crate::store::commit::Committer;
use crate::tickets::TicketSettings;

/// How long shutdown waits for open SMTP sessions.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(config: Config) -> Result<()> {
    let db_path = config.db_path();
    let store = Store::open(&db_path)
        .with_context(|| format!("opening the database {}", db_path.display()))?;
    let metrics = Arc::new(Metrics::new());
    let names: Vec<String> = config.mailboxes.iter().map(|m| m.name.clone()).collect();
    let reasons: Vec<&str> = crate::mail::reason::RejectReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    metrics.init_series("smtp", &names, &reasons);
    for m in &config.mailboxes {
        if let Some(u) = &m.upstream {
            metrics.init_series(u.protocol.as_str(), std::slice::from_ref(&m.name), &reasons);
        }
    }
    let observer_metrics = metrics.clone();
    let committer = Committer::start(
        &store,
        TicketSettings {
            tag: config.tickets.tag.clone(),
            first_number: config.tickets.first_number,
            token: None,
        },
        Arc::new(move |elapsed, batch| {
            observer_metrics
                .commit_seconds
                .observe(elapsed.as_secs_f64());
            observer_metrics.commit_batch_size.observe(batch as f64);
        }),
    );
    let router = Arc::new(Router::new(&config));
    let ingestor = Ingestor::new(committer, router, metrics.clone());
    let fetch = Arc::new(crate::inbound::pull::scheduler::FetchControl::new(
        &config, &ingestor, &store, &metrics,
    ));

    let (tls_config, cert_path) = crate::tls::server_config(&config.tls)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);

    let session = SessionConfig {
        hostname: config.server.hostname.clone(),
        max_message_size: config.limits.max_message_size,
        max_recipients: config.smtp.max_recipients,
        max_line_length: config.smtp.max_line_length,
        max_commands: config.smtp.max_commands,
        max_errors: 20,
        bare_lf: config.smtp.bare_lf,
        starttls_available: true,
    };
    let implicit_session = SessionConfig {
        starttls_available: false,
        ..session.clone()
    };
    let make = |session| {
        Arc::new(SmtpServer::new(
            session,
            ingestor.clone(),
            metrics.clone(),
            Some(acceptor.clone()),
            config.smtp.idle_timeout,
            config.smtp.max_connections,
            config.smtp.connections_per_minute_per_ip,
        ))
    };
    let plain_server = make(session);
    let tls_server = make(implicit_session);

    let plain = listener::bind(&config.smtp.listen).await?;
    let implicit = listener::bind(&config.smtp.listen_tls).await?;
    let http_listener = crate::http::bind(config.http.listen).await?;

    let api_token = config
        .http
        .api_token_env
        .as_ref()
        .and_then(|name| std::env::var(name).ok())
        .filter(|t| !t.is_empty());
    let http_state = Arc::new(crate::http::HttpState {
        store: store.clone(),
        metrics: metrics.clone(),
        api_token,
        mailboxes: config.mailboxes.clone(),
        fetch: fetch.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    for l in plain {
        tracing::info!(address = %l.local_addr()?, "SMTP listening (STARTTLS offered)");
        tokio::spawn(plain_server.clone().serve(l, false, stop_rx.clone()));
    }
    for l in implicit {
        tracing::info!(address = %l.local_addr()?, "SMTP listening (implicit TLS)");
        tokio::spawn(tls_server.clone().serve(l, true, stop_rx.clone()));
    }
    tracing::info!(
        address = %config.http.listen,
        api_token = http_state.api_token.is_some(),
        "HTTP listening (/healthz, /metrics, /api/v1)"
    );
    tokio::spawn(crate::http::serve(
        http_listener,
        http_state,
        stop_rx.clone(),
    ));
    fetch.start(stop_rx.clone());
    tracing::info!(
        database = %db_path.display(),
        certificate = %cert_path.display(),
        domains = ?config.server.domains,
        mailboxes = config.mailboxes.len(),
        "mailgate ready"
    );

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, open sessions get 421");
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while metrics.smtp_sessions_active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
