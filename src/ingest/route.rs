//! Recipient address -> mailbox, from the config: the gateway's answer to
//! "do we take mail for this address?" (no open relay).

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use crate::config::Config;
use crate::config::role::MailboxRole;
use crate::tickets::MailboxRef;
use crate::tickets::importer::Importer;
use crate::tickets::trace::Routing;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The domain is not one we serve: relaying denied.
    NotServed,
    /// A served domain, but no mailbox has the address and there is no default.
    UnknownUser,
}

#[derive(Debug, Clone)]
pub struct Router {
    domains: HashSet<String>,
    by_address: HashMap<String, String>,
    mailboxes: HashMap<String, MailboxRef>,
    default: Option<String>,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let mut by_address = HashMap::new();
        let mut mailboxes = HashMap::new();
        for m in &config.mailboxes {
            for a in &m.addresses {
                by_address.insert(a.clone(), m.name.clone());
            }
            mailboxes.insert(
                m.name.clone(),
                MailboxRef {
                    name: m.name.clone(),
                    queue: m.queue.clone(),
                    internal_unthreaded: m.internal_unthreaded,
                    importer: importer(config, &m.role),
                },
            );
        }
        Router {
            domains: config.server.domains.iter().cloned().collect(),
            by_address,
            mailboxes,
            default: config.default_mailbox().map(|m| m.name.clone()),
        }
    }

    /// The mailbox name for a recipient address.
    pub fn route(&self, address: &str) -> Result<&str, RouteError> {
        let address = address.trim().to_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            // RFC 5321 4.5.1: the bare "postmaster" must be accepted.
            if address == "postmaster" {
                return self.default.as_deref().ok_or(RouteError::UnknownUser);
            }
            return Err(RouteError::NotServed);
        };
        if local.is_empty() || !self.domains.contains(domain.trim_end_matches('.')) {
            return Err(RouteError::NotServed);
        }
        let address = format!("{local}@{}", domain.trim_end_matches('.'));
        match self.by_address.get(&address) {
            Some(name) => Ok(name),
            None => self.default.as_deref().ok_or(RouteError::UnknownUser),
        }
    }

    /// How mail reached `mailbox`, for the decision trace: the first
    /// envelope recipient routed there, and whether only the default took
    /// it. Pulled mail (not `smtp`) is routed by its upstream: no address.
    pub fn routing(&self, mailbox: &str, rcpt_to: &[String], source: &str) -> Routing {
        let address = (source == "smtp")
            .then(|| {
                rcpt_to
                    .iter()
                    .find(|a| self.route(a).is_ok_and(|m| m == mailbox))
            })
            .flatten();
        Routing {
            address: address.cloned(),
            mailbox: mailbox.to_string(),
            default_used: address.is_some_and(|a| {
                let a = a.trim().to_lowercase();
                let a = a.trim_end_matches('.');
                !self.by_address.contains_key(a)
            }),
        }
    }

    pub fn mailbox(&self, name: &str) -> Option<&MailboxRef> {
        self.mailboxes.get(name)
    }

    /// Is this (lower-cased) address one of our mailboxes' own?
    pub fn is_own_address(&self, address: &str) -> bool {
        self.by_address.contains_key(address)
    }
}

/// Where a `role = "importer"` mailbox files mail (None for a helpdesk one).
fn importer(config: &Config, role: &MailboxRole) -> Option<Arc<Importer>> {
    let MailboxRole::Importer(imp) = role else {
        return None;
    };
    let queue = (config.mailboxes.iter())
        .find(|t| t.name == imp.into)
        .map_or_else(|| imp.into.clone(), |t| t.queue.clone());
    Some(Arc::new(Importer {
        into: imp.into.clone(),
        queue,
        ticket_number_pattern: imp.ticket_number_pattern.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(default: bool) -> Router {
        let text = format!(
            "[server]\ndomains=[\"example.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\ndefault={default}\n[[mailbox]]\nname=\"sales\"\naddresses=[\"sales@example.test\"]\n"
        );
        Router::new(&Config::parse(&text).unwrap())
    }

    #[test]
    fn routes_known_unknown_and_foreign() {
        let r = router(true);
        assert_eq!(r.route("Sales@Example.TEST"), Ok("sales"));
        assert_eq!(r.route("whoever@example.test"), Ok("support"));
        assert_eq!(r.route("x@other.test"), Err(RouteError::NotServed));
        assert_eq!(r.route("postmaster"), Ok("support"));
        let r = router(false);
        assert_eq!(
            r.route("whoever@example.test"),
            Err(RouteError::UnknownUser)
        );
        assert!(r.is_own_address("sales@example.test"));
    }

    #[test]
    fn routing_names_the_address_and_whether_the_default_took_it() {
        let r = router(true);
        let rcpts = vec![
            "Sales@example.test".to_string(),
            "who@example.test".to_string(),
        ];
        let sales = r.routing("sales", &rcpts, "smtp");
        assert_eq!(sales.address.as_deref(), Some("Sales@example.test"));
        assert!(!sales.default_used);
        let support = r.routing("support", &rcpts, "smtp");
        assert_eq!(support.address.as_deref(), Some("who@example.test"));
        assert!(support.default_used);
        // Pulled mail: its upstream is the route.
        let pulled = r.routing("support", &rcpts, "imap");
        assert_eq!((pulled.address, pulled.default_used), (None, false));
    }
}
