//! The Gmail API transport: `users.messages.send` with the composed MIME
//! as `{"raw": base64url}`, authorised by the mailbox's OAuth2 token
//! (a 401 refreshes the token once and sends again).
//!
//! Gmail delivers to the addresses in the message's To, Cc and Bcc headers
//! (and strips Bcc), not to an SMTP envelope: envelope recipients missing
//! from those headers are added in a `Bcc:` header prepended to the
//! message, so every recipient of the envelope gets it and none is shown.
//! Outcomes in the send worker's terms: 2xx -> sent to every envelope
//! recipient; 400 / 413 (Gmail refuses this message) -> permanent; 401 /
//! 403 (token, scope: our configuration) and 429, rate-limit 403s, 5xx,
//! network errors -> temporary, the message stays queued. The message goes
//! to the media upload URI (`/upload/...?uploadType=media`, body
//! `message/rfc822`, up to 35 MB): no base64 copy, no JSON; a bigger one
//! fails at once, before any request.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;

use super::bearer::{self, BearerRequest};
use super::{Delivery, Envelope, FailureKind, SendError, SendFuture, Transport};
use crate::inbound::pull::providers::gmail::{GoogleError, rate_limited};
use crate::mail::AccessTokens;
use crate::oauth::http::HttpClient;

/// Body cap of Gmail's answer (a small JSON object).
const ANSWER_MAX: usize = 1024 * 1024;
/// The largest message `messages.send` takes through its upload URI ("35MB").
pub const UPLOAD_MAX: usize = 35 * 1024 * 1024;

pub struct GmailTransport {
    http: HttpClient,
    base: String,
    user: String,
    tokens: Arc<dyn AccessTokens>,
}

impl std::fmt::Debug for GmailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GmailTransport")
            .field("base", &self.base)
            .field("user", &self.user)
            .finish()
    }
}

impl GmailTransport {
    /// `api_base` like `https://gmail.googleapis.com`; `user` `me` or the address.
    pub fn new(
        http: HttpClient,
        api_base: &str,
        user: &str,
        tokens: Arc<dyn AccessTokens>,
    ) -> GmailTransport {
        GmailTransport {
            http,
            base: api_base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            tokens,
        }
    }

    fn url(&self) -> String {
        let user: String = form_urlencoded::byte_serialize(self.user.as_bytes()).collect();
        format!(
            "{}/upload/gmail/v1/users/{user}/messages/send?uploadType=media",
            self.base
        )
    }

    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery, SendError> {
        if envelope.recipients.is_empty() {
            return Err(SendError::Permanent {
                reply: "no recipients".into(),
            });
        }
        let mime = with_hidden_recipients(message, &envelope.recipients);
        if mime.len() > UPLOAD_MAX {
            return Err(SendError::Permanent {
                reply: format!(
                    "Gmail API messages.send takes at most {UPLOAD_MAX} bytes; this message has {}",
                    mime.len()
                ),
            });
        }
        let url = self.url();
        let request = BearerRequest {
            method: Method::POST,
            url: &url,
            content_type: Some("message/rfc822"),
            body: Bytes::from(mime),
            answer_limit: ANSWER_MAX,
        };
        let response = bearer::send(&self.http, self.tokens.as_ref(), request).await?;
        let code = response.status.as_u16();
        if !response.status.is_success() {
            return Err(classify(&GoogleError::parse(code, &response.body)));
        }
        let id = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .unwrap_or_default();
        Ok(Delivery {
            reply: format!("Gmail API {code}: sent as {id}"),
            accepted: envelope.recipients.clone(),
            refused: Vec::new(),
        })
    }
}

impl GmailTransport {
    /// For `mailgate test-relay`: `users.getProfile` with the mailbox's
    /// token (read-only; any Gmail scope but gmail.send alone), which
    /// proves the token is taken for this user without sending anything.
    /// The account's address and message count, or what failed.
    pub async fn check(&self) -> Result<String, SendError> {
        let user: String = form_urlencoded::byte_serialize(self.user.as_bytes()).collect();
        let url = format!("{}/gmail/v1/users/{user}/profile", self.base);
        let request = BearerRequest {
            method: Method::GET,
            url: &url,
            content_type: None,
            body: Bytes::new(),
            answer_limit: ANSWER_MAX,
        };
        let response = bearer::send(&self.http, self.tokens.as_ref(), request).await?;
        let code = response.status.as_u16();
        if response.status.is_success() {
            let profile: serde_json::Value =
                serde_json::from_slice(&response.body).unwrap_or_default();
            return Ok(format!(
                "Gmail took the token for {}: {}, {} messages",
                self.user,
                profile["emailAddress"].as_str().unwrap_or("?"),
                profile["messagesTotal"]
            ));
        }
        let error = GoogleError::parse(code, &response.body);
        let kind = if matches!(code, 401 | 403) && !rate_limited(&error) {
            FailureKind::Auth
        } else {
            FailureKind::Refused
        };
        Err(SendError::temporary(
            kind,
            format!("Gmail API users.getProfile: {error}"),
        ))
    }
}

/// What a Gmail error answer means for the message.
pub fn classify(error: &GoogleError) -> SendError {
    let text = format!("Gmail API messages.send: {error}");
    if rate_limited(error) {
        SendError::temporary(FailureKind::Refused, text)
    } else if error.code == 401 || error.code == 403 {
        SendError::temporary(FailureKind::Auth, text)
    } else if error.code == 400 || error.code == 413 {
        SendError::Permanent { reply: text }
    } else if error.code >= 500 {
        SendError::temporary(FailureKind::Connect, text)
    } else {
        SendError::temporary(FailureKind::Protocol, text)
    }
}

/// The message with a `Bcc:` header for every envelope recipient not
/// named in its To, Cc or Bcc headers (compared case-insensitively).
pub fn with_hidden_recipients(message: &[u8], recipients: &[String]) -> Vec<u8> {
    let end = memchr::memmem::find(message, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(message, b"\n\n"))
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]).to_lowercase();
    let mut named = String::new();
    let mut inside = false;
    for line in head.split('\n') {
        let folded = line.starts_with([' ', '\t']);
        if !folded {
            inside = ["to:", "cc:", "bcc:"].iter().any(|h| line.starts_with(h));
        }
        if inside {
            named.push_str(line);
            named.push(' ');
        }
    }
    let missing: Vec<&str> = recipients
        .iter()
        .map(String::as_str)
        .filter(|r| !named.contains(&r.to_lowercase()))
        .collect();
    if missing.is_empty() {
        return message.to_vec();
    }
    let mut out = format!("Bcc: {}\r\n", missing.join(", ")).into_bytes();
    out.extend_from_slice(message);
    out
}

impl Transport for GmailTransport {
    fn send<'a>(&'a self, envelope: &'a Envelope, message: &'a [u8]) -> SendFuture<'a> {
        Box::pin(self.deliver(envelope, message))
    }

    fn describe(&self) -> String {
        format!("gmail {} as {}", self.base, self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_recipients_missing_from_the_headers_become_bcc() {
        let m = b"From: s@x.test\r\nTo: A <a@x.test>\r\nCc: c@x.test,\r\n d@x.test\r\n\r\nbody to: b@x.test\r\n";
        let rcpts = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_hidden_recipients(m, &rcpts(&["A@x.test", "d@x.test"])),
            m.to_vec()
        );
        let out = with_hidden_recipients(m, &rcpts(&["a@x.test", "b@x.test"]));
        assert!(out.starts_with(b"Bcc: b@x.test\r\nFrom: s@x.test\r\n"));
        assert!(out.ends_with(m));
    }

    #[tokio::test]
    async fn a_message_over_the_upload_limit_fails_for_good_before_any_request() {
        let tokens = Arc::new(super::super::CountingTokens::default());
        let http = HttpClient::new(None, std::time::Duration::from_secs(1)).unwrap();
        let t = GmailTransport::new(http, "https://gmail.invalid", "me", tokens.clone());
        let envelope = Envelope {
            from: "s@x.test".into(),
            recipients: vec!["a@x.test".into()],
        };
        let mut big = b"From: s@x.test\r\nTo: a@x.test\r\n\r\n".to_vec();
        big.resize(UPLOAD_MAX + 1, b'x');
        let e = t.deliver(&envelope, &big).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains("at most 36700160 bytes"), "{e}");
        assert_eq!(tokens.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Just under the limit it does try (and here finds no token).
        big.truncate(UPLOAD_MAX - 64);
        let e = t.deliver(&envelope, &big).await.unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        assert_eq!(tokens.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn errors_map_to_permanent_only_for_the_message_itself() {
        let e = |code: u16, reason: &str| GoogleError {
            code,
            message: "m".into(),
            status: None,
            reasons: vec![reason.into()],
        };
        assert!(classify(&e(400, "invalidArgument")).is_permanent());
        assert!(classify(&e(413, "")).is_permanent());
        let t = classify(&e(429, "rateLimitExceeded"));
        assert_eq!(t.kind(), FailureKind::Refused);
        assert!(!t.is_permanent());
        assert!(!classify(&e(403, "userRateLimitExceeded")).is_permanent());
        assert_eq!(
            classify(&e(403, "insufficientPermissions")).kind(),
            FailureKind::Auth
        );
        assert_eq!(classify(&e(401, "authError")).kind(), FailureKind::Auth);
        assert_eq!(
            classify(&e(503, "backendError")).kind(),
            FailureKind::Connect
        );
    }
}
