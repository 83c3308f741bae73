//! One authenticated Gmail API request: a fresh token from the mailbox's
//! token source for every request, a 401 reported (`refused`) and retried
//! once with a new token, rate limits (429, 403 `rateLimitExceeded` /
//! `userRateLimitExceeded`) and 5xx retried with exponential backoff (or
//! the server's `Retry-After`), then given up as `Throttled` so the
//! scheduler waits. The token is only ever in the Authorization header.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use serde::de::DeserializeOwned;

use super::error::{GoogleError, rate_limited};
use crate::inbound::pull::upstream::FetchError;
use crate::mail::AccessTokens;
use crate::oauth::http::{HttpClient, HttpError};

/// A longer `Retry-After` than this is not waited out within a sync.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Body cap of answers other than downloads.
pub(super) const JSON_MAX: usize = 16 * 1024 * 1024;

pub(super) struct Api {
    http: HttpClient,
    /// `https://host[:port]`, no trailing slash.
    base: String,
    /// The userId path segment, percent-encoded.
    user: String,
    /// For messages (`me` or the address as configured).
    user_label: String,
    tokens: Arc<dyn AccessTokens>,
    backoff: Duration,
    retries: u32,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("user", &self.user_label)
            .finish()
    }
}

/// A call that got an answer the caller may want to handle (404, 409...).
pub(super) enum Answer {
    Ok(Bytes),
    Failed(GoogleError),
}

impl Api {
    pub(super) fn new(
        http: HttpClient,
        base: &str,
        user: &str,
        tokens: Arc<dyn AccessTokens>,
        backoff: Duration,
        retries: u32,
    ) -> Api {
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            user: segment(user),
            user_label: user.to_string(),
            tokens,
            backoff,
            retries,
        }
    }

    /// `https://.../gmail/v1/users/{user}/{path}?{query}`.
    pub(super) fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/gmail/v1/users/{}/{path}", self.base, self.user);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&q.finish());
        }
        url
    }

    /// GET, JSON answer; any failure is an error.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        max_body: usize,
    ) -> Result<T, FetchError> {
        let url = self.url(path, query);
        let answer = self.call(Method::GET, &url, None, max_body).await?;
        self.json(path, answer)
    }

    /// POST a JSON body, JSON answer; any failure is an error.
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, FetchError> {
        let answer = self.post_answer(path, body).await?;
        self.json(path, answer)
    }

    pub(super) async fn post_answer(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Answer, FetchError> {
        let url = self.url(path, &[]);
        let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.call(Method::POST, &url, Some(body), JSON_MAX).await
    }

    pub(super) fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        answer: Answer,
    ) -> Result<T, FetchError> {
        match answer {
            Answer::Ok(body) => parse(path, &body),
            Answer::Failed(e) => Err(self.failure(path, e)),
        }
    }

    /// A failure no caller handled, as a FetchError.
    pub(super) fn failure(&self, path: &str, e: GoogleError) -> FetchError {
        match e.code {
            401 | 403 => FetchError::Auth {
                user: self.user_label.clone(),
                detail: format!("Gmail API {path}: {e}"),
            },
            _ => FetchError::Protocol(format!("Gmail API {path}: {e}")),
        }
    }

    /// Sends one request (again after a refused token, a rate limit or a
    /// 5xx); answers 2xx and other errors to the caller.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        max_body: usize,
    ) -> Result<Answer, FetchError> {
        let mut refreshed = false;
        let mut tries = 0u32;
        loop {
            let token = self.tokens.token().await?;
            let mut request = Request::builder()
                .method(method.clone())
                .uri(url)
                .header(header::ACCEPT, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(body.clone().unwrap_or_default())
                .map_err(|e| FetchError::Protocol(format!("bad request URL: {e}")))?;
            let response = self
                .http
                .send(request, max_body)
                .await
                .map_err(|e| self.http_error(e))?;
            if response.status.is_success() {
                return Ok(Answer::Ok(response.body));
            }
            let error = GoogleError::parse(response.status.as_u16(), &response.body);
            let what = crate::oauth::http::redacted_url(&url.parse().unwrap_or_default());
            if error.code == 401 {
                if !refreshed {
                    // Expired or revoked early: the next token() refreshes.
                    self.tokens.refused(&token);
                    refreshed = true;
                    tracing::debug!(url = %what, "Gmail API refused the access token; refreshing once");
                    continue;
                }
                return Err(FetchError::Auth {
                    user: self.user_label.clone(),
                    detail: format!("the Gmail API refused a fresh access token: {error}"),
                });
            }
            let throttled = rate_limited(&error);
            let server = (500..600).contains(&error.code);
            if !(throttled || server) {
                return Ok(Answer::Failed(error));
            }
            let retry_after = response
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let wait = retry_after.unwrap_or(self.backoff.saturating_mul(1 << tries.min(16)));
            if tries >= self.retries || wait > MAX_WAIT {
                return Err(if throttled {
                    FetchError::Throttled {
                        retry_after,
                        detail: format!("Gmail API {what}: {error}"),
                    }
                } else {
                    FetchError::Io(format!("Gmail API {what}: {error}"))
                });
            }
            tracing::info!(url = %what, status = error.code, wait_ms = wait.as_millis() as u64, "Gmail API asks to slow down; waiting");
            tokio::time::sleep(wait).await;
            tries += 1;
        }
    }

    fn http_error(&self, e: HttpError) -> FetchError {
        match e {
            HttpError::Tls(detail) => FetchError::Tls {
                host: self.base.clone(),
                detail,
            },
            HttpError::Request { url, detail } => FetchError::Connect {
                address: url,
                detail,
            },
            HttpError::Timeout { url, .. } => FetchError::Timeout(format!("Gmail API {url}")),
            HttpError::TooLarge { url, limit } => FetchError::Protocol(format!(
                "the answer from {url} is larger than {limit} bytes"
            )),
        }
    }
}

/// A JSON answer into its type, or a protocol error naming the call.
pub(super) fn parse<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(body)
        .map_err(|e| FetchError::Protocol(format!("Gmail API {path}: unreadable answer: {e}")))
}

/// One URL path segment, percent-encoded (user ids, message and label ids).
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
