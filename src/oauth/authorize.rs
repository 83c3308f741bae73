//! `mailgate oauth authorize`: the authorization-code flow with PKCE (RFC
//! 7636, S256) and a loopback redirect (RFC 8252): the admin opens the
//! printed URL, consents, the browser is sent to 127.0.0.1 on a port of
//! ours, where the code is taken (the `state` must match), exchanged for
//! tokens, and the refresh token stored sealed in the vault. No token is
//! printed.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::http::HttpClient;
use super::provider::{OAuthContext, read_secret};
use super::vault::{AccessEntry, RefreshTokenOrigin, TokenSecrets, fingerprint};
use crate::config::oauth2::{OAuth2Config, OAuthProvider, TokenUse};
use crate::mail::TokenError;

/// Largest request head read on the loopback port.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("{0}")]
    Setup(String),
    #[error("no answer on the loopback port within {0} s")]
    Timeout(u64),
    #[error("the redirect carried a state that is not ours: refused")]
    State,
    #[error("the authorization server answered: {0}")]
    Denied(String),
    #[error("the redirect carried no code")]
    NoCode,
    #[error("exchanging the code failed: {0}")]
    Exchange(TokenError),
    #[error(
        "the answer has no refresh token (Microsoft: include offline_access in scopes; Google: consent again)"
    )]
    NoRefreshToken,
    #[error("storing the tokens failed: {0}")]
    Store(String),
}

/// A prepared flow: the listener is bound, the URL to open is known.
pub struct Flow {
    listener: TcpListener,
    redirect: String,
    pub url: String,
    state: CsrfToken,
    verifier: oauth2::PkceCodeVerifier,
    use_: TokenUse,
}

/// Binds 127.0.0.1 on a random port and builds the authorization URL.
pub async fn prepare(config: &OAuth2Config, use_: TokenUse) -> Result<Flow, AuthorizeError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| AuthorizeError::Setup(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| AuthorizeError::Setup(e.to_string()))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/");
    let client = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(config.authorize_url.clone())
                .map_err(|_| AuthorizeError::Setup("authorize_url is not a URL".into()))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect.clone()).map_err(|e| AuthorizeError::Setup(e.to_string()))?,
        );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(config.scopes_for(use_).into_iter().map(Scope::new))
        .set_pkce_challenge(challenge);
    if config.provider == OAuthProvider::Google {
        // Google issues a refresh token only for offline access, and again
        // only when consent is asked for.
        request = request
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();
    Ok(Flow {
        listener,
        redirect,
        url: url.to_string(),
        state,
        verifier,
        use_,
    })
}

impl Flow {
    /// Waits for the browser's redirect, exchanges the code and stores the
    /// tokens of `mailbox` in the vault.
    pub async fn finish(
        self,
        mailbox: &str,
        config: &OAuth2Config,
        ctx: &OAuthContext,
        wait: Duration,
    ) -> Result<(), AuthorizeError> {
        let query = tokio::time::timeout(wait, receive(&self.listener))
            .await
            .map_err(|_| AuthorizeError::Timeout(wait.as_secs()))??;
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(self.state.secret().as_str()) {
            return Err(AuthorizeError::State);
        }
        if let Some(error) = param("error") {
            let description = param("error_description")
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(AuthorizeError::Denied(format!("{error}{description}")));
        }
        let code = param("code").ok_or(AuthorizeError::NoCode)?;

        let secret = read_secret(&config.client_secret, mailbox, "client_secret")
            .map_err(AuthorizeError::Setup)?;
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.expose().to_string()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(
                TokenUrl::new(config.token_url.clone())
                    .map_err(|_| AuthorizeError::Setup("token_url is not a URL".into()))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(self.redirect.clone())
                    .map_err(|e| AuthorizeError::Setup(e.to_string()))?,
            );
        let http = HttpClient::new(config.ca_file.clone(), config.timeout)
            .map_err(|e| AuthorizeError::Setup(e.to_string()))?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(self.verifier)
            .request_async(&http)
            .await
            .map_err(|e| AuthorizeError::Exchange(super::provider::token_error(e)))?;
        let refresh = answer
            .refresh_token()
            .ok_or(AuthorizeError::NoRefreshToken)?
            .secret()
            .clone();

        let now = (ctx.clock)();
        let vault = ctx.vault.clone();
        let name = mailbox.to_string();
        let mut record = tokio::task::spawn_blocking(move || vault.load(&name))
            .await
            .map_err(|e| AuthorizeError::Store(e.to_string()))?
            .map_err(|e| AuthorizeError::Store(e.to_string()))?
            .unwrap_or_default();
        let mut secrets = ctx
            .cipher
            .open_secrets(mailbox, &record)
            .unwrap_or_else(|_| TokenSecrets::default());
        secrets.refresh_token = Some(refresh);
        // The configured token, if any, is older than this one: it must not
        // replace it at the next start.
        secrets.seeded_from = config
            .refresh_token
            .as_ref()
            .and_then(|s| read_secret(s, mailbox, "refresh_token").ok())
            .map(|s| fingerprint(&s));
        secrets.access.clear();
        let lifetime = answer
            .expires_in()
            .map(|d| d.as_secs() as i64)
            .unwrap_or(3600)
            .max(1);
        secrets.access.insert(
            self.use_.as_str().to_string(),
            AccessEntry {
                token: answer.access_token().secret().clone(),
                expires_at: now + lifetime,
                obtained_at: now,
            },
        );
        let health = &mut record.health;
        health.refresh_token_obtained_at = Some(now);
        health.refresh_token_origin = Some(RefreshTokenOrigin::Authorized);
        health.access_expires_at = Some(now + lifetime);
        health.last_refresh_ok_at = Some(now);
        health.last_refresh_error = None;
        health.last_refresh_error_at = None;
        health.last_refresh_error_kind = None;
        health.failing_since = None;
        ctx.cipher
            .seal_secrets(mailbox, &secrets, &mut record)
            .map_err(|e| AuthorizeError::Store(e.to_string()))?;
        let vault = ctx.vault.clone();
        let name = mailbox.to_string();
        tokio::task::spawn_blocking(move || vault.save(&name, &record))
            .await
            .map_err(|e| AuthorizeError::Store(e.to_string()))?
            .map_err(|e| AuthorizeError::Store(e.to_string()))?;
        Ok(())
    }
}

/// The query of the first request on the loopback port that has one
/// (a browser may ask for /favicon.ico too); answered with a short page.
async fn receive(listener: &TcpListener) -> Result<String, AuthorizeError> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| AuthorizeError::Setup(format!("loopback port: {e}")))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let target = line.split(' ').nth(1).unwrap_or("");
        let query = target.split_once('?').map(|(_, q)| q.to_string());
        let page: &[u8] = match &query {
            Some(_) => b"<html><body>mailgate received the answer; you can close this window.</body></html>",
            None => b"<html><body>not found</body></html>",
        };
        let status = if query.is_some() {
            "200 OK"
        } else {
            "404 Not Found"
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            page.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.write_all(page).await;
        let _ = stream.shutdown().await;
        if let Some(q) = query {
            return Ok(q);
        }
    }
}
