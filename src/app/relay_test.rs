//! `mailgate test-relay [--mailbox NAME]`: checks the relay a mailbox
//! sends through (its `[mailbox.relay]`, else `[relay]`), or `[relay]`
//! without `--mailbox`, and prints what it found and `OK`, or
//! `FAILED (kind): detail`.
//!
//! - SMTP: connects, says EHLO, does TLS and AUTH as configured (XOAUTH2
//!   with the mailbox's access token for `auth = "oauth2"`) and prints what
//!   the relay offered.
//! - Graph / Gmail: obtains the mailbox's access token and makes one
//!   authenticated read-only request (Graph: the Sent Items folder of the
//!   user; Gmail: `users.getProfile`), which proves the token is taken.
//!
//! An OAuth2 token comes from the token provider over the store (where the
//! rotated refresh tokens are kept, sealed): the database is opened, and
//! when a running `mailgate serve` holds it the check says so and stops
//! (a refresh here would spend a rotating refresh token the server holds).
//! With `--to` it also sends a small test message (built by the same
//! header policy as every outgoing message) and prints the reply. Nothing
//! but tokens is written to the store; no token is ever printed.

use anyhow::{Context, Result};

use super::App;
use crate::config::oauth2::TokenUse;
use crate::config::relay::{ApiTransport, RelayConfig};
use crate::config::{Config, MailboxConfig};
use crate::mail::Security;
use crate::oauth::provider::TokenProviders;
use crate::outbound::compose::{self, Kind, Mailbox, Outgoing};
use crate::outbound::relays::RelayTransport;
use crate::outbound::transport::{Envelope, SendError};
use crate::store::StoreError;

/// Returns whether everything worked.
pub async fn test_relay(config: Config, mailbox: Option<&str>, to: &[String]) -> Result<bool> {
    let app = App::new(config);
    let config = app.config();
    let sender = match mailbox {
        Some(name) => match config.mailboxes.iter().find(|m| m.name == name) {
            Some(m) => Some(m),
            None => {
                let names: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
                println!(
                    "FAILED (config): no mailbox named {name:?} (configured: {})",
                    names.join(", ")
                );
                return Ok(false);
            }
        },
        None => None,
    };
    let relay = match sender {
        Some(m) => match (&m.relay, &config.relay) {
            (Some(own), _) => {
                println!("mailbox {}: its own [mailbox.relay]", m.name);
                own
            }
            (None, Some(global)) => {
                println!(
                    "mailbox {}: no [mailbox.relay], it sends through [relay]",
                    m.name
                );
                global
            }
            (None, None) => {
                println!(
                    "FAILED (config): mailbox {} has no [mailbox.relay] and there is no [relay]: its mail stays queued",
                    m.name
                );
                return Ok(false);
            }
        },
        None => match &config.relay {
            Some(r) => r,
            None => {
                let own: Vec<&str> = (config.mailboxes.iter())
                    .filter(|m| m.relay.is_some())
                    .map(|m| m.name.as_str())
                    .collect();
                let hint = if own.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; mailboxes with their own [mailbox.relay]: {} (check one with --mailbox NAME)",
                        own.join(", ")
                    )
                };
                println!(
                    "FAILED (config): no [relay] section in the config: no outbound relay is configured{hint}"
                );
                return Ok(false);
            }
        },
    };

    let token_mailbox = match (&relay.api, &relay.oauth2) {
        (Some(api), _) => Some((api.mailbox.as_str(), api_use(api.kind))),
        (None, Some(o)) => Some((o.mailbox.as_str(), TokenUse::Smtp)),
        (None, None) => None,
    };
    // Held open until the check is over: a rotated refresh token goes
    // into it.
    let mut _store = None;
    let providers = match token_mailbox {
        None => TokenProviders::default(),
        Some((name, use_)) => {
            let store = match app.open_store() {
                Ok(store) => store,
                Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
                    println!(
                        "FAILED (busy): the relay logs in with the OAuth2 token of mailbox {name}, and a running mailgate holds the database with its tokens ({}): stop `mailgate serve` to run test-relay, or see the token health with `mailgate oauth status`",
                        config.db_path().display()
                    );
                    return Ok(false);
                }
                Err(e) => return Err(e).context("opening the database"),
            };
            let providers = app.token_providers(&store, &app.metrics())?;
            _store = Some(store);
            let Some(tokens) = providers.get(name, use_) else {
                println!("FAILED (config): mailbox {name} has no [mailbox.oauth2]");
                return Ok(false);
            };
            if let Err(e) = tokens.token().await {
                println!(
                    "FAILED (auth): mailbox {name}: no OAuth2 access token: {e}{}",
                    reconnect(name)
                );
                return Ok(false);
            }
            println!(
                "OAuth2: access token obtained for mailbox {name} ({})",
                use_.as_str()
            );
            providers
        }
    };
    let transport = match super::root::relay_transport(relay, &providers) {
        Ok(t) => t,
        Err(e) => {
            println!("FAILED (config): {e:#}");
            return Ok(false);
        }
    };
    let checked = match &transport {
        RelayTransport::Smtp(t) => probe_smtp(relay, t).await,
        RelayTransport::Graph(t) => {
            print_api(relay);
            t.check().await.map(|found| println!("{found}"))
        }
        RelayTransport::Gmail(t) => {
            print_api(relay);
            t.check().await.map(|found| println!("{found}"))
        }
    };
    if let Err(e) = checked {
        return Ok(failed_with(&e, token_mailbox.map(|(name, _)| name)));
    }
    if to.is_empty() {
        println!("OK");
        return Ok(true);
    }

    let (envelope, message) = match test_message(config, sender, relay, to) {
        Ok(m) => m,
        Err(e) => {
            println!("FAILED (message): {e}");
            return Ok(false);
        }
    };
    match transport.as_transport().send(&envelope, &message).await {
        Ok(delivery) => {
            println!(
                "sent to {}: {}",
                delivery.accepted.join(", "),
                delivery.reply
            );
            for r in &delivery.refused {
                println!("refused {}: {}", r.recipient, r.error);
            }
            if delivery.refused.is_empty() {
                println!("OK");
                Ok(true)
            } else {
                println!(
                    "FAILED (refused): {} of {} recipients refused",
                    delivery.refused.len(),
                    envelope.recipients.len()
                );
                Ok(false)
            }
        }
        Err(e) => Ok(failed_with(&e, token_mailbox.map(|(name, _)| name))),
    }
}

/// What to do when a mailbox's OAuth2 login fails.
fn reconnect(mailbox: &str) -> String {
    format!(
        " (see `mailgate oauth status`; connect the mailbox again with `mailgate oauth authorize {mailbox}`)"
    )
}

/// `FAILED (kind): detail`, with what to do when the mailbox's token was
/// refused.
fn failed_with(e: &SendError, token_mailbox: Option<&str>) -> bool {
    match token_mailbox {
        Some(name) if e.kind() == crate::outbound::transport::FailureKind::Auth => {
            println!("FAILED (auth): {e}{}", reconnect(name));
            false
        }
        _ => failed(e),
    }
}

fn api_use(kind: ApiTransport) -> TokenUse {
    match kind {
        ApiTransport::Graph => TokenUse::Graph,
        ApiTransport::Gmail => TokenUse::Gmail,
    }
}

fn print_api(relay: &RelayConfig) {
    if let Some(api) = &relay.api {
        println!(
            "relay {} {} as {} (token of mailbox {})",
            api.kind.as_str(),
            api.api_base,
            api.user,
            api.mailbox
        );
    }
}

/// EHLO, TLS, AUTH: what the relay offered is printed.
async fn probe_smtp(
    relay: &RelayConfig,
    transport: &crate::outbound::transport::smtp::SmtpTransport,
) -> Result<(), SendError> {
    let security = match relay.security {
        Security::Tls => "TLS",
        Security::StartTls => "STARTTLS",
        Security::None => "no TLS (insecure)",
    };
    let login = match (&relay.auth, &relay.oauth2) {
        (Some(a), _) => format!("as {}", a.user),
        (None, Some(o)) => format!("as {} (XOAUTH2)", o.user),
        (None, None) => "without AUTH".into(),
    };
    println!(
        "relay {}:{} ({security}) {login}, EHLO {}",
        relay.host, relay.port, relay.helo
    );
    let offered = transport.probe().await?;
    println!("greeting: {}", offered.greeting);
    if let Some(tls) = &offered.tls {
        println!("tls: {tls}");
    }
    println!("offered: {}", offered.capabilities.join(", "));
    if let Some(user) = &offered.authenticated_as {
        println!("auth: accepted for {user}");
    }
    Ok(())
}

fn failed(e: &SendError) -> bool {
    println!("FAILED ({}): {e}", e.kind().as_str());
    false
}

/// The test message: from the checked mailbox's first address (else the
/// default mailbox's, or the first mailbox's), a Notification, Message-ID
/// `test.<random>@<hostname>`.
fn test_message(
    config: &Config,
    sender: Option<&MailboxConfig>,
    relay: &RelayConfig,
    to: &[String],
) -> Result<(Envelope, Vec<u8>)> {
    let mailbox = sender
        .or(config.default_mailbox())
        .or(config.mailboxes.first())
        .ok_or_else(|| anyhow::anyhow!("no [[mailbox]] to send from"))?;
    let from = mailbox
        .addresses
        .first()
        .ok_or_else(|| anyhow::anyhow!("mailbox {} has no address", mailbox.name))?
        .clone();
    let through = match &relay.api {
        Some(api) => format!("{} as {}", api.kind.as_str(), api.user),
        None => format!("{}:{}", relay.host, relay.port),
    };
    let mut random = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| anyhow::anyhow!("no random numbers"))?;
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let message_id = format!("test.{random}@{}", config.server.hostname);
    let outgoing = Outgoing {
        kind: Kind::Notification,
        from: Mailbox {
            name: Some("mailgate".into()),
            address: from.clone(),
        },
        reply_to: from.clone(),
        to: to
            .iter()
            .map(|a| Mailbox {
                name: None,
                address: a.clone(),
            })
            .collect(),
        cc: Vec::new(),
        subject: "mailgate relay test".into(),
        tag: String::new(),
        message_id,
        in_reply_to: None,
        references: Vec::new(),
        ticket_number: 0,
        record_id: 0,
        date: time::OffsetDateTime::now_utc().unix_timestamp(),
        text: format!(
            "This is a test message sent by `mailgate test-relay` through {through}.\n\
             It belongs to no ticket; nothing was recorded.\n"
        ),
        html: None,
        attachments: Vec::new(),
        original: None,
    };
    let bytes = compose::compose(&outgoing)?;
    Ok((
        Envelope {
            from,
            recipients: to.to_vec(),
        },
        bytes,
    ))
}
