//! The HTTPS client behind the token endpoint and the mail APIs (Graph,
//! Gmail): hyper over rustls with the same trust as every other outgoing
//! connection (system roots plus the mailbox's `ca_file`), HTTPS only, a
//! time limit on every request and a cap on every response body, so a
//! misbehaving endpoint can neither hang a worker nor fill its memory.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::tls::client::{ConnectError, Target, client_config};

/// A response, its body read whole (within the cap).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Tls(String),
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    #[error("no answer from {url} within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("the answer from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

/// One client per mailbox (connections are pooled and reused).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpClient {
    /// `timeout` bounds each request from connect to the last body byte.
    pub fn new(ca_file: Option<PathBuf>, timeout: Duration) -> Result<HttpClient, HttpError> {
        let target = Target {
            host: "the HTTPS endpoint".into(),
            port: 443,
            ca_file,
            connect_timeout: timeout,
        };
        let tls = client_config(&target).map_err(|e| match e {
            ConnectError::Tls { detail, .. } => HttpError::Tls(detail),
            other => HttpError::Tls(other.to_string()),
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(HttpClient { client, timeout })
    }

    /// Sends a request and reads the answer, at most `max_body` bytes.
    pub async fn send(
        &self,
        request: Request<Bytes>,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        let url = redacted_url(request.uri());
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Request {
                    url: url.clone(),
                    detail: error_chain(&e),
                })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        HttpError::TooLarge {
                            url: url.clone(),
                            limit: max_body,
                        }
                    } else {
                        HttpError::Request {
                            url: url.clone(),
                            detail: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                url,
                secs: self.timeout.as_secs(),
            }),
        }
    }
}

/// Scheme, host and path of a URL, without its query (which may carry a
/// code or a token) for messages and logs.
pub fn redacted_url(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

/// An error and its causes on one line ("connection refused" is usually
/// two levels down in hyper's errors).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_lose_their_query() {
        let uri: http::Uri = "https://login.example.test/t/oauth2/v2.0/token?code=SECRET"
            .parse()
            .unwrap();
        assert_eq!(
            redacted_url(&uri),
            "https://login.example.test/t/oauth2/v2.0/token"
        );
    }

    #[tokio::test]
    async fn plain_http_is_refused_and_a_dead_port_is_a_request_error() {
        let client = HttpClient::new(None, Duration::from_secs(5)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        for url in [
            format!("http://127.0.0.1:{port}/x"),
            format!("https://127.0.0.1:{port}/x"),
        ] {
            let request = Request::get(url.as_str()).body(Bytes::new()).unwrap();
            let err = client.send(request, 1024).await.unwrap_err();
            assert!(matches!(err, HttpError::Request { .. }), "{url}: {err:?}");
        }
    }
}
