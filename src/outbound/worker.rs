//! The send worker: takes due entries from the outbox, oldest first, holds
//! each mailbox to its send limits, hands the message to its mailbox's
//! relay (its own `[mailbox.relay]`, else `[relay]`; see [`Relays`]), and
//! records what happened through the writer, so a restart resumes exactly
//! where it stopped.
//!
//! - Order per ticket is kept: while an earlier message of a ticket waits,
//!   the later ones wait too.
//! - Over a send limit a message is `deferred` with `rate_limit:<budget>`
//!   until the budget allows it; that is not a failed attempt.
//! - A temporary failure (4xx, connection, TLS, timeout) is retried with
//!   exponential backoff until `max_age`, then `failed`; a permanent one
//!   (5xx) is `failed` with the relay's reply.
//! - The one window where a message can go out twice: the relay said `250`
//!   and the process died before the `sent` mark was committed. The next
//!   start sends it again (the relay's reply line is not known to us).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::limits::{Decision, SendLimits, Sent, decide};
use super::relays::Relays;
use super::transport::{Delivery, Envelope, SendError};
use crate::metrics::{MailboxLabel, MailboxReason, Metrics};
use crate::store::Store;
use crate::store::commit::Committer;
use crate::tickets::model::OutboxEntry;
use crate::tickets::{Attempt, DeliveryUpdate, Operation};

/// The reply recorded for a message the relay took. When it refused some
/// recipients while taking others, the message counts as sent; the refused
/// ones are named in the recorded reply and logged (not retried on their own).
fn sent_reply(d: Delivery) -> String {
    if d.refused.is_empty() {
        return d.reply;
    }
    let refused: Vec<String> = d
        .refused
        .iter()
        .map(|r| format!("{} ({})", r.recipient, r.error))
        .collect();
    tracing::warn!(refused = %refused.join("; "), "the relay took the message for some recipients only");
    format!("{}; not delivered to: {}", d.reply, refused.join("; "))
}

/// Later messages of this entry's ticket wait behind it (messages of the
/// outbound log belong to no ticket and keep no order among each other).
fn hold(waiting: &mut BTreeSet<u64>, entry: &OutboxEntry) {
    if let Some(t) = entry.ticket_id {
        waiting.insert(t);
    }
}

/// The time, in ms since the epoch (a test can move it).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::now_ms()
    }
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Every mailbox's budget, unless `per_mailbox` has its own.
    pub limits: SendLimits,
    pub per_mailbox: BTreeMap<String, SendLimits>,
    /// Give up retrying after this long (5 days by default).
    pub max_age: Duration,
    /// First retry delay; doubled per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Look at the queue at least this often.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            limits: SendLimits::default(),
            per_mailbox: BTreeMap::new(),
            max_age: Duration::from_secs(5 * 24 * 3600),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            poll: Duration::from_secs(5),
        }
    }
}

/// The worker and the handle the API wakes it with.
pub struct SendWorker {
    store: Store,
    committer: Committer,
    relays: Relays,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    /// Mailboxes whose gauges were ever set.
    known: std::sync::Mutex<BTreeSet<String>>,
}

/// What one pass over the queue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
}

impl SendWorker {
    pub fn new(
        store: Store,
        committer: Committer,
        relays: Relays,
        settings: WorkerSettings,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> SendWorker {
        SendWorker {
            store,
            committer,
            relays,
            settings,
            metrics,
            clock,
            wake: Arc::new(Notify::new()),
            known: Default::default(),
        }
    }

    /// Wakes the worker (something was queued or retried).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs passes until `stop` turns true; a pass in progress finishes
    /// (its attempt and the record of it) before the worker returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.relays.is_empty() {
            tracing::warn!("no [relay] configured: outbound mail stays queued until one is");
        } else if !self.relays.has_default() {
            tracing::warn!(
                "no [relay] configured: mail of mailboxes without a [mailbox.relay] stays queued until one is"
            );
        }
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.pass().await {
                tracing::error!(error = %e, "outbound pass failed; retrying");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn record(&self, id: u64, attempt: Attempt) -> Result<(), crate::store::StoreError> {
        let at_ms = self.clock.now_ms();
        self.committer
            .apply(Operation::Delivery(DeliveryUpdate {
                id,
                attempt,
                at: crate::rfc3339_at(at_ms),
                at_ms,
            }))
            .await
            .map(|_| ())
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(20));
        self.settings
            .retry_base
            .saturating_mul(factor)
            .min(self.settings.retry_max)
    }

    /// One pass over every due entry.
    pub async fn pass(&self) -> Result<PassReport, crate::store::StoreError> {
        let store = self.store.clone();
        let pending = tokio::task::spawn_blocking(move || store.pending_outbox(10_000))
            .await
            .map_err(|e| crate::store::StoreError::Failed(e.to_string()))??;
        self.gauges(&pending);
        let mut report = PassReport::default();
        let mut waiting_tickets: BTreeSet<u64> = BTreeSet::new();
        let mut limited: BTreeSet<String> = BTreeSet::new();
        // Each mailbox's send log is read once per pass and kept up to date
        // here as messages go, not re-read for every entry.
        let mut histories: BTreeMap<String, Vec<Sent>> = BTreeMap::new();
        for entry in pending {
            let now = self.clock.now_ms();
            if entry
                .ticket_id
                .is_some_and(|t| waiting_tickets.contains(&t))
                || limited.contains(&entry.mailbox)
            {
                hold(&mut waiting_tickets, &entry);
                continue;
            }
            if entry.next_attempt_ms > now {
                hold(&mut waiting_tickets, &entry);
                continue;
            }
            let label = MailboxLabel {
                mailbox: entry.mailbox.clone(),
            };
            if !histories.contains_key(&entry.mailbox) {
                let history = self.history(&entry.mailbox, now).await?;
                histories.insert(entry.mailbox.clone(), history);
            }
            let history = histories
                .get_mut(&entry.mailbox)
                .unwrap_or_else(|| unreachable!());
            let rcpts = entry.rcpt_to.len() as u64;
            if let Decision::Wait { until_ms, reason } =
                decide(self.limits(&entry.mailbox), history, now, entry.size, rcpts)
            {
                tracing::info!(
                    outbound = entry.id,
                    mailbox = %entry.mailbox,
                    budget = reason.as_str(),
                    wait_ms = until_ms - now,
                    "outbound message waits for the send limit"
                );
                self.deferred(&entry, "rate_limit");
                self.record(
                    entry.id,
                    Attempt::Deferred {
                        next_attempt_ms: until_ms,
                        error: format!("rate_limit:{}", reason.as_str()),
                        rate_limited: true,
                    },
                )
                .await?;
                limited.insert(entry.mailbox.clone());
                hold(&mut waiting_tickets, &entry);
                report.deferred += 1;
                continue;
            }
            let Some(relay) = self.relays.for_mailbox(&entry.mailbox) else {
                self.deferred(&entry, "no_relay");
                self.record(
                    entry.id,
                    Attempt::Deferred {
                        next_attempt_ms: now + self.settings.retry_max.as_millis() as i64,
                        error: "no relay configured".into(),
                        rate_limited: true,
                    },
                )
                .await?;
                report.deferred += 1;
                hold(&mut waiting_tickets, &entry);
                continue;
            };
            let store = self.store.clone();
            let id = entry.id;
            let raw = tokio::task::spawn_blocking(move || store.message_raw(id))
                .await
                .map_err(|e| crate::store::StoreError::Failed(e.to_string()))??
                .unwrap_or_default();
            let envelope = Envelope {
                from: entry.mail_from.clone(),
                recipients: entry.rcpt_to.clone(),
            };
            let result = relay.send(&envelope, &raw).await;
            let now = self.clock.now_ms();
            match result {
                Ok(delivery) => {
                    let reply = sent_reply(delivery);
                    history.push(Sent {
                        at_ms: now,
                        bytes: entry.size,
                        recipients: rcpts,
                    });
                    tracing::info!(outbound = entry.id, ticket = ?entry.ticket_id, mailbox = %entry.mailbox, reply = %reply, "outbound message sent");
                    self.record(entry.id, Attempt::Sent { reply }).await?;
                    self.metrics.outbound.sent.get_or_create(&label).inc();
                    report.sent += 1;
                }
                Err(SendError::Permanent { reply: error }) => {
                    tracing::warn!(outbound = entry.id, mailbox = %entry.mailbox, error = %error, "outbound message refused by the relay; failed");
                    self.record(entry.id, Attempt::Failed { error }).await?;
                    self.metrics.outbound.failed.get_or_create(&label).inc();
                    hold(&mut waiting_tickets, &entry);
                    report.failed += 1;
                }
                Err(SendError::Temporary { kind, reason }) => {
                    let error = format!("{}: {reason}", kind.as_str());
                    let age = Duration::from_millis((now - entry.created_ms).max(0) as u64);
                    if age >= self.settings.max_age {
                        let error = format!(
                            "gave up after {} attempts over {}; last error: {error}",
                            entry.attempts + 1,
                            humantime::format_duration(Duration::from_secs(age.as_secs()))
                        );
                        tracing::warn!(outbound = entry.id, mailbox = %entry.mailbox, error = %error, "outbound message failed");
                        self.record(entry.id, Attempt::Failed { error }).await?;
                        self.metrics.outbound.failed.get_or_create(&label).inc();
                        report.failed += 1;
                    } else {
                        let next = now + self.backoff(entry.attempts).as_millis() as i64;
                        tracing::warn!(outbound = entry.id, mailbox = %entry.mailbox, error = %error, retry_in_ms = next - now, "outbound message deferred");
                        self.deferred(&entry, "temporary");
                        self.record(
                            entry.id,
                            Attempt::Deferred {
                                next_attempt_ms: next,
                                error,
                                rate_limited: false,
                            },
                        )
                        .await?;
                        report.deferred += 1;
                    }
                    hold(&mut waiting_tickets, &entry);
                }
            }
        }
        if report != PassReport::default() {
            let store = self.store.clone();
            let left = tokio::task::spawn_blocking(move || store.pending_outbox(10_000))
                .await
                .map_err(|e| crate::store::StoreError::Failed(e.to_string()))??;
            self.gauges(&left);
        }
        Ok(report)
    }

    fn deferred(&self, entry: &OutboxEntry, reason: &str) {
        self.metrics
            .outbound
            .deferred
            .get_or_create(&MailboxReason {
                mailbox: entry.mailbox.clone(),
                reason: reason.into(),
            })
            .inc();
    }

    fn limits(&self, mailbox: &str) -> &SendLimits {
        self.settings
            .per_mailbox
            .get(mailbox)
            .unwrap_or(&self.settings.limits)
    }

    /// What `mailbox` sent within its longest window, oldest first.
    async fn history(
        &self,
        mailbox: &str,
        now: i64,
    ) -> Result<Vec<Sent>, crate::store::StoreError> {
        let since = now - self.limits(mailbox).horizon().as_millis() as i64;
        let store = self.store.clone();
        let name = mailbox.to_string();
        let log = tokio::task::spawn_blocking(move || store.send_log(&name, since))
            .await
            .map_err(|e| crate::store::StoreError::Failed(e.to_string()))??;
        Ok(log
            .into_iter()
            .map(|(at_ms, bytes, recipients)| Sent {
                at_ms,
                bytes,
                recipients,
            })
            .collect())
    }

    fn gauges(&self, pending: &[OutboxEntry]) {
        let now = self.clock.now_ms();
        let mut depth: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for e in pending {
            let d = depth.entry(e.mailbox.as_str()).or_insert((0, now));
            d.0 += 1;
            d.1 = d.1.min(e.created_ms);
        }
        let m = &self.metrics.outbound;
        // Mailboxes with nothing pending (any more) go back to zero.
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for mailbox in known.iter() {
            if !depth.contains_key(mailbox.as_str()) {
                let label = MailboxLabel {
                    mailbox: mailbox.clone(),
                };
                m.queue_depth.get_or_create(&label).set(0);
                m.oldest_queued_seconds.get_or_create(&label).set(0.0);
            }
        }
        known.extend(depth.keys().map(|m| m.to_string()));
        for (mailbox, (n, oldest)) in depth {
            let label = MailboxLabel {
                mailbox: mailbox.into(),
            };
            m.queue_depth.get_or_create(&label).set(n);
            m.oldest_queued_seconds
                .get_or_create(&label)
                .set(((now - oldest).max(0) as f64) / 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::outbound::transport::{FailureKind, SendFuture, Transport};
    use crate::tickets::model::DeliveryState;
    use crate::tickets::suite::{mail, request, settings};
    use crate::tickets::{OpOutcome, ReplyOutcome, ReplyRequest};

    struct TestClock(AtomicI64);
    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// The relay's answers, in order; every call is recorded.
    #[derive(Default)]
    struct Script {
        answers: Mutex<Vec<Result<String, SendError>>>,
        calls: Mutex<Vec<(String, Vec<String>, usize)>>,
    }
    impl Transport for Script {
        fn send<'a>(&'a self, envelope: &'a Envelope, message: &'a [u8]) -> SendFuture<'a> {
            self.calls.lock().unwrap().push((
                envelope.from.clone(),
                envelope.recipients.clone(),
                message.len(),
            ));
            let mut answers = self.answers.lock().unwrap();
            let answer = if answers.is_empty() {
                Ok("250 2.0.0 Ok".to_string())
            } else {
                answers.remove(0)
            };
            let accepted = envelope.recipients.clone();
            Box::pin(async move {
                answer.map(|reply| Delivery {
                    reply,
                    accepted,
                    refused: vec![],
                })
            })
        }
        fn describe(&self) -> String {
            "script".into()
        }
    }

    fn temporary(kind: FailureKind, reason: &str) -> SendError {
        SendError::Temporary {
            kind,
            reason: reason.into(),
        }
    }

    const T0: i64 = 1_767_312_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        committer: Committer,
        clock: Arc<TestClock>,
        relay: Arc<Script>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap();
        let committer = Committer::start(&store, settings(), Arc::new(|_| {}));
        Fixture {
            _dir: dir,
            store,
            committer,
            clock: Arc::new(TestClock(AtomicI64::new(T0))),
            relay: Arc::new(Script::default()),
        }
    }

    impl Fixture {
        fn worker(&self, limits: SendLimits) -> SendWorker {
            SendWorker::new(
                self.store.clone(),
                self.committer.clone(),
                Relays::new(Some(self.relay.clone())),
                WorkerSettings {
                    limits,
                    ..WorkerSettings::default()
                },
                Arc::new(Metrics::new()),
                self.clock.clone(),
            )
        }

        /// A new ticket from a customer; its id.
        async fn ticket(&self, n: u32) -> u64 {
            let id: &'static str = Box::leak(format!("c{n}@customer.test").into_boxed_str());
            match self
                .committer
                .commit(request(&mail("ann@customer.test", Some(id), "Q")))
                .await
                .unwrap()
                .remove(0)
            {
                crate::tickets::model::Outcome::Stored { ticket_id, .. } => ticket_id,
                other => panic!("{other:?}"),
            }
        }

        /// A queued reply on a ticket; its outbox id.
        async fn reply(&self, ticket_id: u64) -> u64 {
            let now = self.clock.now_ms();
            let r = ReplyRequest {
                ticket_id,
                author: None,
                text: "answer".into(),
                html: None,
                cc: vec![],
                attachments: vec![],
                internal: false,
                at: crate::rfc3339_at(now),
                at_ms: now,
            };
            match self.committer.apply(Operation::Reply(r)).await.unwrap() {
                OpOutcome::Replied(ReplyOutcome::Stored { message_id, .. }) => message_id,
                other => panic!("{other:?}"),
            }
        }

        fn state(&self, id: u64) -> OutboxEntry {
            self.store.outbox(id).unwrap().unwrap()
        }

        fn advance(&self, ms: i64) {
            self.clock.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn queued_replies_are_sent_once_with_the_relays_reply() {
        let f = fixture();
        let t = f.ticket(1).await;
        let a = f.reply(t).await;
        let b = f.reply(t).await;
        f.relay
            .answers
            .lock()
            .unwrap()
            .push(Ok("250 2.0.0 Ok: queued as A1".into()));
        let w = f.worker(SendLimits::default());
        let report = w.pass().await.unwrap();
        assert_eq!(report.sent, 2);
        assert_eq!(f.state(a).state, DeliveryState::Sent);
        assert_eq!(
            f.state(a).relay_reply.as_deref(),
            Some("250 2.0.0 Ok: queued as A1")
        );
        assert_eq!(f.state(b).state, DeliveryState::Sent);
        let calls = f.relay.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "support@gw.test");
        assert_eq!(calls[0].1, vec!["ann@customer.test".to_string()]);
        assert_eq!(calls[0].2 as u64, f.state(a).size);
        assert_eq!(w.pass().await.unwrap(), PassReport::default());
        assert_eq!(f.relay.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_eleventh_message_in_a_minute_waits_even_across_a_restart() {
        let f = fixture();
        let mut ids = Vec::new();
        for n in 0..11 {
            let t = f.ticket(n).await;
            ids.push(f.reply(t).await);
        }
        let report = f.worker(SendLimits::default()).pass().await.unwrap();
        assert_eq!((report.sent, report.deferred), (10, 1));
        let last = f.state(ids[10]);
        assert_eq!(last.state, DeliveryState::Deferred);
        assert_eq!(
            last.last_error.as_deref(),
            Some("rate_limit:messages_per_window")
        );
        assert_eq!(last.attempts, 0);
        assert_eq!(last.next_attempt_ms, T0 + 60_000);
        // A new worker (as after a restart) sees the same budget.
        f.advance(30_000);
        let again = f.worker(SendLimits::default());
        assert_eq!(again.pass().await.unwrap().sent, 0);
        f.advance(30_000);
        assert_eq!(again.pass().await.unwrap().sent, 1);
        assert_eq!(f.state(ids[10]).state, DeliveryState::Sent);
    }

    #[tokio::test]
    async fn temporary_failures_back_off_keep_ticket_order_and_give_up_when_old() {
        let f = fixture();
        let t = f.ticket(1).await;
        let first = f.reply(t).await;
        let second = f.reply(t).await;
        let other = f.reply(f.ticket(2).await).await;
        f.relay
            .answers
            .lock()
            .unwrap()
            .push(Err(temporary(FailureKind::Refused, "451 4.3.0 try later")));
        let w = f.worker(SendLimits::default());
        let report = w.pass().await.unwrap();
        // The first failed for now; the second of the same ticket waits
        // behind it; another ticket's message goes.
        assert_eq!((report.sent, report.deferred), (1, 1));
        assert_eq!(f.state(first).state, DeliveryState::Deferred);
        assert_eq!(f.state(first).attempts, 1);
        assert_eq!(f.state(first).next_attempt_ms, T0 + 60_000);
        assert_eq!(f.state(second).state, DeliveryState::Queued);
        assert_eq!(f.state(other).state, DeliveryState::Sent);
        f.advance(60_000);
        assert_eq!(w.pass().await.unwrap().sent, 2);
        let calls = f.relay.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 4);

        // Too old: failed with the last error.
        let old = f.reply(t).await;
        f.advance(6 * 24 * 3600 * 1000);
        f.relay
            .answers
            .lock()
            .unwrap()
            .push(Err(temporary(FailureKind::Connect, "connection refused")));
        let report = w.pass().await.unwrap();
        assert_eq!(report.failed, 1);
        let e = f.state(old);
        assert_eq!(e.state, DeliveryState::Failed);
        assert!(
            e.last_error
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
    }

    #[tokio::test]
    async fn a_mailbox_with_its_own_limits_is_held_to_them_alone() {
        let f = fixture();
        let mut sales = Vec::new();
        for n in 0..2 {
            let id: &'static str = Box::leak(format!("s{n}@customer.test").into_boxed_str());
            let o = f
                .committer
                .commit(crate::tickets::suite::request_for(
                    &mail("ann@customer.test", Some(id), "Q"),
                    &["sales"],
                    false,
                ))
                .await
                .unwrap()
                .remove(0);
            let crate::tickets::model::Outcome::Stored { ticket_id, .. } = o else {
                panic!("{o:?}")
            };
            sales.push(f.reply(ticket_id).await);
        }
        let support: Vec<u64> = {
            let mut v = Vec::new();
            for n in 10..13 {
                let t = f.ticket(n).await;
                v.push(f.reply(t).await);
            }
            v
        };
        let mut settings = WorkerSettings::default();
        settings.per_mailbox.insert(
            "sales".into(),
            SendLimits {
                messages: 1,
                ..SendLimits::default()
            },
        );
        let w = SendWorker::new(
            f.store.clone(),
            f.committer.clone(),
            Relays::new(Some(f.relay.clone())),
            settings,
            Arc::new(Metrics::new()),
            f.clock.clone(),
        );
        let report = w.pass().await.unwrap();
        assert_eq!((report.sent, report.deferred), (4, 1));
        assert_eq!(f.state(sales[0]).state, DeliveryState::Sent);
        assert_eq!(f.state(sales[1]).state, DeliveryState::Deferred);
        for id in support {
            assert_eq!(f.state(id).state, DeliveryState::Sent);
        }
    }

    #[tokio::test]
    async fn a_permanent_refusal_fails_with_the_reply() {
        let f = fixture();
        let id = f.reply(f.ticket(1).await).await;
        f.relay
            .answers
            .lock()
            .unwrap()
            .push(Err(SendError::Permanent {
                reply: "550 5.1.1 <ann@customer.test>: no such user".into(),
            }));
        assert_eq!(
            f.worker(SendLimits::default()).pass().await.unwrap().failed,
            1
        );
        let e = f.state(id);
        assert_eq!(e.state, DeliveryState::Failed);
        assert_eq!(
            e.last_error.as_deref(),
            Some("550 5.1.1 <ann@customer.test>: no such user")
        );
        assert!(f.store.pending_outbox(10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_relay_mail_stays_queued() {
        let f = fixture();
        let id = f.reply(f.ticket(1).await).await;
        let w = SendWorker::new(
            f.store.clone(),
            f.committer.clone(),
            Relays::new(None),
            WorkerSettings::default(),
            Arc::new(Metrics::new()),
            f.clock.clone(),
        );
        assert_eq!(w.pass().await.unwrap().deferred, 1);
        let e = f.state(id);
        assert_eq!(e.state, DeliveryState::Deferred);
        assert_eq!(e.last_error.as_deref(), Some("no relay configured"));
        assert_eq!(e.attempts, 0);
    }

    /// A sales ticket's reply, queued; its outbox id.
    async fn sales_reply(f: &Fixture, n: u32) -> u64 {
        let id: &'static str = Box::leak(format!("own{n}@customer.test").into_boxed_str());
        let o = f
            .committer
            .commit(crate::tickets::suite::request_for(
                &mail("ann@customer.test", Some(id), "Q"),
                &["sales"],
                false,
            ))
            .await
            .unwrap()
            .remove(0);
        let crate::tickets::model::Outcome::Stored { ticket_id, .. } = o else {
            panic!("{o:?}")
        };
        f.reply(ticket_id).await
    }

    #[tokio::test]
    async fn each_mailbox_sends_through_its_own_relay_else_the_default() {
        let f = fixture();
        let own = Arc::new(Script::default());
        let sales = sales_reply(&f, 1).await;
        let support = f.reply(f.ticket(1).await).await;
        let relays = Relays::new(Some(f.relay.clone())).with_mailbox("sales", own.clone());
        let w = SendWorker::new(
            f.store.clone(),
            f.committer.clone(),
            relays,
            WorkerSettings::default(),
            Arc::new(Metrics::new()),
            f.clock.clone(),
        );
        assert_eq!(w.pass().await.unwrap().sent, 2);
        assert_eq!(f.state(sales).state, DeliveryState::Sent);
        assert_eq!(f.state(support).state, DeliveryState::Sent);
        let own_calls = own.calls.lock().unwrap().clone();
        let default_calls = f.relay.calls.lock().unwrap().clone();
        assert_eq!(own_calls.len(), 1);
        assert_eq!(own_calls[0].2 as u64, f.state(sales).size);
        assert_eq!(default_calls.len(), 1);
        assert_eq!(default_calls[0].2 as u64, f.state(support).size);

        // Only sales has a relay: support's mail stays queued as without any.
        let later_sales = sales_reply(&f, 2).await;
        let later_support = f.reply(f.ticket(2).await).await;
        let w = SendWorker::new(
            f.store.clone(),
            f.committer.clone(),
            Relays::new(None).with_mailbox("sales", own.clone()),
            WorkerSettings::default(),
            Arc::new(Metrics::new()),
            f.clock.clone(),
        );
        let report = w.pass().await.unwrap();
        assert_eq!((report.sent, report.deferred), (1, 1));
        assert_eq!(f.state(later_sales).state, DeliveryState::Sent);
        let e = f.state(later_support);
        assert_eq!(e.state, DeliveryState::Deferred);
        assert_eq!(e.last_error.as_deref(), Some("no relay configured"));
        assert_eq!(own.calls.lock().unwrap().len(), 2);
        assert_eq!(f.relay.calls.lock().unwrap().len(), 1);
    }
}
