//! One worker per upstream mailbox: sync, wait (poll interval, IMAP IDLE,
//! or backoff after an error), repeat. Authentication failures are counted;
//! after `auth_failure_limit` in a row the mailbox is paused as
//! `auth_failed` (so the provider does not lock the account) until an
//! operator resumes it or a manual sync with a good password succeeds.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{Quota, RateLimiter};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use super::connect::{AnyUpstream, UpstreamSettings};
use super::engine::{SyncContext, SyncError, SyncReport, sync_until};
use crate::auth::credential;
use crate::config::upstream::{Protocol, UpstreamConfig};
use crate::config::{Config, MailboxConfig};
use crate::ingest::Ingestor;
use crate::mail::{AccessTokens, Credential};
use crate::metrics::{MailboxLabel, Metrics};
use crate::store::Store;
use crate::store::mailbox_state::{MailboxState, SyncStatus};

/// Longest wait between retries after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// The handle the API and CLI use to reach the workers.
pub struct FetchControl {
    mailboxes: HashMap<String, Arc<MailboxWorker>>,
    /// Turns true at shutdown: no new sync, no new message in a sync.
    stop: watch::Sender<bool>,
    /// The polling loops `start` spawned, for `join`.
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// One upstream mailbox: its settings, its state, and the lock that keeps
/// two syncs of it from running at once.
pub struct MailboxWorker {
    pub name: String,
    pub upstream: UpstreamConfig,
    ctx: SyncContext,
    wake: Notify,
    running: Mutex<()>,
    stop: watch::Receiver<bool>,
    /// Set for a mailbox with `[mailbox.oauth2]`: its access tokens.
    tokens: std::sync::OnceLock<Arc<dyn AccessTokens>>,
}

impl FetchControl {
    /// Builds a worker per mailbox with an upstream; `start` runs them.
    pub fn new(
        config: &Config,
        ingestor: &Ingestor,
        store: &Store,
        metrics: &Arc<Metrics>,
    ) -> FetchControl {
        let (stop, stopped) = watch::channel(false);
        let mut mailboxes = HashMap::new();
        for mailbox in &config.mailboxes {
            if let Some(upstream) = &mailbox.upstream {
                let worker =
                    MailboxWorker::new(mailbox, upstream, config, ingestor, store, metrics)
                        .stopped_by(stopped.clone());
                mailboxes.insert(mailbox.name.clone(), Arc::new(worker));
            }
        }
        FetchControl {
            mailboxes,
            stop,
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<MailboxWorker>> {
        self.mailboxes.get(name)
    }

    /// Gives mailbox `name` its OAuth2 token source (before `start`).
    pub fn use_tokens(&self, name: &str, tokens: Arc<dyn AccessTokens>) {
        if let Some(worker) = self.mailboxes.get(name) {
            let _ = worker.tokens.set(tokens);
        }
    }

    /// Spawns the polling loops; [`join`](Self::join) stops and joins them.
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for worker in self.mailboxes.values() {
            tasks.push(tokio::spawn(worker.clone().run(self.stop.subscribe())));
        }
    }

    /// Workers with an upstream.
    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
    }

    /// Tells every worker to stop: no new sync, and a sync under way starts
    /// no further message but completes the commits and upstream marks it
    /// has begun and finishes its session.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// [`stop`](Self::stop)s the workers and waits for their loops to end,
    /// and for a sync asked for by hand (API, CLI) to end as well. Gives up
    /// after `timeout` (the rest are cancelled; what they committed but did
    /// not mark is marked by the next start). Returns (joined, cancelled).
    pub async fn join(&self, timeout: Duration) -> (usize, usize) {
        self.stop();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut joined, mut cancelled) = (0, 0);
        for mut task in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(_) => joined += 1,
                Err(_) => {
                    task.abort();
                    cancelled += 1;
                }
            }
        }
        for worker in self.mailboxes.values() {
            if tokio::time::timeout_at(deadline, worker.running.lock())
                .await
                .is_err()
            {
                tracing::warn!(mailbox = %worker.name, "a sync did not finish in time");
            }
        }
        (joined, cancelled)
    }
}

impl MailboxWorker {
    fn new(
        mailbox: &MailboxConfig,
        upstream: &UpstreamConfig,
        config: &Config,
        ingestor: &Ingestor,
        store: &Store,
        metrics: &Arc<Metrics>,
    ) -> MailboxWorker {
        let per_minute = std::num::NonZeroU32::new(upstream.fetch_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let scheme = match (upstream.protocol, upstream.security) {
            (Protocol::Imap, crate::mail::Security::Tls) => "imaps",
            (Protocol::Imap, _) => "imap",
            (Protocol::Pop3, crate::mail::Security::Tls) => "pop3s",
            (Protocol::Pop3, _) => "pop3",
            (Protocol::Graph, _) => "graph",
            (Protocol::Gmail, _) => "gmail",
        };
        let folder = match upstream.protocol {
            Protocol::Imap => format!("/{}", upstream.folder),
            Protocol::Pop3 => String::new(),
            Protocol::Graph => format!("/{}", upstream.folder),
            Protocol::Gmail => format!("/{}", upstream.gmail.as_ref().map_or("", |g| &g.label)),
        };
        MailboxWorker {
            name: mailbox.name.clone(),
            upstream: upstream.clone(),
            ctx: SyncContext {
                mailbox: mailbox.name.clone(),
                source: upstream.protocol.as_str(),
                origin_label: match upstream.protocol {
                    Protocol::Graph => format!(
                        "{}/users/{}/mailFolders{folder}",
                        upstream.api_base, upstream.user
                    ),
                    _ => format!(
                        "{scheme}://{}@{}:{}{folder}",
                        upstream.user, upstream.host, upstream.port
                    ),
                },
                account: upstream.user.clone(),
                keeps_messages: upstream.after_import == crate::mail::AfterImport::Keep,
                max_message_size: config.limits.max_message_size as u64,
                ingestor: ingestor.clone(),
                store: store.clone(),
                limiter: Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
                metrics: metrics.clone(),
            },
            wake: Notify::new(),
            running: Mutex::new(()),
            stop: watch::channel(false).1,
            tokens: std::sync::OnceLock::new(),
        }
    }

    fn stopped_by(self, stop: watch::Receiver<bool>) -> MailboxWorker {
        MailboxWorker { stop, ..self }
    }

    /// Ask the worker to sync now (and to resume, when paused by auth failures).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn state(&self) -> MailboxState {
        let store = self.ctx.store.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || store.mailbox_state(&name))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default()
    }

    async fn save(&self, state: &MailboxState) {
        let status = match state.status {
            SyncStatus::Ok => "ok",
            SyncStatus::Paused => "paused",
            SyncStatus::AuthFailed => "auth_failed",
            SyncStatus::Error => "error",
        };
        self.ctx.metrics.set_mailbox_status(&self.name, status);
        let (store, name, state) = (self.ctx.store.clone(), self.name.clone(), state.clone());
        match tokio::task::spawn_blocking(move || store.save_mailbox_state(&name, &state)).await {
            Ok(Ok(())) => {}
            other => {
                tracing::error!(mailbox = %self.name, result = ?other.map(|r| r.err()), "could not save the mailbox state")
            }
        }
    }

    /// Clears an auth_failed/paused state (operator action).
    pub async fn resume(&self) -> MailboxState {
        let mut state = self.state().await;
        if self.upstream.active {
            state.status = SyncStatus::Ok;
        }
        state.auth_failures = 0;
        self.save(&state).await;
        tracing::info!(mailbox = %self.name, "mailbox resumed");
        self.wake();
        state
    }

    /// What the mailbox logs in with: its OAuth2 token source, or the
    /// configured password.
    pub fn credential(&self) -> Result<Credential, crate::auth::password::PasswordError> {
        match self.tokens.get() {
            Some(tokens) => Ok(Credential::OAuth2(tokens.clone())),
            None => credential::resolve(&self.upstream),
        }
    }

    /// One sync now, with this credential; records the outcome in the state.
    pub async fn sync_with(&self, credential: Credential) -> Result<SyncReport, SyncError> {
        let _guard = self.running.lock().await;
        // No access token, no connection: the token endpoint's answer is
        // the sync's error (invalid_grant counts as an auth failure).
        let token = match &credential {
            Credential::OAuth2(tokens) => tokens.token().await.map(|_| ()),
            Credential::Password(_) => Ok(()),
        };
        let settings = UpstreamSettings::new(&self.upstream, credential, self.ctx.max_message_size);
        let result = match token {
            Err(e) => Err(super::upstream::FetchError::token(&self.upstream.user, e).into()),
            Ok(()) => match settings.open().await {
                Ok(session) => sync_until::<AnyUpstream>(&self.ctx, session, &self.stop).await,
                Err(e) => Err(e.into()),
            },
        };
        let mut state = self.state().await;
        let was_paused = state.status == SyncStatus::AuthFailed;
        self.record(&mut state, &result);
        self.save(&state).await;
        if was_paused && state.status != SyncStatus::AuthFailed {
            // A sync by hand worked: the paused worker polls again.
            self.wake();
        }
        result
    }

    fn record(&self, state: &mut MailboxState, result: &Result<SyncReport, SyncError>) {
        let now = crate::now_rfc3339();
        match result {
            Ok(report) => {
                state.status = if self.upstream.active {
                    SyncStatus::Ok
                } else {
                    SyncStatus::Paused
                };
                state.last_success = Some(now);
                // Resumed ones were committed by a sync that failed before counting them.
                state.imported += (report.imported + report.resumed) as u64;
                state.auth_failures = 0;
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                self.ctx
                    .metrics
                    .fetch_last_success
                    .get_or_create(&MailboxLabel {
                        mailbox: self.name.clone(),
                    })
                    .set(unix);
                if report.listed > 0 {
                    tracing::info!(
                        mailbox = %self.name,
                        listed = report.listed,
                        imported = report.imported,
                        rejected = report.rejected,
                        duplicates = report.duplicates,
                        resumed = report.resumed,
                        throttled = report.throttled,
                        "upstream sync done"
                    );
                } else {
                    tracing::debug!(mailbox = %self.name, "upstream sync: nothing new");
                }
            }
            Err(e) => {
                self.ctx.metrics.count_fetch_error(&self.name, e.kind());
                state.last_error = Some(e.to_string());
                state.last_error_at = Some(now);
                state.last_error_kind = Some(e.kind().to_string());
                if e.is_auth() {
                    state.auth_failures += 1;
                    if state.auth_failures >= self.upstream.auth_failure_limit {
                        state.status = SyncStatus::AuthFailed;
                        tracing::error!(
                            mailbox = %self.name,
                            failures = state.auth_failures,
                            error = %e,
                            "authentication failed repeatedly; mailbox paused until resumed (POST /api/v1/mailboxes/{}/resume) or synced by hand",
                            self.name
                        );
                        return;
                    }
                }
                state.status = SyncStatus::Error;
                tracing::warn!(mailbox = %self.name, kind = e.kind(), error = %e, "upstream sync failed; will retry");
            }
        }
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut state = self.state().await;
        if !self.upstream.active {
            state.status = SyncStatus::Paused;
            self.save(&state).await;
            tracing::info!(mailbox = %self.name, "upstream mailbox paused (active = false)");
            return;
        }
        if state.status == SyncStatus::Paused {
            state.status = SyncStatus::Ok;
        }
        self.save(&state).await;
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let state = self.state().await;
            if state.status == SyncStatus::AuthFailed {
                // Paused: only an operator wakes it (resume or sync).
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let mut retry_after = None;
            let outcome = match self.credential() {
                Ok(credential) => match self.sync_with(credential).await {
                    Ok(_) => None,
                    Err(e) => {
                        retry_after = server_retry_after(&e);
                        Some(e.to_string())
                    }
                },
                Err(e) => {
                    let mut state = self.state().await;
                    state.status = SyncStatus::Error;
                    state.last_error = Some(e.to_string());
                    state.last_error_at = Some(crate::now_rfc3339());
                    state.last_error_kind = Some("password".into());
                    self.ctx.metrics.count_fetch_error(&self.name, "password");
                    self.save(&state).await;
                    tracing::error!(mailbox = %self.name, error = %e, "no upstream password");
                    Some(e.to_string())
                }
            };
            let wait = match outcome {
                None => {
                    failures = 0;
                    self.upstream.poll_interval
                }
                Some(_) => {
                    failures = failures.saturating_add(1);
                    wait_after_failure(self.upstream.poll_interval, failures, retry_after)
                }
            };
            if failures == 0 && self.upstream.idle && self.upstream.protocol == Protocol::Imap {
                if self.idle(wait, &mut shutdown).await {
                    continue;
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Waits in IMAP IDLE for up to `wait`. True when it did wait (a change
    /// came, or the time passed); false when IDLE is unavailable.
    async fn idle(&self, wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        let Ok(credential) = self.credential() else {
            return false;
        };
        let UpstreamSettings::Imap(settings) =
            UpstreamSettings::new(&self.upstream, credential, self.ctx.max_message_size)
        else {
            return false;
        };
        let mut session =
            match crate::inbound::pull::providers::imap::ImapUpstream::open(&settings).await {
                Ok(s) => s,
                Err(_) => return false,
            };
        // Mail that came between the sync's search and this session would
        // not wake IDLE: look once before waiting.
        match crate::inbound::pull::upstream::Upstream::list_new(&mut session).await {
            Ok(waiting) if waiting.iter().any(|m| !m.leftover) => {
                let _ = crate::inbound::pull::upstream::Upstream::finish(session).await;
                return true;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        tokio::select! {
            r = session.wait_for_change(wait) => match r {
                Ok((session, supported)) => {
                    let _ = crate::inbound::pull::upstream::Upstream::finish(session).await;
                    supported
                }
                Err(_) => false,
            },
            _ = self.wake.notified() => true,
            _ = shutdown.changed() => false,
        }
    }
}

/// The longest `Retry-After` obeyed (a server asking for more is waited
/// for this long).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The wait the server asked for when it throttled the sync (Graph 429/503/504).
fn server_retry_after(e: &SyncError) -> Option<Duration> {
    match e {
        SyncError::Fetch(crate::inbound::pull::upstream::FetchError::Throttled {
            retry_after,
            ..
        }) => *retry_after,
        _ => None,
    }
}

/// The backoff, but never shorter than the server's `Retry-After`.
fn wait_after_failure(base: Duration, failures: u32, retry_after: Option<Duration>) -> Duration {
    let asked = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
    backoff(base, failures).max(asked)
}

/// poll_interval x 2^(failures-1), capped.
fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(60), 1), s(60));
        assert_eq!(backoff(s(60), 2), s(120));
        assert_eq!(backoff(s(60), 3), s(240));
        assert_eq!(backoff(s(60), 40), MAX_BACKOFF);
        assert_eq!(backoff(s(3600), 5), s(3600));
    }

    #[test]
    fn a_throttled_sync_waits_at_least_what_the_server_asked() {
        let s = Duration::from_secs;
        assert_eq!(wait_after_failure(s(60), 1, None), s(60));
        assert_eq!(wait_after_failure(s(60), 1, Some(s(5))), s(60));
        assert_eq!(wait_after_failure(s(60), 1, Some(s(600))), s(600));
        assert_eq!(wait_after_failure(s(60), 3, Some(s(90))), s(240));
        assert_eq!(
            wait_after_failure(s(60), 1, Some(s(10_000_000))),
            MAX_RETRY_AFTER
        );
        let throttled = SyncError::Fetch(crate::inbound::pull::upstream::FetchError::Throttled {
            retry_after: Some(s(7)),
            detail: "429".into(),
        });
        assert_eq!(server_retry_after(&throttled), Some(s(7)));
        let io = SyncError::Fetch(crate::inbound::pull::upstream::FetchError::Io("x".into()));
        assert_eq!(server_retry_after(&io), None);
    }
}
