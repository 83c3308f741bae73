//! `mailgate test-relay`: connects to the `[relay]`, says EHLO, does TLS
//! and AUTH as configured, and prints what the relay offered and `OK`, or
//! `FAILED (kind): detail`. With `--to` it also sends a small test message
//! (built by the same header policy as every outgoing message) and prints
//! the relay's reply. It opens no database and changes nothing.

use anyhow::Result;

use crate::config::Config;
use crate::mail::Security;
use crate::outbound::compose::{self, Kind, Mailbox, Outgoing};
use crate::outbound::transport::smtp::SmtpTransport;
use crate::outbound::transport::{Envelope, SendError, Transport};

/// Returns whether everything worked.
pub async fn test_relay(config: Config, to: &[String]) -> Result<bool> {
    let Some(relay) = &config.relay else {
        println!(
            "FAILED (config): no [relay] section in the config: no outbound relay is configured"
        );
        return Ok(false);
    };
    if relay.api.is_some() {
        println!(
            "FAILED (config): relay.transport is an HTTP API (graph/gmail); test-relay checks SMTP relays only"
        );
        return Ok(false);
    }
    // TODO(lead, issue 11): the token source of relay.oauth2.mailbox.
    let transport = match SmtpTransport::from_config(relay, None) {
        Ok(t) => t,
        Err(e) => {
            println!("FAILED (config): {e}");
            return Ok(false);
        }
    };
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
    let offered = match transport.probe().await {
        Ok(o) => o,
        Err(e) => return Ok(failed(&e)),
    };
    println!("greeting: {}", offered.greeting);
    if let Some(tls) = &offered.tls {
        println!("tls: {tls}");
    }
    println!("offered: {}", offered.capabilities.join(", "));
    if let Some(user) = &offered.authenticated_as {
        println!("auth: accepted for {user}");
    }
    if to.is_empty() {
        println!("OK");
        return Ok(true);
    }

    let (envelope, message) = match test_message(&config, to) {
        Ok(m) => m,
        Err(e) => {
            println!("FAILED (message): {e}");
            return Ok(false);
        }
    };
    match transport.send(&envelope, &message).await {
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
        Err(e) => Ok(failed(&e)),
    }
}

fn failed(e: &SendError) -> bool {
    println!("FAILED ({}): {e}", e.kind().as_str());
    false
}

/// The test message: from the default mailbox's first address (or the
/// first mailbox's), a Notification, Message-ID `test.<random>@<hostname>`.
fn test_message(config: &Config, to: &[String]) -> Result<(Envelope, Vec<u8>)> {
    let mailbox = config
        .default_mailbox()
        .or(config.mailboxes.first())
        .ok_or_else(|| anyhow::anyhow!("no [[mailbox]] to send from"))?;
    let from = mailbox
        .addresses
        .first()
        .ok_or_else(|| anyhow::anyhow!("mailbox {} has no address", mailbox.name))?
        .clone();
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
            "This is a test message sent by `mailgate test-relay` through {}:{}.\n\
             It belongs to no ticket; nothing was recorded.\n",
            config.relay.as_ref().map(|r| r.host.as_str()).unwrap_or(""),
            config.relay.as_ref().map(|r| r.port).unwrap_or(0)
        ),
        html: None,
        attachments: Vec::new(),
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
