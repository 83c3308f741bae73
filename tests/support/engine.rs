//! A sync-engine context over a fresh store, for the upstream tests that
//! drive a provider through the real engine (Graph, Gmail fakes).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{Quota, RateLimiter};

use mailgate::config::Config;
use mailgate::inbound::pull::engine::SyncContext;
use mailgate::ingest::Ingestor;
use mailgate::ingest::route::Router;
use mailgate::metrics::Metrics;
use mailgate::store::Store;
use mailgate::store::commit::Committer;
use mailgate::tickets::TicketSettings;

/// Mailbox `support` of domain example.test, a store in `dir`, messages
/// over `max` bytes oversize, no fetch-rate limit to speak of.
pub fn context(
    dir: &std::path::Path,
    max: u64,
    source: &'static str,
    origin_label: &str,
    account: &str,
) -> SyncContext {
    let config = Config::parse(
        "[server]\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\n",
    )
    .unwrap();
    let store = Store::open(&dir.join("db.redb")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let committer = Committer::start(
        &store,
        TicketSettings {
            tag: config.tickets.tag.clone(),
            first_number: 1,
            token: None,
            senders: Default::default(),
            composer: None,
            categories: Vec::new(),
            notify: None,
        },
        Arc::new(|_| {}),
    );
    SyncContext {
        mailbox: "support".into(),
        source,
        origin_label: origin_label.into(),
        account: account.into(),
        keeps_messages: false,
        max_message_size: max,
        ingestor: Ingestor::new(committer, Arc::new(Router::new(&config)), metrics.clone()),
        store,
        limiter: Arc::new(RateLimiter::direct(Quota::per_minute(
            NonZeroU32::new(10_000).unwrap(),
        ))),
        metrics,
    }
}
