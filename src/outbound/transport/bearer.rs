//! One HTTPS request with a mailbox's OAuth2 access token, as both API
//! transports (Graph, Gmail) and their `test-relay` checks make it: a 401
//! reports the token refused and the request goes once more with a fresh
//! token; the second answer, whatever it is, is the caller's to judge.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};

use super::{FailureKind, SendError};
use crate::mail::AccessTokens;
use crate::oauth::http::{HttpClient, HttpError, Response};

/// What to send (the token is added here).
pub struct BearerRequest<'a> {
    pub method: Method,
    pub url: &'a str,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
    /// Cap on the answer's body.
    pub answer_limit: usize,
}

pub async fn send(
    http: &HttpClient,
    tokens: &dyn AccessTokens,
    request: BearerRequest<'_>,
) -> Result<Response, SendError> {
    let mut refused_once = false;
    loop {
        let token = tokens.token().await.map_err(|e| {
            SendError::temporary(FailureKind::Auth, format!("no access token: {e}"))
        })?;
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(request.url)
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(header::ACCEPT, "application/json");
        if let Some(ct) = request.content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let built = builder
            .body(request.body.clone())
            .map_err(|e| SendError::temporary(FailureKind::Protocol, format!("bad URL: {e}")))?;
        let response = http
            .send(built, request.answer_limit)
            .await
            .map_err(http_error)?;
        if response.status == StatusCode::UNAUTHORIZED && !refused_once {
            tokens.refused(&token);
            refused_once = true;
            continue;
        }
        return Ok(response);
    }
}

/// A request that got no HTTP answer: always temporary.
pub fn http_error(e: HttpError) -> SendError {
    let kind = match &e {
        HttpError::Tls(_) => FailureKind::Tls,
        HttpError::Request { .. } => FailureKind::Connect,
        HttpError::Timeout { .. } => FailureKind::Timeout,
        HttpError::TooLarge { .. } => FailureKind::Protocol,
    };
    SendError::temporary(kind, e.to_string())
}
