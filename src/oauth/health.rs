//! Token health as the admin sees it (API, `/healthz`, `mailgate oauth
//! status`): the access token's expiry, the last good refresh, the last
//! error, the refresh token's age, and whether the mailbox is about to
//! stop working — refreshes failing for longer than `[oauth]
//! degraded_after`, or the client secret expiring within 14 days.

use std::time::Duration;

use serde_json::{Value, json};

use super::vault::TokenHealth;
use crate::config::oauth2::OAuth2Config;

/// Warn this long before the configured client secret expires.
pub const SECRET_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why the mailbox is degraded, if it is (one line each).
pub fn degraded(
    config: &OAuth2Config,
    health: Option<&TokenHealth>,
    degraded_after: Duration,
    now: i64,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(h) = health
        && let Some(since) = h.failing_since
        && now - since >= degraded_after.as_secs() as i64
    {
        reasons.push(format!(
            "token refreshes have failed since {}: {}",
            rfc3339(since),
            h.last_refresh_error.as_deref().unwrap_or("unknown error")
        ));
    }
    if let Some(date) = config.client_secret_expires {
        let expires = date.midnight().assume_utc().unix_timestamp();
        if expires <= now {
            reasons.push(format!("the client secret expired on {date}"));
        } else if expires - now <= SECRET_WARNING.as_secs() as i64 {
            reasons.push(format!(
                "the client secret expires on {date} ({} days left)",
                (expires - now) / 86_400
            ));
        }
    }
    reasons
}

/// The `oauth` object of a mailbox in the API (no secret in it).
pub fn describe(
    config: &OAuth2Config,
    health: Option<&TokenHealth>,
    degraded_after: Duration,
    now: i64,
) -> Value {
    let h = health.cloned().unwrap_or_default();
    let reasons = degraded(config, health, degraded_after, now);
    json!({
        "provider": config.provider.as_str(),
        "client_id": config.client_id,
        "tenant": config.tenant,
        "token_url": config.token_url,
        "access_token_expires_at": h.access_expires_at.map(rfc3339),
        "last_refresh_ok_at": h.last_refresh_ok_at.map(rfc3339),
        "last_refresh_error": h.last_refresh_error,
        "last_refresh_error_kind": h.last_refresh_error_kind,
        "last_refresh_error_at": h.last_refresh_error_at.map(rfc3339),
        "failing_since": h.failing_since.map(rfc3339),
        "refresh_token_obtained_at": h.refresh_token_obtained_at.map(rfc3339),
        "refresh_token_age_seconds": h.refresh_token_obtained_at.map(|t| (now - t).max(0)),
        "refresh_token_origin": h.refresh_token_origin,
        "refreshes": h.refreshes,
        "client_secret_expires": config.client_secret_expires.map(|d| d.to_string()),
        "degraded": !reasons.is_empty(),
        "degraded_reasons": reasons,
    })
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Now, in unix seconds.
pub fn now() -> i64 {
    (super::provider::system_clock())()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::oauth2::{OAuthProvider, SecretSource};

    fn config(expires: Option<&str>) -> OAuth2Config {
        OAuth2Config {
            provider: OAuthProvider::Microsoft,
            client_id: "c".into(),
            client_secret: SecretSource::Env("X".into()),
            tenant: Some("t".into()),
            token_url: "https://x/t".into(),
            authorize_url: "https://x/a".into(),
            scopes: None,
            scopes_by_use: Vec::new(),
            refresh_token: None,
            client_secret_expires: expires.map(|d| {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .unwrap()
            }),
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn failing_longer_than_the_threshold_or_a_secret_near_expiry_is_degraded() {
        // 2027-01-01T00:00:00Z
        let now = 1_798_761_600;
        let hour = Duration::from_secs(3600);
        let failing = TokenHealth {
            failing_since: Some(now - 3599),
            last_refresh_error: Some("invalid_grant (AADSTS70008: expired)".into()),
            ..TokenHealth::default()
        };
        assert!(degraded(&config(None), Some(&failing), hour, now).is_empty());
        let longer = TokenHealth {
            failing_since: Some(now - 3600),
            ..failing.clone()
        };
        let r = degraded(&config(None), Some(&longer), hour, now);
        assert!(r[0].contains("AADSTS70008"), "{r:?}");
        let r = degraded(&config(Some("2027-01-14")), None, hour, now);
        assert_eq!(
            r,
            ["the client secret expires on 2027-01-14 (13 days left)"]
        );
        assert!(degraded(&config(Some("2027-01-16")), None, hour, now).is_empty());
        let r = degraded(&config(Some("2026-12-01")), None, hour, now);
        assert_eq!(r, ["the client secret expired on 2026-12-01"]);
        let v = describe(&config(Some("2027-01-14")), Some(&longer), hour, now);
        assert_eq!(v["degraded"], true);
        assert_eq!(v["failing_since"], "2026-12-31T23:00:00Z");
    }
}
