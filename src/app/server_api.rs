//! Commands that find the database locked by a running `serve` ask that
//! server instead, through its own HTTP API on `http.listen`, with the API
//! token from the configured environment variable.

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::config::Config;

/// One request to the running server: its status and body.
pub async fn call(
    config: &Config,
    method: Method,
    path: &str,
    json_body: Option<Vec<u8>>,
) -> Result<(StatusCode, bytes::Bytes)> {
    let address = config.http.listen;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("the database is locked but no server answers on {address}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.to_string());
    if json_body.is_some() {
        request = request.header("content-type", "application/json");
    }
    if let Some(var) = &config.http.api_token_env
        && let Ok(token) = std::env::var(var)
        && !token.is_empty()
    {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = bytes::Bytes::from(json_body.unwrap_or_default());
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}
