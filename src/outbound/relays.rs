//! Which relay a message leaves through: the mailbox's own
//! (`[mailbox.relay]`, so an OAuth2 mailbox sends as itself) or else the
//! global `[relay]`. The send worker asks per outbox entry; `None` means no
//! relay at all for that mailbox, and its mail stays queued.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::transport::Transport;
use super::transport::gmail::GmailTransport;
use super::transport::graph::GraphTransport;
use super::transport::smtp::SmtpTransport;

/// Every mailbox's transport, and the default for the others.
#[derive(Clone, Default)]
pub struct Relays {
    default: Option<Arc<dyn Transport>>,
    own: BTreeMap<String, Arc<dyn Transport>>,
}

impl Relays {
    /// Every mailbox through `default` (none: nothing is sent).
    pub fn new(default: Option<Arc<dyn Transport>>) -> Relays {
        Relays {
            default,
            own: BTreeMap::new(),
        }
    }

    /// `mailbox` sends through `transport` instead of the default.
    pub fn with_mailbox(mut self, mailbox: &str, transport: Arc<dyn Transport>) -> Relays {
        self.own.insert(mailbox.to_string(), transport);
        self
    }

    /// The transport of `mailbox`: its own, else the default.
    pub fn for_mailbox(&self, mailbox: &str) -> Option<&Arc<dyn Transport>> {
        self.own.get(mailbox).or(self.default.as_ref())
    }

    /// Whether there is a default relay (`[relay]`).
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// No relay at all: nothing can be sent.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.own.is_empty()
    }
}

impl From<Option<Arc<dyn Transport>>> for Relays {
    fn from(default: Option<Arc<dyn Transport>>) -> Relays {
        Relays::new(default)
    }
}

/// A relay transport as built from a relay config, before it goes behind
/// `Arc<dyn Transport>`: `mailgate test-relay` probes it by kind.
pub enum RelayTransport {
    Smtp(SmtpTransport),
    Graph(GraphTransport),
    Gmail(GmailTransport),
}

impl RelayTransport {
    pub fn into_transport(self) -> Arc<dyn Transport> {
        match self {
            RelayTransport::Smtp(t) => Arc::new(t),
            RelayTransport::Graph(t) => Arc::new(t),
            RelayTransport::Gmail(t) => Arc::new(t),
        }
    }

    pub fn as_transport(&self) -> &dyn Transport {
        match self {
            RelayTransport::Smtp(t) => t,
            RelayTransport::Graph(t) => t,
            RelayTransport::Gmail(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::transport::{Delivery, Envelope, SendFuture};

    struct Named(&'static str);
    impl Transport for Named {
        fn send<'a>(&'a self, envelope: &'a Envelope, _: &'a [u8]) -> SendFuture<'a> {
            let accepted = envelope.recipients.clone();
            Box::pin(async move {
                Ok(Delivery {
                    reply: "250".into(),
                    accepted,
                    refused: vec![],
                })
            })
        }
        fn describe(&self) -> String {
            self.0.into()
        }
    }

    #[test]
    fn a_mailbox_uses_its_own_relay_else_the_default() {
        let r = Relays::new(Some(Arc::new(Named("global"))))
            .with_mailbox("sales", Arc::new(Named("sales")));
        assert_eq!(r.for_mailbox("sales").unwrap().describe(), "sales");
        assert_eq!(r.for_mailbox("support").unwrap().describe(), "global");
        let r = Relays::new(None).with_mailbox("sales", Arc::new(Named("sales")));
        assert!(r.for_mailbox("support").is_none());
        assert!(!r.is_empty() && !r.has_default());
        assert!(Relays::new(None).is_empty());
    }
}
