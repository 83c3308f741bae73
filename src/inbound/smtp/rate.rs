//! New connections per minute per client IP, with memory that stays bounded.
//!
//! governor's keyed limiter keeps one entry per key it has ever seen; fed by
//! the whole internet (and by IPv6, where an attacker has addresses to
//! spare) it would grow forever. This wrapper prunes it: entries whose state
//! is back to "fresh" are dropped (`retain_recent`) at least once per
//! [`PRUNE_EVERY`] of limiter time, checked on each connection so no timer
//! task is needed (the map only grows when connections arrive). It is also
//! bounded: reaching `max_tracked` entries forces a prune, and if more than
//! half of them are still live afterwards the whole state is dropped and
//! rebuilt — the rate limit then forgives everyone once, while the total
//! and per-IP connection caps still hold. Halving makes the O(n) prune
//! happen at most once per `max_tracked / 2` new addresses.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// How often, at most, stale entries are swept out.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Default bound on tracked client addresses (about 100 bytes each).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

type Limiter<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed "N per minute" limiter with pruning and a size bound.
pub struct IpRate<K = IpAddr, C: Clock = DefaultClock>
where
    K: Hash + Eq + Clone,
{
    limiter: RwLock<Limiter<K, C>>,
    quota: Quota,
    clock: C,
    max_tracked: usize,
    last_prune: Mutex<C::Instant>,
}

impl IpRate {
    /// `per_minute` new connections per key, burst the same.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DEFAULT_MAX_TRACKED, DefaultClock::default())
    }
}

impl<K, C> IpRate<K, C>
where
    K: Hash + Eq + Clone,
    C: Clock + Clone,
{
    pub fn with_clock(per_minute: u32, max_tracked: usize, clock: C) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        let now = clock.now();
        IpRate {
            limiter: RwLock::new(Self::fresh(quota, &clock)),
            quota,
            clock,
            max_tracked: max_tracked.max(2),
            last_prune: Mutex::new(now),
        }
    }

    fn fresh(quota: Quota, clock: &C) -> Limiter<K, C> {
        RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
    }

    /// Counts one connection from `key`; false when it is over the rate.
    pub fn check(&self, key: &K) -> bool {
        self.maybe_prune();
        let limiter = self.limiter.read().unwrap_or_else(PoisonError::into_inner);
        limiter.check_key(key).is_ok()
    }

    /// Keys currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn maybe_prune(&self) {
        let now = self.clock.now();
        let due = {
            let last = self
                .last_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Duration::from(now.duration_since(*last)) >= PRUNE_EVERY
        };
        if due || self.tracked() >= self.max_tracked {
            self.prune();
        }
    }

    /// Drops every entry that is indistinguishable from a fresh one, and the
    /// whole state when it is still over half the bound afterwards.
    pub fn prune(&self) {
        *self
            .last_prune
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.clock.now();
        let mut limiter = self.limiter.write().unwrap_or_else(PoisonError::into_inner);
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let live = limiter.len();
        if live > self.max_tracked / 2 {
            tracing::warn!(
                addresses = live,
                bound = self.max_tracked,
                "too many client addresses within the rate window; connection-rate state reset"
            );
            *limiter = Self::fresh(self.quota, &self.clock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn rate(per_minute: u32, max: usize) -> (IpRate<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (IpRate::with_clock(per_minute, max, clock.clone()), clock)
    }

    #[test]
    fn limits_per_key() {
        let (r, _) = rate(3, 100);
        assert!((0..3).all(|_| r.check(&1)));
        assert!(!r.check(&1));
        assert!(r.check(&2), "another key has its own budget");
    }

    #[test]
    fn prune_forgets_old_keys_and_keeps_recent_ones() {
        let (r, clock) = rate(60, 1000);
        for k in 0..50 {
            assert!(r.check(&k));
        }
        assert_eq!(r.tracked(), 50);
        // At 60/minute one connection puts a key's theoretical arrival time
        // a second ahead; two minutes later those 50 are as good as new.
        clock.advance(Duration::from_secs(120));
        assert!(r.check(&1000));
        for _ in 0..60 {
            assert!(r.check(&1001));
        }
        r.prune();
        // Only the two keys used just now keep state.
        assert_eq!(r.tracked(), 2);
        assert!(!r.check(&1001), "pruning must not forgive a limited key");
        for k in 0..50 {
            assert!(r.check(&k));
        }
    }

    #[test]
    fn pruning_happens_by_itself_once_a_minute() {
        let (r, clock) = rate(10, 1000);
        for k in 0..100 {
            r.check(&k);
        }
        assert_eq!(r.tracked(), 100);
        clock.advance(PRUNE_EVERY);
        r.check(&5000);
        assert_eq!(
            r.tracked(),
            1,
            "the stale keys went with the next connection"
        );
    }

    #[test]
    fn tracked_keys_stay_bounded() {
        let (r, _) = rate(10, 64);
        for k in 0..10_000 {
            r.check(&k);
            assert!(r.tracked() <= 64, "tracked {} after {k}", r.tracked());
        }
    }
}
