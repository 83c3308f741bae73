//! `mailgate sync` and `mailgate test-connection`: foreground operations on
//! one upstream mailbox, with the password typed at the prompt when the
//! config names no source for it.

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

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
    let (mailbox, upstream) = app.upstream(name)?;
    if mailbox.oauth2.is_some() {
        bail!(
            "mailbox {name:?} uses OAuth2: test-connection does not refresh tokens (that would spend a rotating refresh token outside the store); use `mailgate sync {name}` or `mailgate oauth status`"
        );
    }
    let credential = credential::resolve_or_prompt(upstream, name)?;
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
    let (mailbox, upstream) = app.upstream(name)?;
    // An OAuth2 mailbox uses its token provider (no prompt).
    let credential = match mailbox.oauth2 {
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
    let result = sync_here(&core, name, credential).await;
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
    let address = config.http.listen;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("the database is locked but no server answers on {address}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = match credential {
        Some(Credential::Password(secret)) => {
            serde_json::to_vec(&serde_json::json!({ "password": secret.expose() }))?
        }
        // The server has its own token source for the mailbox.
        Some(Credential::OAuth2(_)) | None => b"{}".to_vec(),
    };
    let mut request = Request::post(format!("/api/v1/mailboxes/{name}/sync"))
        .header("host", address.to_string())
        .header("content-type", "application/json");
    if let Some(var) = &config.http.api_token_env
        && let Ok(token) = std::env::var(var)
        && !token.is_empty()
    {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Full::new(bytes::Bytes::from(body)))?)
        .await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
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
