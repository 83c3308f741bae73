//! `[store]`: how much memory the embedded database may keep for itself,
//! and how incoming mail is made durable.
//!
//! redb keeps recently read and written pages in its own cache; left at
//! redb's default (1 GiB) the gateway's resident memory grows toward that as
//! the store fills, so the cache is bounded here, with a small default.
//! The commit journal (`store::journal`) makes small incoming messages
//! durable with one short append; `checkpoint_interval` bounds how long
//! they live in the journal alone (what is replayed after a crash).

use std::time::Duration;

use serde::Deserialize;

use super::{Quantity, duration, size};

/// The default `store.cache_size`: 32 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes of redb page cache (read cache and write buffer together).
    pub cache_size: usize,
    /// Journal small incoming messages instead of a durable store commit each.
    pub journal: bool,
    /// Longest a journaled message waits for its durable store commit.
    pub checkpoint_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_size: DEFAULT_CACHE_SIZE,
            journal: true,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawStore {
    cache_size: Quantity,
    journal: bool,
    checkpoint_interval: Quantity,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            cache_size: Quantity::Text("32MiB".into()),
            journal: true,
            checkpoint_interval: Quantity::Text("1s".into()),
        }
    }
}

pub(super) fn validate(raw: &RawStore, err: &mut impl FnMut(&str, String)) -> StoreConfig {
    StoreConfig {
        cache_size: size("store.cache_size", &raw.cache_size, err),
        journal: raw.journal,
        checkpoint_interval: duration("store.checkpoint_interval", &raw.checkpoint_interval, err),
    }
}

#[cfg(test)]
mod tests {
    use super::DEFAULT_CACHE_SIZE;
    use crate::config::Config;

    const BASE: &str =
        "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n";

    #[test]
    fn cache_size_has_a_small_default_and_takes_units() {
        assert_eq!(
            Config::parse(BASE).unwrap().store.cache_size,
            DEFAULT_CACHE_SIZE
        );
        assert_eq!(DEFAULT_CACHE_SIZE, 32 * 1024 * 1024);
        let c = Config::parse(&format!("{BASE}[store]\ncache_size = \"8MiB\"\n")).unwrap();
        assert_eq!(c.store.cache_size, 8 * 1024 * 1024);
        let c = Config::parse(&format!("{BASE}[store]\ncache_size = 4194304\n")).unwrap();
        assert_eq!(c.store.cache_size, 4 * 1024 * 1024);
        // The embedded default says what the code does.
        let embedded = Config::parse(crate::config::EMBEDDED_DEFAULT).unwrap();
        assert_eq!(embedded.store.cache_size, DEFAULT_CACHE_SIZE);
    }

    #[test]
    fn the_journal_is_on_with_a_one_second_checkpoint_unless_configured() {
        let c = Config::parse(BASE).unwrap();
        assert!(c.store.journal);
        assert_eq!(
            c.store.checkpoint_interval,
            std::time::Duration::from_secs(1)
        );
        let embedded = Config::parse(crate::config::EMBEDDED_DEFAULT).unwrap();
        assert_eq!(embedded.store, c.store);
        let c = Config::parse(&format!(
            "{BASE}[store]\njournal = false\ncheckpoint_interval = \"250ms\"\n"
        ))
        .unwrap();
        assert!(!c.store.journal);
        assert_eq!(c.store.checkpoint_interval.as_millis(), 250);
        for bad in ["0", "\"soon\""] {
            let problems = Config::parse(&format!("{BASE}[store]\ncheckpoint_interval = {bad}\n"))
                .unwrap_err()
                .problems();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("store.checkpoint_interval")),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_bad_cache_size_names_the_key() {
        for bad in ["\"lots\"", "0", "\"12B\""] {
            let problems = Config::parse(&format!("{BASE}[store]\ncache_size = {bad}\n"))
                .unwrap_err()
                .problems();
            assert!(
                problems.iter().any(|p| p.starts_with("store.cache_size")),
                "{bad}: {problems:?}"
            );
        }
    }
}
