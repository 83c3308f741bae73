//! What the XOAUTH2 tests share: a token source handing out fixed tokens
//! (and recording what was refused), a capture of every log line, and the
//! XOAUTH2 message a token makes (to scan logs for it).
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use mailgate::mail::{AccessTokens, Secret, TokenError, access_token::TokenFuture};

/// Hands out its tokens in order; `refused` moves on to the next one and
/// records what was refused.
pub struct StaticTokens {
    tokens: Vec<String>,
    next: Mutex<usize>,
    refused: Mutex<Vec<String>>,
    asked: Mutex<usize>,
}

impl StaticTokens {
    pub fn new(tokens: &[&str]) -> Arc<StaticTokens> {
        Arc::new(StaticTokens {
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            next: Mutex::new(0),
            refused: Mutex::new(Vec::new()),
            asked: Mutex::new(0),
        })
    }
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
    pub fn asked(&self) -> usize {
        *self.asked.lock().unwrap()
    }
}

impl AccessTokens for StaticTokens {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            *self.asked.lock().unwrap() += 1;
            let i = *self.next.lock().unwrap();
            match self.tokens.get(i) {
                Some(t) => Ok(Secret::new(t.clone())),
                None => Err(TokenError::Unavailable("no more test tokens".into())),
            }
        })
    }
    fn refused(&self, token: &Secret) {
        self.refused
            .lock()
            .unwrap()
            .push(token.expose().to_string());
        let mut i = self.next.lock().unwrap();
        if self.tokens.get(*i).map(String::as_str) == Some(token.expose()) {
            *i += 1;
        }
    }
}

/// Everything logged at any level while the guard lives (this thread).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub fn xoauth2_message(user: &str, token: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}
