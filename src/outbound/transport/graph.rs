//! Sending through Microsoft Graph: `POST /users/{user}/sendMail` with the
//! message's MIME, base64-encoded, as `Content-Type: text/plain` (Graph's
//! "send a message in MIME format"). `202 Accepted` means sent (and saved
//! in Sent Items). The recipients are the MIME's To/Cc/Bcc headers: Graph
//! has no separate envelope, so [`Delivery::accepted`] is the envelope's
//! recipients as composed.
//!
//! Answers, as the SMTP transport classifies replies:
//! - 401: the token is reported refused and the request sent once more with
//!   a new one; a second 401, a 403 (no Mail.Send permission) or no token
//!   at all is a temporary `auth` failure: the gateway's problem, the mail
//!   stays queued.
//! - 429/503/504 and other 5xx, connection failures, timeouts: temporary.
//! - Other 4xx (400 invalid MIME or recipients, 413 too large): permanent,
//!   with Graph's error code and message as the reply.
//!
//! Graph takes at most 4 MB per request this way, the base64 included
//! (larger messages need a draft and an upload session, not done here):
//! a message over it fails for good before any request, naming the limit.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};

use super::bearer::{self, BearerRequest};
use super::{Delivery, Envelope, FailureKind, SendError, SendFuture, Transport};
use crate::mail::AccessTokens;
use crate::oauth::http::{HttpClient, Response};

/// Graph's limit on a request body: 4 MB, the base64 MIME included.
pub const REQUEST_LIMIT: usize = 4 * 1024 * 1024;

/// Answers to sendMail are empty or a small error JSON.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Sends as one mailbox (`/users/{user}`).
pub struct GraphTransport {
    http: HttpClient,
    api_base: String,
    user: String,
    tokens: Arc<dyn AccessTokens>,
}

impl GraphTransport {
    pub fn new(
        http: HttpClient,
        api_base: &str,
        user: &str,
        tokens: Arc<dyn AccessTokens>,
    ) -> GraphTransport {
        GraphTransport {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            tokens,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/users/{}/sendMail",
            self.api_base,
            crate::inbound::pull::providers::graph::segment(&self.user)
        )
    }

    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery, SendError> {
        let encoded = message.len().div_ceil(3) * 4;
        if encoded > REQUEST_LIMIT {
            return Err(SendError::Permanent {
                reply: format!(
                    "too large for Graph sendMail: {} bytes of MIME are {encoded} in base64, over Graph's {REQUEST_LIMIT}-byte request limit (send this mailbox's large mail through SMTP: smtp.office365.com with auth = \"oauth2\")",
                    message.len()
                ),
            });
        }
        let body = Bytes::from(base64::engine::general_purpose::STANDARD.encode(message));
        let url = self.url();
        let request = BearerRequest {
            method: Method::POST,
            url: &url,
            content_type: Some("text/plain"),
            body,
            answer_limit: ANSWER_LIMIT,
        };
        let response = bearer::send(&self.http, self.tokens.as_ref(), request).await?;
        classify(&response).map(|reply| Delivery {
            reply,
            accepted: envelope.recipients.clone(),
            refused: Vec::new(),
        })
    }
}

impl GraphTransport {
    /// For `mailgate test-relay`: a read-only request with the mailbox's
    /// token (`GET /users/{user}/mailFolders/sentitems`, the folder
    /// sendMail saves to; Mail.ReadBasic or more), which proves the token
    /// is taken for this user without sending anything. The folder's name
    /// and count, or what failed (a 401 refreshes the token once).
    pub async fn check(&self) -> Result<String, SendError> {
        let url = format!(
            "{}/users/{}/mailFolders/sentitems?$select=displayName,totalItemCount",
            self.api_base,
            crate::inbound::pull::providers::graph::segment(&self.user)
        );
        let request = BearerRequest {
            method: Method::GET,
            url: &url,
            content_type: None,
            body: Bytes::new(),
            answer_limit: ANSWER_LIMIT,
        };
        let response = bearer::send(&self.http, self.tokens.as_ref(), request).await?;
        if !response.status.is_success() {
            let text = crate::inbound::pull::providers::graph::status_text(&response);
            let kind = match response.status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => FailureKind::Auth,
                _ => FailureKind::Refused,
            };
            return Err(SendError::temporary(
                kind,
                format!(
                    "Graph GET /users/{}/mailFolders/sentitems: {text}",
                    self.user
                ),
            ));
        }
        let folder: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
        Ok(format!(
            "Graph took the token for {}: folder {:?}, {} messages",
            self.user,
            folder["displayName"].as_str().unwrap_or("?"),
            folder["totalItemCount"]
        ))
    }
}

/// What Graph's answer to sendMail means for the message.
pub fn classify(response: &Response) -> Result<String, SendError> {
    let status = response.status;
    if status.is_success() {
        return Ok(format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
    }
    let text = crate::inbound::pull::providers::graph::status_text(response);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SendError::temporary(
            FailureKind::Auth,
            format!("Graph refused the mailbox's token: {text}"),
        )),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::REQUEST_TIMEOUT
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => {
            let wait = crate::inbound::pull::providers::graph::retry_after(response)
                .map(|d| format!(" (retry after {} s)", d.as_secs()))
                .unwrap_or_default();
            Err(SendError::temporary(
                FailureKind::Refused,
                format!("{text}{wait}"),
            ))
        }
        s if s.is_client_error() => Err(SendError::Permanent { reply: text }),
        _ => Err(SendError::temporary(FailureKind::Refused, text)),
    }
}

impl Transport for GraphTransport {
    fn send<'a>(&'a self, envelope: &'a Envelope, message: &'a [u8]) -> SendFuture<'a> {
        Box::pin(self.deliver(envelope, message))
    }

    fn describe(&self) -> String {
        format!("graph {}/users/{}", self.api_base, self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_over_the_request_limit_fails_for_good_before_any_request() {
        let tokens = Arc::new(super::super::CountingTokens::default());
        let http = HttpClient::new(None, std::time::Duration::from_secs(1)).unwrap();
        let t = GraphTransport::new(
            http,
            "https://graph.invalid/v1.0",
            "s@x.test",
            tokens.clone(),
        );
        let envelope = Envelope {
            from: "s@x.test".into(),
            recipients: vec!["a@x.test".into()],
        };
        // 3 MiB of MIME is 4 MiB of base64: just over.
        let mut big = vec![b'x'; REQUEST_LIMIT / 4 * 3 + 1];
        let e = t.deliver(&envelope, &big).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(
            e.to_string()
                .contains("over Graph's 4194304-byte request limit"),
            "{e}"
        );
        assert_eq!(tokens.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        big.truncate(REQUEST_LIMIT / 4 * 3);
        let e = t.deliver(&envelope, &big).await.unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        assert_eq!(tokens.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn answer(status: u16, body: &str, retry: Option<&str>) -> Response {
        let mut headers = http::HeaderMap::new();
        if let Some(r) = retry {
            headers.insert("retry-after", r.parse().unwrap());
        }
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn answers_to_send_mail() {
        assert_eq!(classify(&answer(202, "", None)).unwrap(), "202 Accepted");
        let e = classify(&answer(
            400,
            r#"{"error":{"code":"ErrorMimeContentInvalidBase64String","message":"Invalid base64 string for MIME content."}}"#,
            None,
        ))
        .unwrap_err();
        assert_eq!(
            e,
            SendError::Permanent {
                reply: "400 ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content.".into()
            }
        );
        let e = classify(&answer(
            429,
            r#"{"error":{"code":"ApplicationThrottled","message":"slow down"}}"#,
            Some("12"),
        ))
        .unwrap_err();
        assert!(!e.is_permanent());
        assert!(e.to_string().contains("retry after 12 s"), "{e}");
        let e = classify(&answer(
            403,
            r#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied."}}"#,
            None,
        ))
        .unwrap_err();
        assert_eq!(e.kind(), FailureKind::Auth);
        assert!(!e.is_permanent());
        assert!(!classify(&answer(500, "", None)).unwrap_err().is_permanent());
    }
}
