//! `mailgate oauth status`: every OAuth2 mailbox's token health, from the
//! store, or from the running server's API when that server holds the
//! database (as `mailgate sync` does).

use anyhow::{Context, Result};
use serde_json::Value;

use super::App;
use crate::config::Config;
use crate::store::StoreError;

/// Prints each OAuth2 mailbox's health. Ok(false) when one is degraded
/// or its last refresh failed.
pub async fn status(config: Config) -> Result<bool> {
    let app = App::new(config);
    let config = app.config();
    let oauth: Vec<_> = config
        .mailboxes
        .iter()
        .filter_map(|m| m.oauth2.as_ref().map(|o| (m, o)))
        .collect();
    if oauth.is_empty() {
        println!("no mailbox has [mailbox.oauth2]");
        return Ok(true);
    }
    let reports: Vec<(String, Value)> = match app.open_store() {
        Ok(store) => {
            let now = crate::oauth::health::now();
            let mut out = Vec::new();
            for (m, o) in oauth {
                let health = store
                    .oauth_tokens(&m.name)
                    .context("reading the token store")?
                    .map(|r| r.health);
                let v = crate::oauth::health::describe(
                    o,
                    health.as_ref(),
                    config.oauth.degraded_after,
                    now,
                );
                out.push((m.name.clone(), v));
            }
            out
        }
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
            println!("the database is in use by a running mailgate; asking it");
            remote(config).await?
        }
        Err(e) => return Err(e).context("opening the database"),
    };
    let mut healthy = true;
    for (name, v) in &reports {
        healthy &= print(name, v);
    }
    Ok(healthy)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One mailbox; true when nothing is wrong.
fn print(name: &str, v: &Value) -> bool {
    println!(
        "{name}: {} (client {})",
        text(&v["provider"]),
        text(&v["client_id"])
    );
    println!(
        "  access token expires: {}",
        text(&v["access_token_expires_at"])
    );
    println!("  last refresh ok:      {}", text(&v["last_refresh_ok_at"]));
    println!(
        "  refresh token:        obtained {} ({}), age {} s",
        text(&v["refresh_token_obtained_at"]),
        text(&v["refresh_token_origin"]),
        text(&v["refresh_token_age_seconds"])
    );
    if !v["client_secret_expires"].is_null() {
        println!(
            "  client secret expires: {}",
            text(&v["client_secret_expires"])
        );
    }
    let failed = !v["last_refresh_error"].is_null();
    if failed {
        println!(
            "  last refresh error:   {} at {} (failing since {})",
            text(&v["last_refresh_error"]),
            text(&v["last_refresh_error_at"]),
            text(&v["failing_since"])
        );
    }
    let reasons = v["degraded_reasons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in &reasons {
        println!("  DEGRADED: {}", text(r));
    }
    let ok = !failed && reasons.is_empty();
    println!("  status: {}", if ok { "OK" } else { "PROBLEM" });
    ok
}

async fn remote(config: &Config) -> Result<Vec<(String, Value)>> {
    let (status, body) =
        super::server_api::call(config, hyper::Method::GET, "/api/v1/mailboxes", None).await?;
    anyhow::ensure!(status.is_success(), "the server answered {status}");
    let json: Value = serde_json::from_slice(&body).context("the server's answer")?;
    Ok(json["mailboxes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| !m["oauth"].is_null())
        .map(|m| (text(&m["name"]), m["oauth"].clone()))
        .collect())
}

/// `mailgate oauth authorize <mailbox>`: prints the URL to open, waits for
/// the redirect on 127.0.0.1, stores the refresh token (sealed).
pub async fn authorize(
    config: Config,
    name: &str,
    use_: Option<&str>,
    wait: std::time::Duration,
) -> Result<bool> {
    use crate::config::oauth2::TokenUse;
    let app = App::new(config);
    let config = app.config();
    let Some(mailbox) = config.mailboxes.iter().find(|m| m.name == name) else {
        anyhow::bail!("no mailbox named {name:?}");
    };
    let Some(oauth2) = &mailbox.oauth2 else {
        anyhow::bail!("mailbox {name:?} has no [mailbox.oauth2]");
    };
    let use_ = match use_ {
        Some(u) => TokenUse::ALL
            .into_iter()
            .find(|t| t.as_str() == u)
            .ok_or_else(|| anyhow::anyhow!("--use must be imap, smtp, graph or gmail"))?,
        None => (mailbox.upstream.as_ref())
            .and_then(|u| u.token_use())
            .unwrap_or(TokenUse::Imap),
    };
    let store = match app.open_store() {
        Ok(store) => store,
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => anyhow::bail!(
            "the database is in use by a running mailgate: stop it for `oauth authorize` (it would go on with the tokens it holds)"
        ),
        Err(e) => return Err(e).context("opening the database"),
    };
    let ctx =
        crate::oauth::provider::OAuthContext::new(&config.oauth, std::sync::Arc::new(store), None)?;
    let flow = crate::oauth::authorize::prepare(oauth2, use_).await?;
    println!("Open this URL in a browser and sign in with the mailbox's account:");
    println!("{}", flow.url);
    println!("waiting for the answer (at most {} s) ...", wait.as_secs());
    flow.finish(name, oauth2, &ctx, wait).await?;
    println!("stored the refresh token of mailbox {name} (encrypted)");
    Ok(true)
}
