//! One connection budget for every SMTP listener.
//!
//! The caps protect the process, not a port: a client refused on the plain
//! port must not find room on the implicit-TLS one (or, later, on the
//! submission listener). So the total connection count, the per-client-IP
//! connection count and the per-IP connection rate live here once, built by
//! the composition root and shared (`Arc`) by all listeners. Like Postfix's
//! `smtpd_client_connection_count_limit` and anvil rate, a client over a
//! cap gets `421 4.7.0` and is disconnected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rate::IpRate;
use crate::config::SmtpConfig;

/// Refusals being answered at once; past that a refused connection is just
/// closed, so a flood of refused clients cannot cost unbounded tasks or
/// TLS handshakes.
const MAX_REFUSALS_IN_FLIGHT: usize = 32;

/// The caps, from `[smtp]`.
#[derive(Clone, Copy, Debug)]
pub struct BudgetLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_per_minute_per_ip: u32,
}

impl From<&SmtpConfig> for BudgetLimits {
    fn from(c: &SmtpConfig) -> Self {
        BudgetLimits {
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
            connections_per_minute_per_ip: c.connections_per_minute_per_ip,
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More new connections per minute from this IP than allowed.
    Rate,
    /// This IP already holds `max_connections_per_ip` connections.
    PerIp,
    /// All `max_connections` are in use.
    Total,
}

impl Refusal {
    /// The `outcome` label of `mailgate_smtp_connections_total`.
    pub fn outcome(self) -> &'static str {
        match self {
            Refusal::Rate => "refused_rate",
            Refusal::PerIp => "refused_per_ip",
            Refusal::Total => "refused_limit",
        }
    }

    /// The whole reply line sent before closing.
    pub fn reply(self) -> &'static str {
        match self {
            Refusal::Rate => {
                "421 4.7.0 Too many connections from your address, try again later\r\n"
            }
            Refusal::PerIp => {
                "421 4.7.0 Too many concurrent connections from your address, try again later\r\n"
            }
            Refusal::Total => "421 4.7.0 Too many connections, try again later\r\n",
        }
    }

    /// For the log line.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Rate => "connection rate per client address exceeded",
            Refusal::PerIp => "concurrent connections per client address exceeded",
            Refusal::Total => "connection limit reached",
        }
    }
}

/// Shared by all SMTP listeners; see the module docs.
pub struct ConnectionBudget {
    total: Arc<Semaphore>,
    max_per_ip: usize,
    /// Open connections per client address; an address leaves the map with
    /// its last connection, so it never holds more than `max_connections`.
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    rate: IpRate,
    refusals: Arc<Semaphore>,
}

/// A connection's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    _total: OwnedSemaphorePermit,
    _ip: IpSlot,
}

#[derive(Debug)]
struct IpSlot {
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl ConnectionBudget {
    pub fn new(limits: BudgetLimits) -> Self {
        ConnectionBudget {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            max_per_ip: limits.max_connections_per_ip,
            per_ip: Arc::default(),
            rate: IpRate::per_minute(limits.connections_per_minute_per_ip),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
        }
    }

    /// Admits a new connection from `ip`, or says which cap refuses it.
    /// Checked in order: rate (every attempt counts), per-IP, total.
    pub fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        // An IPv4 client on a dual-stack socket is the same client.
        let ip = ip.to_canonical();
        if !self.rate.check(&ip) {
            return Err(Refusal::Rate);
        }
        let slot = {
            let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *n += 1;
            IpSlot {
                ip,
                per_ip: self.per_ip.clone(),
            }
        };
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        Ok(Admission {
            _total: total,
            _ip: slot,
        })
    }

    /// Permission to spend time answering a refused connection; None when
    /// enough refusals are already being answered (then just close).
    pub fn refusal_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }

    /// Client addresses holding connections now.
    pub fn addresses_connected(&self) -> usize {
        self.per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: usize, per_ip: usize, rate: u32) -> ConnectionBudget {
        ConnectionBudget::new(BudgetLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            connections_per_minute_per_ip: rate,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_cap_leaves_other_addresses_alone() {
        let b = budget(10, 2, 1000);
        let a1 = b.admit(ip("192.0.2.1")).unwrap();
        let _a2 = b.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(b.admit(ip("192.0.2.1")).unwrap_err(), Refusal::PerIp);
        // The IPv4-mapped form is the same client.
        assert_eq!(b.admit(ip("::ffff:192.0.2.1")).unwrap_err(), Refusal::PerIp);
        let _other = b.admit(ip("192.0.2.2")).unwrap();
        drop(a1);
        let _again = b.admit(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn total_cap_and_release() {
        let b = budget(2, 5, 1000);
        let x = b.admit(ip("192.0.2.1")).unwrap();
        let _y = b.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(b.admit(ip("192.0.2.3")).unwrap_err(), Refusal::Total);
        // The refused attempt did not keep a per-IP slot.
        assert_eq!(b.addresses_connected(), 2);
        drop(x);
        assert_eq!(b.addresses_connected(), 1);
        let _z = b.admit(ip("192.0.2.3")).unwrap();
    }

    #[test]
    fn rate_counts_every_attempt() {
        let b = budget(10, 10, 3);
        for _ in 0..3 {
            drop(b.admit(ip("192.0.2.1")).unwrap());
        }
        assert_eq!(b.admit(ip("192.0.2.1")).unwrap_err(), Refusal::Rate);
        assert!(b.admit(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn refusal_replies_are_421_4_7_0_lines() {
        for r in [Refusal::Rate, Refusal::PerIp, Refusal::Total] {
            assert!(r.reply().starts_with("421 4.7.0 "));
            assert!(r.reply().ends_with("\r\n"));
            assert_eq!(r.reply().matches('\n').count(), 1);
        }
    }
}
