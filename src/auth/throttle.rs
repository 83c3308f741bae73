//! The failed-AUTH throttle of the submission listener: each failure from a
//! client makes its next answer slower, and enough failures within a
//! window block the client for a while (`421 4.7.0`), so passwords cannot
//! be guessed at line speed. Pure: the caller passes the clock
//! ([`Instant`]) and holds the throttle behind a lock.
//!
//! A client is an IPv4 address, or an IPv6 /64 (one host usually owns a
//! whole /64, so counting single IPv6 addresses would not slow it down);
//! an IPv4 client seen as `::ffff:a.b.c.d` is `a.b.c.d`. Memory is bounded:
//! at most `max_clients` entries; when full, clients whose failures have
//! all aged out are dropped first, then those seen longest ago.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Entries kept by default (a few MB at most).
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;
/// The delay grows by the base delay per recent failure, up to this many times it.
pub use crate::config::submission::MAX_DELAY_STEPS;
/// Longest window and block honoured (longer ones are cut to this), so
/// that `now + block` cannot overflow.
pub const MAX_SPAN: Duration = Duration::from_secs(365 * 24 * 3600);

/// What to do after a failed AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureVerdict {
    /// Wait this long before answering.
    pub delay: Duration,
    /// This failure reached the limit: the client is blocked now (answer
    /// `421 4.7.0` and close).
    pub blocked: bool,
}

/// A client as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The upper 64 bits.
    V6Net(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug)]
struct Client {
    /// Failures within the window, oldest first; at most `limit` kept.
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    block: Duration,
    base_delay: Duration,
    max_clients: usize,
    clients: HashMap<ClientKey, Client>,
}

impl AuthThrottle {
    /// `limit` failures within `window` block a client for `block`; each
    /// failure is answered after `base_delay` times the client's failures
    /// within the window (this one included), at most [`MAX_DELAY_STEPS`]
    /// times it. A `limit` of 0 counts as 1; `window` and `block` are cut
    /// to [`MAX_SPAN`].
    pub fn new(
        limit: u32,
        window: Duration,
        block: Duration,
        base_delay: Duration,
    ) -> AuthThrottle {
        AuthThrottle::with_max_clients(limit, window, block, base_delay, DEFAULT_MAX_CLIENTS)
    }

    /// [`AuthThrottle::new`] keeping at most `max_clients` (at least 1) entries.
    pub fn with_max_clients(
        limit: u32,
        window: Duration,
        block: Duration,
        base_delay: Duration,
        max_clients: usize,
    ) -> AuthThrottle {
        AuthThrottle {
            limit: limit.max(1),
            window: window.min(MAX_SPAN),
            block: block.min(MAX_SPAN),
            base_delay,
            max_clients: max_clients.max(1),
            clients: HashMap::new(),
        }
    }

    /// `Some(remaining)` while `ip`'s client is blocked; `None`: it may try.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = ClientKey::from(ip);
        let client = self.clients.get_mut(&key)?;
        match client.blocked_until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                // The block is over: a fresh start.
                self.clients.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Records a failed AUTH from `ip` at `now`.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) -> FailureVerdict {
        let key = ClientKey::from(ip);
        if !self.clients.contains_key(&key) && self.clients.len() >= self.max_clients {
            self.make_room(now);
        }
        let (limit, window, block) = (self.limit, self.window, self.block);
        let client = self.clients.entry(key).or_insert_with(|| Client {
            failures: VecDeque::new(),
            blocked_until: None,
            last_seen: now,
        });
        client.last_seen = now;
        if let Some(until) = client.blocked_until {
            if until > now {
                return FailureVerdict {
                    delay: self.base_delay.saturating_mul(MAX_DELAY_STEPS),
                    blocked: true,
                };
            }
            client.blocked_until = None;
            client.failures.clear();
        }
        while client
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            client.failures.pop_front();
        }
        client.failures.push_back(now);
        let recent = u32::try_from(client.failures.len()).unwrap_or(u32::MAX);
        let delay = self.base_delay.saturating_mul(recent.min(MAX_DELAY_STEPS));
        let blocked = recent >= limit;
        if blocked {
            client.blocked_until = Some(now + block);
            client.failures.clear();
        }
        FailureVerdict { delay, blocked }
    }

    /// A successful AUTH from `ip`: its client's failures are forgotten.
    pub fn success(&mut self, ip: IpAddr) {
        self.clients.remove(&ClientKey::from(ip));
    }

    /// Clients currently remembered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Called when full: drops clients with nothing left to remember, then,
    /// when that freed less than a tenth, more down to nine tenths (so the
    /// next sweep is at least a tenth of inserts away): unblocked clients
    /// before blocked ones, each longest unseen first, so a flood of new
    /// addresses does not lift a block early while it can be helped.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.clients.retain(|_, c| {
            let blocked = c.blocked_until.is_some_and(|until| until > now);
            let recent = c
                .failures
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < window);
            blocked || recent
        });
        let target = self.max_clients - self.max_clients / 10;
        let target = target.min(self.max_clients - 1);
        if self.clients.len() <= target {
            return;
        }
        let mut seen: Vec<(bool, Instant, ClientKey)> = (self.clients.iter())
            .map(|(k, c)| (c.blocked_until.is_some(), c.last_seen, *k))
            .collect();
        let excess = seen.len() - target;
        seen.select_nth_unstable(excess - 1);
        for (_, _, key) in &seen[..excess] {
            self.clients.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn throttle() -> AuthThrottle {
        AuthThrottle::new(5, 600 * S, 900 * S, S)
    }

    #[test]
    fn the_delay_grows_then_the_client_is_blocked_until_the_block_ends() {
        let mut t = throttle();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(t.check(a, t0), None);
        let delays: Vec<FailureVerdict> = (0..5).map(|i| t.failure(a, t0 + i * S)).collect();
        assert_eq!(
            delays.iter().map(|v| v.delay.as_secs()).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(delays[..4].iter().all(|v| !v.blocked));
        assert!(delays[4].blocked, "the fifth failure in the window blocks");
        let at = t0 + 4 * S;
        assert_eq!(t.check(a, at), Some(900 * S));
        assert_eq!(t.check(a, at + 899 * S), Some(S));
        assert_eq!(
            t.check(ip("192.0.2.2"), at),
            None,
            "another client is not blocked"
        );
        // Over: a fresh start, the delay is the base again.
        assert_eq!(t.check(a, at + 900 * S), None);
        let v = t.failure(a, at + 901 * S);
        assert_eq!((v.delay, v.blocked), (S, false));
    }

    #[test]
    fn the_delay_is_capped_and_old_failures_age_out() {
        let mut t = AuthThrottle::new(100, 60 * S, 60 * S, S);
        let a = ip("198.51.100.9");
        let t0 = Instant::now();
        let mut last = FailureVerdict {
            delay: Duration::ZERO,
            blocked: false,
        };
        for i in 0..10 {
            last = t.failure(a, t0 + i * S);
        }
        assert_eq!(last.delay, MAX_DELAY_STEPS * S);
        // A minute after the last one they are all out of the window.
        let v = t.failure(a, t0 + 69 * S);
        assert_eq!(v.delay, S);
        // Four failures spread wider than the window never block at a limit of 2.
        let mut t = AuthThrottle::new(2, 10 * S, 60 * S, S);
        for i in 0..4 {
            assert!(!t.failure(a, t0 + i * 11 * S).blocked);
        }
        assert!(t.failure(a, t0 + 34 * S).blocked);
    }

    #[test]
    fn success_clears() {
        let mut t = throttle();
        let a = ip("203.0.113.5");
        let t0 = Instant::now();
        for i in 0..4 {
            t.failure(a, t0 + i * S);
        }
        t.success(a);
        assert!(t.is_empty());
        let v = t.failure(a, t0 + 5 * S);
        assert_eq!((v.delay, v.blocked), (S, false));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let mut t = AuthThrottle::new(2, 600 * S, 900 * S, S);
        let t0 = Instant::now();
        t.failure(ip("2001:db8:1:2::1"), t0);
        let v = t.failure(ip("2001:db8:1:2:ffff::9"), t0);
        assert!(v.blocked, "the same /64");
        assert!(t.check(ip("2001:db8:1:2::77"), t0).is_some());
        assert_eq!(t.check(ip("2001:db8:1:3::1"), t0), None, "another /64");
        // IPv4 per address, also when seen mapped into IPv6.
        t.failure(ip("192.0.2.1"), t0);
        assert!(t.failure(ip("::ffff:192.0.2.1"), t0).blocked);
        assert_eq!(t.check(ip("192.0.2.2"), t0), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_absurd_block_does_not_overflow_the_clock() {
        let mut t = AuthThrottle::new(1, Duration::MAX, Duration::MAX, Duration::MAX);
        let t0 = Instant::now();
        let v = t.failure(ip("192.0.2.1"), t0);
        assert!(v.blocked && v.delay == Duration::MAX);
        assert_eq!(t.check(ip("192.0.2.1"), t0), Some(MAX_SPAN));
    }

    #[test]
    fn memory_is_bounded() {
        let max = 1000;
        let mut t = AuthThrottle::with_max_clients(3, 60 * S, 600 * S, S, max);
        let t0 = Instant::now();
        let blocked = ip("10.255.255.255");
        t.failure(blocked, t0);
        t.failure(blocked, t0);
        assert!(t.failure(blocked, t0).blocked);
        // Old failures from many clients, all aged out by the time of the flood.
        for i in 0..(max as u32 - 1) {
            t.failure(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t0);
        }
        assert_eq!(t.len(), max);
        let later = t0 + 120 * S;
        for i in 0..(5 * max as u32) {
            let v6 = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64));
            t.failure(IpAddr::V6(v6), later + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= max);
        }
        // The blocked client was kept: the aged-out ones went first, then
        // unblocked ones...
        assert!(t.check(blocked, later).is_some());
        // ...and the newest clients are remembered.
        let newest = std::net::Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (u128::from(5 * max as u32 - 1) << 64),
        );
        let v = t.failure(IpAddr::V6(newest), later + 10 * S);
        assert_eq!(v.delay, 2 * S);
    }
}
