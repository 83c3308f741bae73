//! `[store]`: how much memory the embedded database may keep for itself.
//!
//! redb keeps recently read and written pages in its own cache; left at
//! redb's default (1 GiB) the gateway's resident memory grows toward that as
//! the store fills, so the cache is bounded here, with a small default.

use serde::Deserialize;

use super::{Quantity, size};

/// The default `store.cache_size`: 32 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes of redb page cache (read cache and write buffer together).
    pub cache_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawStore {
    cache_size: Quantity,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            cache_size: Quantity::Text("32MiB".into()),
        }
    }
}

pub(super) fn validate(raw: &RawStore, err: &mut impl FnMut(&str, String)) -> StoreConfig {
    StoreConfig {
        cache_size: size("store.cache_size", &raw.cache_size, err),
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
