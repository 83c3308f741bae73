//! `mailgate sync` and `mailgate test-connection`: foreground operations on
//! one upstream mailbox, with the password typed at the prompt when the
//! config names no source for it.

use anyhow::{Context, Result, anyhow, bail};

use super::shutdown::{WORKER_TIMEOUT, WRITER_TIMEOUT};
use super::{App, Core};
use crate::auth::credential;
use crate::config::Config;
use crate::inbound::pull::connect::UpstreamSettings;
use crate::mail::{Credential, Security};
use crate::store::StoreError;

/// Connects, authenticates, opens the folder, and says what it found or
/// exactly what failed. Returns whether it worked.
pub async fn test_connection(config: Config, name: &str) -> Result<bool> {
    let app = App::new(config);
    let config = app.config();
    let (_, upstream) = app.upstream(name)?;
    let credential = match upstream.token_use() {
        // Tokens come from (and rotated ones go to) the store: a refresh
        // outside it would spend a rotating refresh token.
        Some(use_) => {
            let store = match app.open_store() {
                Ok(store) => store,
                Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => bail!(
                    "mailbox {name:?} uses OAuth2 and a running mailgate holds its tokens: use `mailgate sync {name}` or `mailgate oauth status`"
                ),
                Err(e) => return Err(e).context("opening the database"),
            };
            let providers = app.token_providers(&store, &app.metrics())?;
            let tokens = providers
                .get(name, use_)
                .ok_or_else(|| anyhow!("mailbox {name:?} has no token provider"))?;
            if let Err(e) = tokens.token().await {
                println!("FAILED (auth): {e}");
                return Ok(false);
            }
            println!("OAuth2: access token obtained");
            Credential::OAuth2(tokens)
        }
        None => credential::resolve_or_prompt(upstream, name)?,
    };
    let settings =
        UpstreamSettings::new(upstream, credential, config.limits.max_message_size as u64);
    let security = match upstream.security {
        Security::Tls => "TLS",
        Security::StartTls => "STARTTLS",
        Security::None => "no TLS (insecure)",
    };
    println!(
        "{} {}:{} ({security}) as {}",
        upstream.protocol.as_str().to_uppercase(),
        upstream.host,
        upstream.port,
        upstream.user
    );
    match settings.probe().await {
        Ok(probe) => {
            if let Some(folder) = &probe.folder {
                println!("folder: {folder}");
            }
            println!("messages: {}", probe.messages);
            match probe.unseen {
                Some(n) => println!("unread: {n}"),
                None => println!("unread: (POP3 has no flags)"),
            }
            println!("capabilities: {}", probe.capabilities.join(" "));
            println!("OK");
            Ok(true)
        }
        Err(e) => {
            println!("FAILED ({}): {e}", e.kind());
            Ok(false)
        }
    }
}

/// One sync now. Runs locally when the database is free; when a running
/// `mailgate serve` holds it, asks that server to sync instead.
pub async fn sync(config: Config, name: &str) -> Result<()> {
    let app = App::new(config);
    let (_, upstream) = app.upstream(name)?;
    // An OAuth2 mailbox uses its token provider (no prompt).
    let credential = match upstream.token_use() {
        Some(_) => None,
        None => Some(credential::resolve_or_prompt(upstream, name)?),
    };
    let store = match app.open_store() {
        Ok(store) => store,
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
            println!("the database is in use by a running mailgate; asking it to sync {name}");
            return sync_remote(app.config(), name, credential.as_ref()).await;
        }
        Err(e) => return Err(e).context("opening the database"),
    };
    let core = app.core(store)?;
    let result = async {
        core.replay_journal().await?;
        sync_here(&core, name, credential).await
    }
    .await;
    // Whatever happened, the writer commits what is queued before we exit.
    core.close(WORKER_TIMEOUT, WRITER_TIMEOUT).await?;
    result
}

async fn sync_here(core: &Core, name: &str, credential: Option<Credential>) -> Result<()> {
    let worker = core
        .fetch
        .get(name)
        .ok_or_else(|| anyhow!("mailbox {name:?} has no upstream"))?;
    let credential = match credential {
        Some(c) => c,
        None => worker.credential()?,
    };
    if worker.state().await.status == crate::store::mailbox_state::SyncStatus::AuthFailed {
        println!(
            "mailbox {name} was paused after authentication failures; trying with this password"
        );
    }
    match worker.sync_with(credential).await {
        Ok(r) => {
            println!(
                "synced {name}: {} listed, {} imported, {} rejected, {} duplicates, {} resumed",
                r.listed, r.imported, r.rejected, r.duplicates, r.resumed
            );
            Ok(())
        }
        Err(e) => bail!("sync of {name} failed ({}): {e}", e.kind()),
    }
}

async fn sync_remote(config: &Config, name: &str, credential: Option<&Credential>) -> Result<()> {
    let body = match credential {
        Some(Credential::Password(secret)) => {
            serde_json::to_vec(&serde_json::json!({ "password": secret.expose() }))?
        }
        // The server has its own token source for the mailbox.
        Some(Credential::OAuth2(_)) | None => b"{}".to_vec(),
    };
    let path = format!("/api/v1/mailboxes/{name}/sync");
    let (status, bytes) =
        super::server_api::call(config, hyper::Method::POST, &path, Some(body)).await?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if status.is_success() {
        println!(
            "synced {name}: {} listed, {} imported, {} rejected, {} duplicates, {} resumed",
            json["listed"], json["imported"], json["rejected"], json["duplicates"], json["resumed"]
        );
        Ok(())
    } else {
        bail!(
            "sync of {name} failed ({}): {}",
            json["kind"].as_str().unwrap_or(status.as_str()),
            json["message"].as_str().unwrap_or("see the server log")
        )
    }
}
