//! The one place the application is wired from a [`Config`]: store,
//! committer, ingest, metrics, fetch workers, SMTP listeners and HTTP.
//!
//! Each command builds only what it needs: `test-connection` nothing but
//! the upstream settings, `sync` the [`Core`] (store, writer, ingest,
//! workers), `serve` the core and the [`Front`] (listeners). Whatever was
//! built is taken down by [`super::shutdown`], in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::oauth2::TokenUse;
use crate::config::relay::{ApiTransport, RelayConfig};
use crate::config::upstream::UpstreamConfig;
use crate::config::{Config, MailboxConfig};
use crate::inbound::mx::handler::MxHandler;
use crate::inbound::pull::scheduler::FetchControl;
use crate::inbound::smtp::budget::ConnectionBudget;
use crate::inbound::smtp::server::{self as listener, SmtpServer};
use crate::ingest::Ingestor;
use crate::ingest::route::Router;
use crate::mail::reason::RejectReason;
use crate::metrics::Metrics;
use crate::oauth::provider::TokenProviders;
use crate::outbound::compose::MailComposer;
use crate::outbound::limits::SendLimits;
use crate::outbound::relays::{RelayTransport, Relays};
use crate::outbound::templates::TemplateRenderer;
use crate::outbound::transport::gmail::GmailTransport;
use crate::outbound::transport::graph::GraphTransport;
use crate::outbound::transport::smtp::SmtpTransport;
use crate::outbound::worker::{SendWorker, SystemClock, WorkerSettings};
use crate::proto::smtp::session::{AuthOffer, SessionConfig};
use crate::store::commit::{CommitEvent, Committer, WriterHandle};
use crate::store::{Store, StoreError};
use crate::tickets::notify::{MailboxNotify, NotifySettings};
use crate::tickets::outgoing::Mailbox;
use crate::tickets::token::TokenKey;
use crate::tickets::{Sender, TicketSettings};

/// A loaded config and the builders that turn it into running parts.
pub struct App {
    config: Config,
}

/// What stores and pulls mail: the store, its single writer, ingest, and
/// one fetch worker per upstream mailbox (built, not yet started).
pub struct Core {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub ingestor: Ingestor,
    pub fetch: Arc<FetchControl>,
    /// Writes other than ingest (replies, delivery results).
    pub committer: Committer,
    /// The OAuth2 token source of each mailbox with `[mailbox.oauth2]`
    /// (for its upstream, and for a relay or transport sending as it).
    pub oauth: crate::oauth::provider::TokenProviders,
    /// Where large SMTP messages wait while they arrive (emptied at start).
    pub spool: Arc<crate::inbound::smtp::spool::Spool>,
    pub(super) writer: WriterHandle,
    /// Journal entries the store did not hold at start (see
    /// [`Core::replay_journal`]).
    journal_backlog: std::sync::Mutex<Vec<crate::store::journal::Pending>>,
}

impl Core {
    /// Ingests again what the commit journal held beyond the store (mail
    /// acknowledged just before a crash); to be called before anything
    /// else is accepted. Until it ran, the writer journals nothing new.
    pub async fn replay_journal(&self) -> Result<usize> {
        let backlog = std::mem::take(
            &mut *self
                .journal_backlog
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if backlog.is_empty() {
            self.committer.backlog_done();
            return Ok(0);
        }
        let (first, last) = (backlog[0].seq, backlog[backlog.len() - 1].seq);
        tracing::info!(
            entries = backlog.len(),
            first,
            last,
            "ingesting again the messages of the commit journal that the database does not hold"
        );
        let n = self
            .ingestor
            .replay_journal(backlog)
            .await
            .context("ingesting the commit journal again")?;
        tracing::info!(messages = n, "commit journal ingested again");
        self.metrics.journal.replayed.inc_by(n as u64);
        Ok(n)
    }
}

/// The network side of `serve`: SMTP listeners and HTTP, accepting until
/// the stop signal.
pub struct Front {
    pub(super) stop: watch::Sender<bool>,
    /// One task per SMTP listener; each returns its open sessions.
    pub(super) smtp: Vec<tokio::task::JoinHandle<JoinSet<()>>>,
    pub(super) http: tokio::task::JoinHandle<()>,
    /// The send worker; joined after the sessions, before the writer.
    pub(super) outbound: tokio::task::JoinHandle<()>,
    /// The certificate the TLS listeners present.
    pub certificate: std::path::PathBuf,
}

impl App {
    pub fn new(config: Config) -> App {
        App { config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mailbox `name` and the upstream it pulls from.
    pub fn upstream(&self, name: &str) -> Result<(&MailboxConfig, &UpstreamConfig)> {
        let config = &self.config;
        let Some(mailbox) = config.mailboxes.iter().find(|m| m.name == name) else {
            let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
            bail!(
                "no mailbox named {name:?} (configured: {})",
                names.join(", ")
            );
        };
        let Some(upstream) = &mailbox.upstream else {
            bail!("mailbox {name:?} has no [mailbox.upstream] to pull from");
        };
        Ok((mailbox, upstream))
    }

    /// Opens the database (the caller decides what "already open" means).
    pub fn open_store(&self) -> Result<Store, StoreError> {
        Store::open_with_cache(&self.config.db_path(), self.config.store.cache_size)
    }

    /// Numbering, tags, the reply-token key (loaded, or generated on first
    /// start), who each mailbox sends as, and the composer.
    pub fn ticket_settings(&self) -> Result<TicketSettings> {
        let key = crate::auth::token_key::load(&self.config.tickets.reply_token_key)?;
        Ok(TicketSettings {
            tag: self.config.tickets.tag.clone(),
            first_number: self.config.tickets.first_number,
            token: Some(TokenKey::new(&crate::auth::token_key::bytes(&key))),
            senders: senders(&self.config),
            composer: Some(Arc::new(MailComposer)),
            categories: self
                .config
                .categories
                .iter()
                .map(|c| c.key.clone())
                .collect(),
            notify: Some(Arc::new(notify_settings(&self.config)?)),
        })
    }

    /// Metrics with every series the config implies present from the start.
    pub fn metrics(&self) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new());
        let names: Vec<String> = self
            .config
            .mailboxes
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let reasons: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        metrics.init_series("smtp", &names, &reasons);
        for m in &self.config.mailboxes {
            if let Some(u) = &m.upstream {
                metrics.init_series(u.protocol.as_str(), std::slice::from_ref(&m.name), &reasons);
            }
        }
        metrics
    }

    /// Starts the writer thread on `store` and builds ingest and the fetch
    /// workers around it. Needs a Tokio runtime only once workers start.
    pub fn core(&self, store: Store) -> Result<Core> {
        let metrics = self.metrics();
        let observer_metrics = metrics.clone();
        let (committer, writer, backlog) = Committer::start_journaled(
            &store,
            self.ticket_settings()?,
            Arc::new(move |event| match event {
                CommitEvent::Batch {
                    elapsed,
                    requests,
                    end,
                } => {
                    let m = &observer_metrics;
                    m.commit_seconds.observe(elapsed.as_secs_f64());
                    m.commit_batch_size.observe(requests as f64);
                    m.journal.count_commit(end.as_str());
                }
                CommitEvent::Checkpoint { elapsed } => {
                    let m = &observer_metrics.journal;
                    m.checkpoints.inc();
                    m.checkpoint_seconds.observe(elapsed.as_secs_f64());
                }
                CommitEvent::JournalError => {
                    observer_metrics.journal.errors.inc();
                }
            }),
            self.config.store.checkpoint_interval,
            self.config.store.journal,
        )?;
        let router = Arc::new(Router::new(&self.config));
        let ingestor = Ingestor::new(committer.clone(), router, metrics.clone())
            .with_rules(crate::ingest::rules::MailRules::new(&self.config));
        let fetch = Arc::new(FetchControl::new(&self.config, &ingestor, &store, &metrics));
        for m in &self.config.mailboxes {
            metrics.outbound.init(&m.name);
        }
        let oauth = self.token_providers(&store, &metrics)?;
        let spool_dir = self.config.server.data_dir.join("spool");
        let spool = crate::inbound::smtp::spool::Spool::open(&spool_dir).with_context(|| {
            format!("cannot prepare the spool directory {}", spool_dir.display())
        })?;
        for m in &self.config.mailboxes {
            if m.oauth2.is_some() {
                metrics.oauth.init(&m.name);
            }
            let use_ = (m.upstream.as_ref()).and_then(|u| u.token_use());
            if let Some(tokens) = use_.and_then(|u| oauth.get(&m.name, u)) {
                fetch.use_tokens(&m.name, tokens);
            }
        }
        Ok(Core {
            store,
            metrics,
            ingestor,
            fetch,
            committer,
            oauth,
            spool: Arc::new(spool),
            writer,
            journal_backlog: std::sync::Mutex::new(backlog),
        })
    }

    /// A token provider per OAuth2 mailbox, its tokens kept (sealed) in
    /// `store`. The `[oauth]` key is loaded (or made) only when a mailbox
    /// uses OAuth2.
    pub fn token_providers(
        &self,
        store: &Store,
        metrics: &Arc<Metrics>,
    ) -> Result<crate::oauth::provider::TokenProviders> {
        if self.config.mailboxes.iter().all(|m| m.oauth2.is_none()) {
            return Ok(Default::default());
        }
        let ctx = crate::oauth::provider::OAuthContext::new(
            &self.config.oauth,
            Arc::new(store.clone()),
            Some(metrics.clone()),
        )?;
        Ok(crate::oauth::provider::TokenProviders::build(
            &self.config,
            &ctx,
        )?)
    }

    /// Binds every SMTP listener and HTTP (so port errors surface before
    /// anything runs) and starts accepting.
    pub async fn front(&self, core: &Core) -> Result<Front> {
        let config = &self.config;
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
            auth: AuthOffer::Off,
        };
        let implicit_session = SessionConfig {
            starttls_available: false,
            ..session.clone()
        };
        // One budget for every SMTP listener (and, later, submission).
        let budget = Arc::new(ConnectionBudget::new((&config.smtp).into()));
        let make = |session| {
            Arc::new(
                SmtpServer::new(
                    session,
                    MxHandler {
                        ingestor: core.ingestor.clone(),
                        metrics: core.metrics.clone(),
                        max_message_size: config.limits.max_message_size,
                    },
                    Some(acceptor.clone()),
                    config.smtp.idle_timeout,
                    budget.clone(),
                )
                .with_spool(core.spool.clone())
                .with_min_data_rate(config.smtp.min_data_rate),
            )
        };
        let plain_server = make(session);
        let tls_server = make(implicit_session);

        let plain = listener::bind(&config.smtp.listen).await?;
        let implicit = listener::bind(&config.smtp.listen_tls).await?;
        let submission = super::submission::bind(config).await?;
        let http_listener = crate::http::bind(config.http.listen).await?;

        let api_token = config
            .http
            .api_token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|t| !t.is_empty());
        let relays = relays(config, &core.oauth)?;
        let (stop, stopped) = watch::channel(false);
        let worker = SendWorker::new(
            core.store.clone(),
            core.committer.clone(),
            relays,
            WorkerSettings {
                limits: send_limits(config, &Default::default()),
                per_mailbox: config
                    .mailboxes
                    .iter()
                    .map(|m| (m.name.clone(), send_limits(config, &m.send_limits)))
                    .collect(),
                max_age: config.outbound.max_age,
                retry_base: config.outbound.retry_initial,
                ..WorkerSettings::default()
            },
            core.metrics.clone(),
            Arc::new(SystemClock),
        );
        let outbound_wake = worker.waker();
        let mx_session = plain_server.session.as_ref().clone();
        let outbound = tokio::spawn(worker.run(stopped.clone()));
        tokio::spawn(super::retention::run(
            core.store.clone(),
            core.committer.clone(),
            core.metrics.clone(),
            config.tickets.rejection_retention,
            stopped.clone(),
        ));
        let http_state = Arc::new(crate::http::HttpState {
            store: core.store.clone(),
            metrics: core.metrics.clone(),
            api_token,
            mailboxes: config.mailboxes.clone(),
            fetch: core.fetch.clone(),
            http: config.http.clone(),
            committer: core.committer.clone(),
            outbound_wake,
            max_message_size: config.limits.max_message_size,
            categories: config.categories.clone(),
            oauth_degraded_after: config.oauth.degraded_after,
            ingestor: core.ingestor.clone(),
        });

        let mut smtp = Vec::new();
        let spawn = |server: &Arc<SmtpServer<MxHandler>>, l: TcpListener, implicit_tls: bool| {
            tokio::spawn(server.clone().serve(l, implicit_tls, stopped.clone()))
        };
        for l in plain {
            tracing::info!(address = %local(&l)?, "SMTP listening (STARTTLS offered)");
            smtp.push(spawn(&plain_server, l, false));
        }
        for l in implicit {
            tracing::info!(address = %local(&l)?, "SMTP listening (implicit TLS)");
            smtp.push(spawn(&tls_server, l, true));
        }
        if let Some(bound) = submission {
            smtp.extend(bound.serve(
                config,
                core,
                &mx_session,
                &acceptor,
                http_state.outbound_wake.clone(),
                &stopped,
            )?);
        }
        tracing::info!(
            address = %config.http.listen,
            api_token = http_state.api_token.is_some(),
            "HTTP listening (/healthz, /metrics, /api/v1)"
        );
        let http = tokio::spawn(crate::http::serve(
            http_listener,
            http_state,
            stopped.clone(),
        ));
        Ok(Front {
            stop,
            smtp,
            http,
            outbound,
            certificate: cert_path,
        })
    }
}

fn local(l: &TcpListener) -> Result<std::net::SocketAddr> {
    l.local_addr().context("reading a listener's address")
}

/// Notification settings: the config's, every mailbox's team and
/// overrides, our own addresses, and the templates (loaded and parsed now,
/// so a broken template stops the start with its file named).
pub fn notify_settings(config: &Config) -> Result<NotifySettings> {
    let renderer = TemplateRenderer::load(&config.notify.templates_dir)
        .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;
    Ok(NotifySettings {
        config: config.notify.clone(),
        mailboxes: config
            .mailboxes
            .iter()
            .map(|m| {
                let notify = MailboxNotify {
                    team: m.team.clone(),
                    overrides: m.notify.clone(),
                };
                (m.name.clone(), notify)
            })
            .collect(),
        default_mailbox: config.default_mailbox().map(|m| m.name.clone()),
        own_addresses: config
            .mailboxes
            .iter()
            .flat_map(|m| m.addresses.iter().cloned())
            .collect(),
        renderer: Arc::new(renderer),
    })
}

/// Who each mailbox sends as: From its first address (with its display
/// name), Reply-To that address, or the default mailbox's first address
/// when it has none (ZEP's rule); a mailbox with neither cannot send.
pub fn senders(config: &Config) -> BTreeMap<String, Sender> {
    let default = config
        .default_mailbox()
        .and_then(|m| m.addresses.first().cloned());
    config
        .mailboxes
        .iter()
        .filter_map(|m| {
            let own = m.addresses.first().cloned();
            let reply_to = own.clone().or_else(|| default.clone())?;
            let from = own.unwrap_or_else(|| reply_to.clone());
            Some((
                m.name.clone(),
                Sender {
                    from: Mailbox {
                        name: m.display_name.clone(),
                        address: from,
                    },
                    reply_to,
                },
            ))
        })
        .collect()
}

/// A mailbox's budgets: its own `[mailbox.send_limits]` over `[outbound]`.
fn send_limits(config: &Config, own: &crate::config::outbound::MailboxLimits) -> SendLimits {
    let o = &config.outbound;
    SendLimits {
        messages: own.messages_per_minute.unwrap_or(o.messages_per_minute),
        bytes: own.bytes_per_5_minutes.unwrap_or(o.bytes_per_5_minutes),
        recipients: own.recipients_per_day.unwrap_or(o.recipients_per_day),
        ..SendLimits::default()
    }
}

/// Every mailbox's relay: its own `[mailbox.relay]`, else `[relay]`
/// (logged per mailbox at start, without secrets).
pub fn relays(config: &Config, oauth: &TokenProviders) -> Result<Relays> {
    let default = match &config.relay {
        Some(relay) => {
            let t = relay_transport(relay, oauth)
                .context("[relay]")?
                .into_transport();
            tracing::info!(relay = %t.describe(), "outbound relay");
            Some(t)
        }
        None => None,
    };
    let mut relays = Relays::new(default.clone());
    for m in &config.mailboxes {
        match (&m.relay, &default) {
            (Some(relay), _) => {
                let t = relay_transport(relay, oauth)
                    .with_context(|| format!("[mailbox.relay] of mailbox {:?}", m.name))?
                    .into_transport();
                tracing::info!(mailbox = %m.name, relay = %t.describe(), "outbound relay of the mailbox ([mailbox.relay])");
                relays = relays.with_mailbox(&m.name, t);
            }
            (None, Some(t)) => {
                tracing::info!(mailbox = %m.name, relay = %t.describe(), "outbound relay of the mailbox ([relay])");
            }
            (None, None) => {
                tracing::warn!(mailbox = %m.name, "no outbound relay for the mailbox (no [mailbox.relay], no [relay]): its mail stays queued");
            }
        }
    }
    Ok(relays)
}

/// The transport a relay config describes: SMTP (with the XOAUTH2 token
/// source of its mailbox when `auth = "oauth2"`), Graph or Gmail (with
/// the API token source of its mailbox).
pub fn relay_transport(relay: &RelayConfig, oauth: &TokenProviders) -> Result<RelayTransport> {
    let Some(api) = relay.api.as_ref() else {
        let tokens =
            match &relay.oauth2 {
                Some(o) => Some(oauth.get(&o.mailbox, TokenUse::Smtp).with_context(|| {
                    format!("mailbox {:?} has no OAuth2 token source", o.mailbox)
                })?),
                None => None,
            };
        return Ok(RelayTransport::Smtp(SmtpTransport::from_config(
            relay, tokens,
        )?));
    };
    let use_ = match api.kind {
        ApiTransport::Graph => TokenUse::Graph,
        ApiTransport::Gmail => TokenUse::Gmail,
    };
    let tokens = oauth
        .get(&api.mailbox, use_)
        .with_context(|| format!("mailbox {:?} has no OAuth2 token source", api.mailbox))?;
    let http = crate::oauth::http::HttpClient::new(relay.ca_file.clone(), relay.command_timeout)
        .context("the HTTPS client for the API transport")?;
    Ok(match api.kind {
        ApiTransport::Graph => {
            RelayTransport::Graph(GraphTransport::new(http, &api.api_base, &api.user, tokens))
        }
        ApiTransport::Gmail => {
            RelayTransport::Gmail(GmailTransport::new(http, &api.api_base, &api.user, tokens))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_without_an_address_sends_with_the_default_mailboxs_reply_to() {
        let mut config = Config::parse(
            "[server]\ndomains = [\"example.test\"]\n\
             [[mailbox]]\nname = \"support\"\naddresses = [\"support@example.test\"]\ndefault = true\n\
             [[mailbox]]\nname = \"sales\"\ndisplay_name = \"Sales Team\"\naddresses = [\"sales@example.test\"]\n",
        )
        .unwrap();
        let s = senders(&config);
        assert_eq!(s["sales"].reply_to, "sales@example.test");
        assert_eq!(s["sales"].from.name.as_deref(), Some("Sales Team"));
        // A mailbox with no address of its own (as an upstream-only mailbox
        // may be): Reply-To and From fall back to the default mailbox's.
        config.mailboxes[1].addresses.clear();
        let s = senders(&config);
        assert_eq!(s["sales"].reply_to, "support@example.test");
        assert_eq!(s["sales"].from.address, "support@example.test");
        // Without a default mailbox it cannot send at all.
        config.mailboxes[0].default = false;
        assert!(!senders(&config).contains_key("sales"));
    }
}
