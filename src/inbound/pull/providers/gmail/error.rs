//! Google's error bodies (`{"error": {"code", "message", "status",
//! "errors": [{"reason", "domain", "message"}]}}`), read leniently: the
//! status code decides, the body only adds words and the rate-limit reason.
//! Shared by the Gmail upstream and the Gmail send transport.

use serde::Deserialize;

/// What a failed Gmail API call said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoogleError {
    pub code: u16,
    /// `error.message`, or the start of a body that is not Google's JSON.
    pub message: String,
    /// `error.status` (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`...), if given.
    pub status: Option<String>,
    /// Every `error.errors[].reason` (`rateLimitExceeded`, `authError`...).
    pub reasons: Vec<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    reason: String,
}

/// At most this much of a body that is not JSON goes into a message.
const TEXT_MAX: usize = 200;

impl GoogleError {
    pub fn parse(code: u16, body: &[u8]) -> GoogleError {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(e) => GoogleError {
                code,
                message: clean(&e.error.message),
                status: e.error.status.map(|s| clean(&s)),
                reasons: e
                    .error
                    .errors
                    .into_iter()
                    .map(|i| clean(&i.reason))
                    .filter(|r| !r.is_empty())
                    .collect(),
            },
            Err(_) => GoogleError {
                code,
                message: clean(&String::from_utf8_lossy(&body[..body.len().min(TEXT_MAX)])),
                status: None,
                reasons: Vec::new(),
            },
        }
    }

    pub fn has_reason(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r == reason)
    }
}

impl std::fmt::Display for GoogleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.code)?;
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        if !self.reasons.is_empty() {
            write!(f, " ({})", self.reasons.join(", "))?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// A rate limit to back off from: 429, or 403 with the per-user or
/// per-project rate-limit reason (Gmail's usage-limit answers).
pub fn rate_limited(error: &GoogleError) -> bool {
    error.code == 429
        || (error.code == 403
            && (error.has_reason("rateLimitExceeded") || error.has_reason("userRateLimitExceeded")))
}

/// Server text on one line, without control characters, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(TEXT_MAX)
        .collect::<String>()
        .trim()
        .to_string()
}
