//! One Graph request as the provider needs it: a fresh bearer token from
//! the mailbox's token source for each request, `Prefer:
//! IdType="ImmutableId"`, a second try with a new token after a 401, and
//! Graph's answers turned into [`FetchError`]s (the error JSON's `code` and
//! `message`, `Retry-After` on 429/503/504). Shared by the upstream and
//! the sendMail transport's tests; never logs a token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};

use crate::inbound::pull::upstream::FetchError;
use crate::mail::AccessTokens;
use crate::oauth::http::{HttpClient, HttpError, Response};

/// JSON answers (lists, folders, headers) are small; 8 MiB is plenty.
pub(super) const JSON_LIMIT: usize = 8 * 1024 * 1024;

/// A Graph client bound to one mailbox (`/users/{user}`).
#[derive(Clone)]
pub struct GraphClient {
    http: HttpClient,
    /// `https://graph.microsoft.com/v1.0`, no trailing slash.
    base: String,
    /// `https://.../v1.0/users/{user}` (user percent-encoded).
    user_url: String,
    user: String,
    tokens: Arc<dyn AccessTokens>,
}

/// What a request carries besides its URL.
pub(super) enum Body {
    None,
    Json(serde_json::Value),
}

impl GraphClient {
    pub fn new(
        http: HttpClient,
        api_base: &str,
        user: &str,
        tokens: Arc<dyn AccessTokens>,
    ) -> GraphClient {
        let base = api_base.trim_end_matches('/').to_string();
        GraphClient {
            user_url: format!("{base}/users/{}", segment(user)),
            base,
            user: user.to_string(),
            http,
            tokens,
        }
    }

    /// `{base}/users/{user}{rest}`; `rest` starts with `/`.
    pub(super) fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.user_url)
    }

    /// A link the server gave (`@odata.nextLink`): followed only when it
    /// points under our API base, so the token never goes elsewhere.
    pub(super) fn checked_link(&self, link: &str) -> Result<String, FetchError> {
        if link.starts_with(&format!("{}/", self.base)) {
            Ok(link.to_string())
        } else {
            Err(FetchError::Protocol(format!(
                "the server sent a next link outside {}",
                self.base
            )))
        }
    }

    /// Sends one request (a new token on 401, once). Ok for 2xx and for
    /// 4xx other than 401/403/429 (the caller knows what a 404 means
    /// there); 401/403 -> Auth, 429/503/504 -> Throttled, other 5xx -> Io.
    pub(super) async fn call(
        &self,
        method: Method,
        url: &str,
        body: Body,
        max_body: usize,
    ) -> Result<Response, FetchError> {
        let mut refused_once = false;
        loop {
            let token = self.tokens.token().await?;
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(url)
                .header("authorization", format!("Bearer {}", token.expose()))
                .header("prefer", "IdType=\"ImmutableId\"")
                .header("accept", "application/json");
            let bytes = match &body {
                Body::None => Bytes::new(),
                Body::Json(v) => {
                    builder = builder.header("content-type", "application/json");
                    Bytes::from(v.to_string())
                }
            };
            let request = builder
                .body(bytes)
                .map_err(|e| FetchError::Protocol(format!("bad request URL: {e}")))?;
            let response = self
                .http
                .send(request, max_body)
                .await
                .map_err(|e| http_error(&self.base, e))?;
            match response.status {
                StatusCode::UNAUTHORIZED if !refused_once => {
                    // Expired or revoked access token: the next one is fresh.
                    self.tokens.refused(&token);
                    refused_once = true;
                    continue;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(FetchError::Auth {
                        user: self.user.clone(),
                        detail: status_text(&response),
                    });
                }
                StatusCode::TOO_MANY_REQUESTS
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => {
                    return Err(FetchError::Throttled {
                        retry_after: retry_after(&response),
                        detail: status_text(&response),
                    });
                }
                s if s.is_server_error() => {
                    return Err(FetchError::Io(status_text(&response)));
                }
                _ => return Ok(response),
            }
        }
    }

    /// [`call`](Self::call), then anything but 2xx is a protocol error.
    pub(super) async fn call_ok(
        &self,
        method: Method,
        url: &str,
        body: Body,
        max_body: usize,
    ) -> Result<Response, FetchError> {
        let response = self.call(method, url, body, max_body).await?;
        if response.status.is_success() {
            Ok(response)
        } else {
            Err(FetchError::Protocol(status_text(&response)))
        }
    }

    /// GET and parse a JSON answer.
    pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, FetchError> {
        let response = self
            .call_ok(Method::GET, url, Body::None, JSON_LIMIT)
            .await?;
        parse(&response)
    }
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(response: &Response) -> Result<T, FetchError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| FetchError::Protocol(format!("unexpected JSON from Graph: {e}")))
}

/// `429 TooManyRequests: Application is over its MailboxConcurrency limit.`
/// from the status and Graph's `{"error": {"code", "message"}}`.
pub fn status_text(response: &Response) -> String {
    let (code, message) = error_of(&response.body);
    let mut text = response.status.as_u16().to_string();
    if let Some(code) = code {
        text.push(' ');
        text.push_str(&clip(&code, 100));
    }
    if let Some(message) = message {
        text.push_str(": ");
        text.push_str(&clip(&message, 300));
    }
    text
}

/// At most `max` characters, controls escaped (server text reaches logs).
fn clip(s: &str, max: usize) -> String {
    let short: String = s.chars().take(max).collect();
    crate::mail::printable::Printable(&short).to_string()
}

/// The `code` and `message` of a Graph error body, if it is one.
pub fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Outer>(body) {
        Ok(o) => (o.error.code, o.error.message),
        Err(_) => (None, None),
    }
}

/// `Retry-After` in seconds (Graph sends seconds; an HTTP date is not used
/// by Graph and is ignored).
pub fn retry_after(response: &Response) -> Option<Duration> {
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn http_error(base: &str, e: HttpError) -> FetchError {
    match e {
        HttpError::Tls(detail) => FetchError::Tls {
            host: base.to_string(),
            detail,
        },
        HttpError::Request { url, detail } => FetchError::Connect {
            address: url,
            detail,
        },
        HttpError::Timeout { url, .. } => FetchError::Timeout(format!("a request to {url}")),
        HttpError::TooLarge { url, limit } => FetchError::Protocol(format!(
            "the answer from {url} is larger than {limit} bytes"
        )),
    }
}

/// A path segment, percent-encoded (ids and UPNs keep `@`, `=`, `-`, `_`, `.`).
pub fn segment(s: &str) -> String {
    encode(s, b"-._~@=")
}

/// A query value, percent-encoded (spaces as %20, never `+`).
pub(super) fn query(s: &str) -> String {
    encode(s, b"-._~")
}

fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(segment("ann@contoso.com"), "ann@contoso.com");
        assert_eq!(segment("AAMk/x+y="), "AAMk%2Fx%2By=");
        assert_eq!(query("isRead eq false"), "isRead%20eq%20false");
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"error":{"code":"ErrorItemNotFound","message":"The specified object was not found in the store."}}"#;
        let (code, message) = error_of(body);
        assert_eq!(code.as_deref(), Some("ErrorItemNotFound"));
        assert!(message.unwrap().starts_with("The specified"));
        assert_eq!(error_of(b"<html>"), (None, None));
    }
}
