//! What the submission endpoint does with a session: logins checked against
//! the configured accounts (argon2, off the async threads) under the per-IP
//! failure throttle, senders and From held to the account's mailboxes, and
//! accepted mail queued in the outbox before the client hears 250.
//!
//! Nothing in a reply says which half of a login was wrong; the log does
//! (without the password), for the operator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, Semaphore};

use crate::auth::submission::{Account, Accounts};
use crate::auth::throttle::AuthThrottle;
use crate::config::MailboxConfig;
use crate::inbound::smtp::server::{Handler, origin};
use crate::metrics::Metrics;
use crate::proto::smtp::reply::Reply;
use crate::proto::smtp::session::{
    AuthResult, Credentials, Envelope, OversizeInfo, RecipientPolicy,
};
use crate::store::commit::Committer;
use crate::tickets::{OpOutcome, Operation, SubmitOutcome, SubmitRequest};

/// At most this many password checks at once: each argon2 verification
/// takes ~19 MiB and a core for tens of milliseconds.
const CONCURRENT_VERIFICATIONS: usize = 4;

/// Clones share the accounts, the throttle and the verification slots.
#[derive(Clone)]
pub struct SubmissionHandler {
    committer: Committer,
    accounts: Arc<Accounts>,
    throttle: Arc<Mutex<AuthThrottle>>,
    mailboxes: Arc<Vec<MailboxConfig>>,
    metrics: Arc<Metrics>,
    /// Wakes the send worker when a message was queued.
    outbound_wake: Arc<Notify>,
    verifications: Arc<Semaphore>,
    /// Our name in the Received field.
    hostname: String,
}

fn refused_sender(address: &str) -> Reply {
    Reply::new(
        550,
        Some((5, 7, 1)),
        format!("<{address}>: this account may not send as that address"),
    )
}

/// The From header's addresses, all of them (mail-parser reads the header
/// block only).
fn from_addresses(raw: &[u8]) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    message
        .from()
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl SubmissionHandler {
    pub fn new(
        committer: Committer,
        accounts: Arc<Accounts>,
        throttle: AuthThrottle,
        mailboxes: Arc<Vec<MailboxConfig>>,
        metrics: Arc<Metrics>,
        outbound_wake: Arc<Notify>,
        hostname: String,
    ) -> SubmissionHandler {
        SubmissionHandler {
            committer,
            accounts,
            throttle: Arc::new(Mutex::new(throttle)),
            mailboxes,
            metrics,
            outbound_wake,
            verifications: Arc::new(Semaphore::new(CONCURRENT_VERIFICATIONS)),
            hostname,
        }
    }

    fn account(&self, user: Option<&str>) -> Option<&Account> {
        user.and_then(|u| self.accounts.get(u))
    }
}

/// `from HELO ([ip]) by us with ESMTPSA; date`: ESMTPSA is SMTP with TLS
/// and AUTH (RFC 3848); the login name is not written into the message.
fn received(envelope: &Envelope, peer: SocketAddr, hostname: &str, at_ms: i64) -> String {
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()[];\\".contains(*c))
        .take(255)
        .collect();
    let date = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_default();
    let with = if envelope.tls { "ESMTPSA" } else { "ESMTPA" };
    format!(
        "from {helo} ([{}]) by {hostname} with {with}; {date}",
        peer.ip()
    )
}

fn temporary() -> Reply {
    Reply::new(
        451,
        Some((4, 3, 0)),
        "Temporary local problem queueing the message, try again later",
    )
}

impl Handler for SubmissionHandler {
    type Policy = SubmissionPolicy;

    fn policy(&self, _peer: SocketAddr) -> SubmissionPolicy {
        SubmissionPolicy {
            accounts: self.accounts.clone(),
            mailboxes: self.mailboxes.clone(),
            metrics: self.metrics.clone(),
        }
    }

    fn sessions_active(&self) -> &Gauge {
        &self.metrics.submission.sessions_active
    }

    fn count_connection(&self, _outcome: &str) {}

    /// Checks the From header, then queues the message.
    async fn message(&self, envelope: Envelope, data: Vec<u8>, peer: SocketAddr) -> Reply {
        let Some(account) = self.account(envelope.auth_user.as_deref()) else {
            // The session only hands over mail after a successful AUTH.
            return Reply::new(530, Some((5, 7, 0)), "Authentication required");
        };
        // The account's name as configured, not as the client typed it at
        // AUTH (user names match ignoring case): the outbound log, its
        // `?account=` filter, the metrics and X-Mailgate-Account use it.
        let user = account.user.clone();
        let Some(mailbox) = account.mailbox_for(&envelope.mail_from, &self.mailboxes) else {
            self.metrics
                .submission
                .count_message(&user, "refused_sender");
            return refused_sender(&envelope.mail_from);
        };
        let mailbox = mailbox.name.clone();
        let raw = Bytes::from(data);
        let parsed = {
            let raw = raw.clone();
            crate::ingest::offload::run(raw.len(), move || {
                (from_addresses(&raw), crate::ingest::parse::parse(&raw))
            })
            .await
        };
        let Ok((from, parsed)) = parsed else {
            return temporary();
        };
        let foreign: Vec<&String> = from
            .iter()
            .filter(|a| !account.may_send_as(a, &self.mailboxes))
            .collect();
        if from.is_empty() || !foreign.is_empty() {
            self.metrics.submission.count_message(&user, "refused_from");
            tracing::warn!(client = %peer, account = %user, from = ?from, "submission refused: From is not one of the account's mailboxes");
            return Reply::new(
                550,
                Some((5, 7, 1)),
                if from.is_empty() {
                    "Message has no From: address; it must be one of this account's mailboxes"
                        .to_string()
                } else {
                    "From: must be an address of one of this account's mailboxes".to_string()
                },
            );
        }
        let mail = match parsed {
            Ok(mail) => mail,
            Err(e) => {
                self.metrics
                    .submission
                    .count_message(&user, "refused_unparseable");
                return Reply::new(
                    554,
                    Some((5, 6, 0)),
                    format!("Message cannot be read ({})", e.reason.as_str()),
                );
            }
        };
        let at_ms = crate::now_ms();
        let received = received(&envelope, peer, &self.hostname, at_ms);
        let request = SubmitRequest {
            received,
            account: user.clone(),
            mailbox: mailbox.clone(),
            reply_to: account.reply_to,
            envelope: origin("submission", &envelope, peer).envelope,
            raw,
            mail: Arc::new(mail),
            at: crate::rfc3339_at(at_ms),
            at_ms,
        };
        match self.committer.apply(Operation::Submit(request)).await {
            Ok(OpOutcome::Submitted(SubmitOutcome::Queued { id, ticket })) => {
                self.metrics.submission.count_message(&user, "queued");
                self.outbound_wake.notify_one();
                tracing::info!(client = %peer, account = %user, mailbox = %mailbox, outbound = id, ticket = ?ticket.map(|t| t.0), recipients = envelope.recipients.len(), "submission queued");
                let on = ticket.map_or(String::new(), |(_, number)| format!(" on ticket {number}"));
                Reply::new(250, Some((2, 0, 0)), format!("Ok: queued as {id}{on}"))
            }
            Ok(other) => {
                tracing::error!(outcome = ?other, "unexpected outcome of a submission");
                self.metrics.submission.count_message(&user, "error");
                temporary()
            }
            Err(e) => {
                tracing::error!(client = %peer, account = %user, error = %e, "could not queue a submission");
                self.metrics.submission.count_message(&user, "error");
                temporary()
            }
        }
    }

    async fn oversize(&self, envelope: Envelope, info: OversizeInfo, peer: SocketAddr) {
        let user = self
            .account(envelope.auth_user.as_deref())
            .map(|a| a.user.clone())
            .unwrap_or_default();
        self.metrics
            .submission
            .count_message(&user, "refused_oversize");
        tracing::warn!(client = %peer, account = %user, size = info.size, "submission refused: over the size limit");
    }

    async fn authenticate(&self, credentials: Credentials, peer: SocketAddr) -> AuthResult {
        let ip = peer.ip();
        if let Some(left) = self
            .throttle
            .lock()
            .map(|mut t| t.check(ip, Instant::now()))
            .unwrap_or(None)
        {
            self.metrics.submission.count_auth("blocked");
            tracing::warn!(client = %peer, blocked_for_s = left.as_secs(), "AUTH from a blocked client");
            return AuthResult::Blocked;
        }
        let accounts = self.accounts.clone();
        let user = credentials.user.clone();
        let Ok(permit) = self.verifications.clone().acquire_owned().await else {
            return AuthResult::TemporaryFailure;
        };
        let verdict = tokio::task::spawn_blocking(move || {
            accounts.verify(
                &credentials.user,
                credentials.password.expose().as_bytes(),
                ip,
            )
        })
        .await;
        drop(permit);
        match verdict {
            Ok(Ok(account)) => {
                if let Ok(mut t) = self.throttle.lock() {
                    t.success(ip);
                }
                self.metrics.submission.count_auth("accepted");
                tracing::info!(client = %peer, account = %account.user, "submission login");
                AuthResult::Accepted
            }
            Ok(Err(why)) => {
                let failure = self
                    .throttle
                    .lock()
                    .map(|mut t| t.failure(ip, Instant::now()))
                    .ok();
                tracing::warn!(client = %peer, user = %crate::mail::printable::Printable(&user), reason = ?why, "submission login failed");
                if let Some(f) = &failure {
                    tokio::time::sleep(f.delay).await;
                }
                if failure.is_some_and(|f| f.blocked) {
                    self.metrics.submission.count_auth("blocked");
                    tracing::warn!(client = %peer, "too many failed logins; client blocked");
                    AuthResult::Blocked
                } else {
                    self.metrics.submission.count_auth("rejected");
                    AuthResult::Rejected
                }
            }
            Err(_) => {
                self.metrics.submission.count_auth("error");
                AuthResult::TemporaryFailure
            }
        }
    }
}

/// Any recipient (it is a relay, for authenticated clients only); senders
/// must be an address of one of the account's mailboxes.
pub struct SubmissionPolicy {
    accounts: Arc<Accounts>,
    mailboxes: Arc<Vec<MailboxConfig>>,
    /// Counts the senders refused here as `refused_sender`.
    metrics: Arc<Metrics>,
}

impl RecipientPolicy for SubmissionPolicy {
    fn check_recipient(&self, _address: &str) -> Result<String, Reply> {
        Ok(String::new())
    }

    fn check_sender(&self, auth_user: Option<&str>, address: &str) -> Result<(), Reply> {
        let Some(account) = auth_user.and_then(|u| self.accounts.get(u)) else {
            return Err(Reply::new(530, Some((5, 7, 0)), "Authentication required"));
        };
        if address.is_empty() || !account.may_send_as(address, &self.mailboxes) {
            self.metrics
                .submission
                .count_message(&account.user, "refused_sender");
            return Err(refused_sender(address));
        }
        Ok(())
    }
}
