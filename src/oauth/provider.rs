//! The token provider: per mailbox, one refresh token and a cached access
//! token per use (IMAP, SMTP, Graph, Gmail). The oauth2 crate does the
//! refresh-token exchange over our [`HttpClient`]. Access tokens are kept
//! until shortly before they expire (never one refresh per poll);
//! concurrent callers wait for one refresh; a rotated refresh token is
//! stored before the access token that came with it is handed out;
//! `invalid_grant` is [`TokenError::Revoked`] with the provider's text;
//! transient failures back off (no second try before the backoff ends).
//! No token ever reaches a log line, a Debug output or an error text.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};

use super::http::{HttpClient, HttpError};
use super::vault::{
    AccessEntry, RefreshTokenOrigin, StoredTokens, TokenCipher, TokenSecrets, TokenVault,
    fingerprint,
};
use crate::config::oauth2::{OAuth2Config, SecretSource, TokenUse};
use crate::mail::access_token::TokenFuture;
use crate::mail::{AccessTokens, Secret, TokenError};
use crate::metrics::Metrics;

/// Unix seconds now; a test sets its own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// Largest token endpoint answer read.
const MAX_BODY: usize = 64 * 1024;
/// Lifetime assumed when the answer has no `expires_in`.
const DEFAULT_LIFETIME: i64 = 3600;
/// First wait after a failed refresh; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: i64 = 30;
const MAX_BACKOFF: i64 = 15 * 60;

/// What every provider of an instance shares: where records are kept,
/// the key that seals them, metrics, the clock.
#[derive(Clone)]
pub struct OAuthContext {
    pub vault: Arc<dyn TokenVault>,
    pub cipher: Arc<TokenCipher>,
    pub metrics: Option<Arc<Metrics>>,
    pub clock: Clock,
}

/// Why a provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("mailbox {mailbox}: OAuth2 HTTPS client: {source}")]
    Http { mailbox: String, source: HttpError },
    #[error("{0}")]
    Key(String),
}

impl OAuthContext {
    /// Loads (or makes, on first start) the `[oauth]` key.
    pub fn new(
        settings: &crate::config::oauth2::OAuthSettings,
        vault: Arc<dyn TokenVault>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<OAuthContext, ProviderError> {
        let key =
            crate::auth::token_key::load_for(&settings.key, crate::auth::token_key::OAUTH_TOKENS)
                .map_err(|e| ProviderError::Key(e.to_string()))?;
        let cipher = TokenCipher::new(&crate::auth::token_key::bytes(&key))
            .map_err(|e| ProviderError::Key(format!("oauth.key: {e}")))?;
        Ok(OAuthContext {
            vault,
            cipher: Arc::new(cipher),
            metrics,
            clock: system_clock(),
        })
    }
}

/// Every OAuth2 mailbox's provider, by mailbox name.
#[derive(Clone, Default)]
pub struct TokenProviders {
    mailboxes: BTreeMap<String, Arc<MailboxTokens>>,
}

impl TokenProviders {
    /// A provider for each mailbox with `[mailbox.oauth2]`.
    pub fn build(
        config: &crate::config::Config,
        ctx: &OAuthContext,
    ) -> Result<TokenProviders, ProviderError> {
        let mut mailboxes = BTreeMap::new();
        for m in &config.mailboxes {
            if let Some(o) = &m.oauth2 {
                mailboxes.insert(m.name.clone(), MailboxTokens::new(&m.name, o, ctx)?);
            }
        }
        Ok(TokenProviders { mailboxes })
    }

    /// The token source of `mailbox` for `use_`, if the mailbox has OAuth2.
    pub fn get(&self, mailbox: &str, use_: TokenUse) -> Option<Arc<dyn AccessTokens>> {
        self.mailboxes.get(mailbox).map(|m| m.for_use(use_))
    }

    pub fn mailbox(&self, mailbox: &str) -> Option<&Arc<MailboxTokens>> {
        self.mailboxes.get(mailbox)
    }

    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
    }
}

/// One mailbox's tokens.
pub struct MailboxTokens {
    mailbox: String,
    config: OAuth2Config,
    http: HttpClient,
    ctx: OAuthContext,
    /// Access tokens handed out, per use, with the time they stop being
    /// handed out (shortly before expiry).
    cache: std::sync::Mutex<HashMap<TokenUse, (Secret, i64)>>,
    /// Held across a refresh: the single flight.
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for MailboxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxTokens")
            .field("mailbox", &self.mailbox)
            .field("token_url", &self.config.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// The record as last stored and its opened secrets; `None` before the
    /// first use.
    loaded: Option<(StoredTokens, TokenSecrets)>,
    failures: u32,
    /// No refresh before this (unix seconds).
    retry_at: i64,
    last_error: Option<TokenError>,
}

/// Hands out one use's tokens.
struct TokenProvider {
    tokens: Arc<MailboxTokens>,
    use_: TokenUse,
}

impl AccessTokens for TokenProvider {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(self.tokens.token(self.use_))
    }

    fn refused(&self, token: &Secret) {
        self.tokens.refused(self.use_, token);
    }
}

impl MailboxTokens {
    pub fn new(
        mailbox: &str,
        config: &OAuth2Config,
        ctx: &OAuthContext,
    ) -> Result<Arc<MailboxTokens>, ProviderError> {
        let http = HttpClient::new(config.ca_file.clone(), config.timeout).map_err(|source| {
            ProviderError::Http {
                mailbox: mailbox.to_string(),
                source,
            }
        })?;
        Ok(Arc::new(MailboxTokens {
            mailbox: mailbox.to_string(),
            config: config.clone(),
            http,
            ctx: ctx.clone(),
            cache: Default::default(),
            state: Default::default(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.mailbox
    }

    /// The token source for one use.
    pub fn for_use(self: &Arc<Self>, use_: TokenUse) -> Arc<dyn AccessTokens> {
        Arc::new(TokenProvider {
            tokens: self.clone(),
            use_,
        })
    }

    fn cached(&self, use_: TokenUse, now: i64) -> Option<Secret> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(&use_)
            .filter(|(_, until)| now < *until)
            .map(|(t, _)| t.clone())
    }

    fn refused(&self, use_: TokenUse, token: &Secret) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache
            .get(&use_)
            .is_some_and(|(t, _)| t.expose() == token.expose())
        {
            cache.remove(&use_);
            tracing::info!(mailbox = %self.mailbox, token_use = use_.as_str(), "access token refused by the server; the next use refreshes");
        }
    }

    /// A valid access token for `use_`.
    pub async fn token(&self, use_: TokenUse) -> Result<Secret, TokenError> {
        let now = (self.ctx.clock)();
        if let Some(t) = self.cached(use_, now) {
            return Ok(t);
        }
        let mut state = self.state.lock().await;
        // Another caller may have refreshed while this one waited.
        let now = (self.ctx.clock)();
        if let Some(t) = self.cached(use_, now) {
            return Ok(t);
        }
        if state.loaded.is_none() {
            let loaded = self.load(now).await?;
            state.loaded = Some(loaded);
            if let Some(t) = self.cached(use_, now) {
                return Ok(t);
            }
        }
        if now < state.retry_at
            && let Some(e) = &state.last_error
        {
            return Err(e.clone());
        }
        match self.refresh(&mut state, use_, now).await {
            Ok(token) => Ok(token),
            Err(e) => {
                self.failed(&mut state, e.clone(), now).await;
                Err(e)
            }
        }
    }

    /// Reads the record; takes over the configured refresh token when the
    /// record has none or the config holds a new one.
    async fn load(&self, now: i64) -> Result<(StoredTokens, TokenSecrets), TokenError> {
        let vault = self.ctx.vault.clone();
        let name = self.mailbox.clone();
        let record = tokio::task::spawn_blocking(move || vault.load(&name))
            .await
            .map_err(|e| TokenError::Unavailable(format!("token store: {e}")))?
            .map_err(|e| TokenError::Unavailable(e.to_string()))?
            .unwrap_or_default();
        let mut secrets = match self.ctx.cipher.open_secrets(&self.mailbox, &record) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(mailbox = %self.mailbox, error = %e, "stored OAuth2 tokens unusable; starting from the configured refresh token");
                TokenSecrets::default()
            }
        };
        let mut record = record;
        let seed = match &self.config.refresh_token {
            Some(source) => match read_secret(source, &self.mailbox, "refresh_token") {
                Ok(s) => Some(s),
                // A stored token does without it.
                Err(e) if secrets.refresh_token.is_some() => {
                    tracing::debug!(mailbox = %self.mailbox, error = %e, "configured refresh token not readable; using the stored one");
                    None
                }
                Err(e) => return Err(TokenError::NotConfigured(e)),
            },
            None => None,
        };
        if let Some(seed) = seed {
            let print = fingerprint(&seed);
            if secrets.refresh_token.is_none() || secrets.seeded_from.as_deref() != Some(&print) {
                if secrets.refresh_token.is_some() {
                    tracing::info!(mailbox = %self.mailbox, "a new refresh token in the config replaces the stored one");
                }
                secrets.refresh_token = Some(seed.expose().to_string());
                secrets.seeded_from = Some(print);
                secrets.access.clear();
                record.health.refresh_token_obtained_at = Some(now);
                record.health.refresh_token_origin = Some(RefreshTokenOrigin::Config);
            }
        }
        if let Some(m) = &self.ctx.metrics
            && let Some(at) = record.health.refresh_token_obtained_at
        {
            m.oauth.set_refresh_token_obtained(&self.mailbox, at);
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        for use_ in TokenUse::ALL {
            if let Some(entry) = secrets.access.get(use_.as_str()) {
                cache.insert(use_, (Secret::new(entry.token.clone()), fresh_until(entry)));
            }
        }
        drop(cache);
        Ok((record, secrets))
    }

    async fn refresh(
        &self,
        state: &mut State,
        use_: TokenUse,
        now: i64,
    ) -> Result<Secret, TokenError> {
        let Some((record, secrets)) = state.loaded.as_mut() else {
            return Err(TokenError::Unavailable("token state not loaded".into()));
        };
        let Some(refresh_token) = secrets.refresh_token.clone() else {
            return Err(TokenError::NotConfigured(format!(
                "no refresh token: set refresh_token_env or refresh_token_file, or run `mailgate oauth authorize {}`",
                self.mailbox
            )));
        };
        let client_secret = read_secret(&self.config.client_secret, &self.mailbox, "client_secret")
            .map_err(TokenError::NotConfigured)?;
        let token_url = TokenUrl::new(self.config.token_url.clone())
            .map_err(|_| TokenError::NotConfigured("token_url is not a URL".into()))?;
        let client = BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_string()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);
        let refresh_token = RefreshToken::new(refresh_token);
        let scopes = self.config.scopes_for(use_).into_iter().map(Scope::new);
        let answer = client
            .exchange_refresh_token(&refresh_token)
            .add_scopes(scopes)
            .request_async(&self.http)
            .await
            .map_err(token_error)?;

        let lifetime = answer
            .expires_in()
            .map(|d| d.as_secs() as i64)
            .unwrap_or(DEFAULT_LIFETIME)
            .max(1);
        let entry = AccessEntry {
            token: answer.access_token().secret().clone(),
            expires_at: now + lifetime,
            obtained_at: now,
        };
        if let Some(rotated) = answer.refresh_token()
            && rotated.secret() != refresh_token.secret()
        {
            secrets.refresh_token = Some(rotated.secret().clone());
            record.health.refresh_token_obtained_at = Some(now);
            record.health.refresh_token_origin = Some(RefreshTokenOrigin::Rotated);
            tracing::info!(mailbox = %self.mailbox, "the token endpoint rotated the refresh token; stored");
        }
        secrets
            .access
            .insert(use_.as_str().to_string(), entry.clone());
        let health = &mut record.health;
        health.access_expires_at = Some(entry.expires_at);
        health.last_refresh_ok_at = Some(now);
        health.last_refresh_error = None;
        health.last_refresh_error_at = None;
        health.last_refresh_error_kind = None;
        health.failing_since = None;
        health.refreshes += 1;
        // Durable before the token is used: a rotated refresh token is
        // never only in memory while the old one is already spent.
        self.ctx
            .cipher
            .seal_secrets(&self.mailbox, secrets, record)
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
        self.save(record.clone()).await?;
        state.failures = 0;
        state.retry_at = 0;
        state.last_error = None;
        if let Some(m) = &self.ctx.metrics {
            m.oauth.count_refresh(&self.mailbox, "ok");
            m.oauth.set_expiry(&self.mailbox, entry.expires_at);
            if let Some(at) = record.health.refresh_token_obtained_at {
                m.oauth.set_refresh_token_obtained(&self.mailbox, at);
            }
        }
        tracing::debug!(mailbox = %self.mailbox, token_use = use_.as_str(), expires_in = lifetime, "OAuth2 access token refreshed");
        let token = Secret::new(entry.token.clone());
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(use_, (token.clone(), fresh_until(&entry)));
        Ok(token)
    }

    async fn save(&self, record: StoredTokens) -> Result<(), TokenError> {
        let vault = self.ctx.vault.clone();
        let name = self.mailbox.clone();
        tokio::task::spawn_blocking(move || vault.save(&name, &record))
            .await
            .map_err(|e| TokenError::Unavailable(format!("token store: {e}")))?
            .map_err(|e| TokenError::Unavailable(format!("cannot store the tokens: {e}")))
    }

    /// Remembers a failed refresh: backoff, health, metrics, log.
    async fn failed(&self, state: &mut State, e: TokenError, now: i64) {
        state.failures = state.failures.saturating_add(1);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << state.failures.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        state.retry_at = now + wait;
        let kind = error_kind(&e);
        let text = e.to_string();
        state.last_error = Some(e);
        if let Some(m) = &self.ctx.metrics {
            m.oauth.count_refresh(&self.mailbox, kind);
        }
        tracing::warn!(mailbox = %self.mailbox, kind, error = %text, retry_in_seconds = wait, "OAuth2 token refresh failed");
        if let Some((record, _)) = state.loaded.as_mut() {
            let health = &mut record.health;
            health.last_refresh_error = Some(text);
            health.last_refresh_error_at = Some(now);
            health.last_refresh_error_kind = Some(kind.to_string());
            health.failing_since.get_or_insert(now);
            if let Err(e) = self.save(record.clone()).await {
                tracing::warn!(mailbox = %self.mailbox, error = %e, "cannot record the failed refresh");
            }
        }
    }
}

/// Metrics/API label of a token error.
pub fn error_kind(e: &TokenError) -> &'static str {
    match e {
        TokenError::Revoked { .. } => "revoked",
        TokenError::Unavailable(_) => "unavailable",
        TokenError::NotConfigured(_) => "not_configured",
    }
}

/// Handed out until 5 minutes (or a tenth of its lifetime, if shorter)
/// before it expires.
fn fresh_until(entry: &AccessEntry) -> i64 {
    let lifetime = (entry.expires_at - entry.obtained_at).max(0);
    entry.expires_at - (lifetime / 10).min(300)
}

/// An error of our HTTP client under oauth2: transport failures, and the
/// statuses that mean "try later" (which carry no usable error body).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the token endpoint answered {status}{}", .retry_after.map(|s| format!(" (Retry-After {s} s)")).unwrap_or_default())]
    Busy {
        status: u16,
        retry_after: Option<u64>,
    },
}

/// oauth2's HTTP client is ours: same trust, time limit and body cap.
impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, TransportError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(self, request))
    }
}

async fn send(
    http: &HttpClient,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, TransportError> {
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, Bytes::from(body));
    let answer = http.send(request, MAX_BODY).await?;
    if answer.status.is_server_error() || answer.status.as_u16() == 429 {
        return Err(TransportError::Busy {
            status: answer.status.as_u16(),
            retry_after: answer
                .header("retry-after")
                .and_then(|v| v.trim().parse().ok()),
        });
    }
    let mut response = http::Response::new(answer.body.to_vec());
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    Ok(response)
}

/// The provider's answer as a [`TokenError`]. Never the body of an
/// answer (it may hold a token), only the standard error fields.
fn token_error(
    e: RequestTokenError<TransportError, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> TokenError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let error = r.error().to_string();
            let description = r.error_description().cloned();
            match r.error() {
                BasicErrorResponseType::InvalidGrant => TokenError::Revoked { error, description },
                BasicErrorResponseType::Extension(x)
                    if x == "temporarily_unavailable" || x == "server_error" =>
                {
                    TokenError::Unavailable(with_description(&error, &description))
                }
                _ => TokenError::NotConfigured(with_description(&error, &description)),
            }
        }
        RequestTokenError::Request(t) => TokenError::Unavailable(t.to_string()),
        RequestTokenError::Parse(_, _) => {
            TokenError::Unavailable("the token endpoint's answer is not a token response".into())
        }
        RequestTokenError::Other(detail) => TokenError::Unavailable(format!(
            "unexpected answer from the token endpoint: {}",
            detail.chars().take(200).collect::<String>()
        )),
    }
}

fn with_description(error: &str, description: &Option<String>) -> String {
    match description {
        Some(d) => format!("{error} ({d})"),
        None => error.to_string(),
    }
}

/// A secret from its environment variable or file (the file must not be
/// readable by others). The message names the key, never the value.
pub fn read_secret(source: &SecretSource, mailbox: &str, what: &str) -> Result<Secret, String> {
    match source {
        SecretSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
            _ => Err(format!(
                "mailbox {mailbox}: oauth2.{what}_env: environment variable {name} is not set"
            )),
        },
        SecretSource::File(path) => {
            let shown = path.display();
            match crate::auth::private_fs::shared_bits(path) {
                0 => {}
                bits => {
                    return Err(format!(
                        "mailbox {mailbox}: oauth2.{what}_file: {shown} is readable or writable by other users (group/other bits {bits:o}): chmod 600 it"
                    ));
                }
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("mailbox {mailbox}: oauth2.{what}_file: {shown}: {e}"))?;
            let value = text.trim();
            if value.is_empty() {
                return Err(format!(
                    "mailbox {mailbox}: oauth2.{what}_file: {shown} is empty"
                ));
            }
            Ok(Secret::new(value.to_string()))
        }
    }
}
