//! The submission endpoint's part of the composition root: its listeners
//! are bound with the others (a port in use stops the start before anything
//! runs), its servers built once the send worker exists to be woken.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::Core;
use crate::auth::submission::Accounts;
use crate::auth::throttle::AuthThrottle;
use crate::config::Config;
use crate::config::submission::SubmissionConfig;
use crate::inbound::smtp::budget::{BudgetLimits, ConnectionBudget};
use crate::inbound::smtp::server::{self as listener, SmtpServer};
use crate::inbound::submission::handler::SubmissionHandler;
use crate::proto::smtp::session::{AuthOffer, SessionConfig};

/// The bound, not yet serving, submission listeners.
pub struct Bound {
    config: SubmissionConfig,
    accounts: Arc<Accounts>,
    plain: Vec<TcpListener>,
    implicit: Vec<TcpListener>,
}

/// Binds the configured submission listeners and loads the accounts'
/// hashes (None when submission is off).
pub async fn bind(config: &Config) -> Result<Option<Bound>> {
    let Some(sub) = &config.submission else {
        return Ok(None);
    };
    let accounts = Accounts::new(sub).context("loading the submission accounts")?;
    Ok(Some(Bound {
        config: sub.clone(),
        accounts: Arc::new(accounts),
        plain: listener::bind(&sub.listen).await?,
        implicit: listener::bind(&sub.listen_tls).await?,
    }))
}

impl Bound {
    /// Starts serving: one task per listener, each returning its open
    /// sessions at shutdown, as the MX listeners do.
    pub fn serve(
        self,
        config: &Config,
        core: &Core,
        mx_session: &SessionConfig,
        acceptor: &TlsAcceptor,
        outbound_wake: Arc<Notify>,
        stopped: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<JoinSet<()>>>> {
        let sub = &self.config;
        let session = SessionConfig {
            max_message_size: sub.max_message_size,
            max_recipients: sub.max_recipients,
            auth: AuthOffer::Required,
            starttls_available: true,
            ..mx_session.clone()
        };
        let budget = Arc::new(ConnectionBudget::new(BudgetLimits {
            max_connections: sub.max_connections,
            max_connections_per_ip: sub.max_connections_per_ip,
            connections_per_minute_per_ip: sub.connections_per_minute_per_ip,
        }));
        // One handler (its clones share the throttle and the verification
        // slots): a client locked out on 587 is locked out on 465 too.
        let shared = SubmissionHandler::new(
            core.committer.clone(),
            self.accounts.clone(),
            AuthThrottle::new(
                sub.auth_failures_per_ip,
                sub.auth_failure_window,
                sub.auth_block,
                sub.auth_failure_delay,
            ),
            Arc::new(config.mailboxes.clone()),
            core.metrics.clone(),
            outbound_wake.clone(),
            mx_session.hostname.clone(),
        );
        let implicit_handler = shared.clone();
        let make = |session: SessionConfig, handler| {
            Arc::new(
                SmtpServer::new(
                    session,
                    handler,
                    Some(acceptor.clone()),
                    sub.idle_timeout,
                    budget.clone(),
                )
                .with_spool(core.spool.clone())
                .with_min_data_rate(sub.min_data_rate),
            )
        };
        let plain_server = make(session.clone(), shared);
        let tls_server = make(
            SessionConfig {
                starttls_available: false,
                ..session
            },
            implicit_handler,
        );
        let mut tasks = Vec::new();
        for l in self.plain {
            let address = l.local_addr().context("reading a listener's address")?;
            tracing::info!(address = %address, accounts = self.accounts.len(), "submission listening (STARTTLS, AUTH after TLS)");
            tasks.push(tokio::spawn(plain_server.clone().serve(
                l,
                false,
                stopped.clone(),
            )));
        }
        for l in self.implicit {
            let address = l.local_addr().context("reading a listener's address")?;
            tracing::info!(address = %address, accounts = self.accounts.len(), "submission listening (implicit TLS)");
            tasks.push(tokio::spawn(tls_server.clone().serve(
                l,
                true,
                stopped.clone(),
            )));
        }
        Ok(tasks)
    }
}
