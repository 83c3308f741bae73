//! What the MX does with a session: recipients decided by the router (relay
//! refused, unknown users per config), messages handed to ingest and
//! answered after the commit, oversize messages recorded as rejections.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;

use crate::inbound::smtp::server::{Handler, origin};
use crate::ingest::route::{RouteError, Router};
use crate::ingest::{Inbound, Ingestor, OversizeNotice, describe_outcomes};
use crate::metrics::Metrics;
use crate::proto::smtp::reply::Reply;
use crate::proto::smtp::session::{Envelope, OversizeInfo, RecipientPolicy};

pub struct MxHandler {
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    /// The cap the sessions enforce, recorded with oversize rejections.
    pub max_message_size: usize,
}

impl Handler for MxHandler {
    type Policy = MxPolicy;

    fn policy(&self, _peer: SocketAddr) -> MxPolicy {
        MxPolicy(self.ingestor.router().clone())
    }

    fn sessions_active(&self) -> &Gauge {
        &self.metrics.smtp_sessions_active
    }

    fn count_connection(&self, outcome: &str) {
        self.metrics.count_connection(outcome);
    }

    async fn message(&self, envelope: Envelope, data: Vec<u8>, peer: SocketAddr) -> Reply {
        let mailboxes = envelope
            .recipients
            .iter()
            .map(|r| r.mailbox.clone())
            .collect();
        let inbound = Inbound {
            origin: origin("smtp", &envelope, peer),
            raw: Bytes::from(data),
            return_path: Some(envelope.mail_from.clone()),
            mailboxes,
            upstream_key: None,
        };
        match self.ingestor.ingest(inbound).await {
            Ok(outcomes) => Reply::new(
                250,
                Some((2, 0, 0)),
                format!("Ok: {}", describe_outcomes(&outcomes)),
            ),
            Err(_) => Reply::new(
                451,
                Some((4, 3, 0)),
                "Temporary local problem storing the message, try again later",
            ),
        }
    }

    async fn oversize(&self, envelope: Envelope, info: OversizeInfo, peer: SocketAddr) {
        let notice = OversizeNotice {
            origin: origin("smtp", &envelope, peer),
            size: info.size as u64,
            head: info.head,
            mailboxes: envelope
                .recipients
                .iter()
                .map(|r| r.mailbox.clone())
                .collect(),
            limit: self.max_message_size,
            upstream_key: None,
        };
        // The client already has its 552; a failure here is only logged.
        if let Err(e) = self.ingestor.record_oversize(notice).await {
            tracing::error!(client = %peer, error = %e, "could not record an oversize rejection");
        }
    }
}

/// The router as the session's recipient policy.
pub struct MxPolicy(Arc<Router>);

impl RecipientPolicy for MxPolicy {
    fn check_recipient(&self, address: &str) -> Result<String, Reply> {
        match self.0.route(address) {
            Ok(mailbox) => Ok(mailbox.to_string()),
            Err(RouteError::NotServed) => Err(Reply::new(
                550,
                Some((5, 7, 1)),
                format!(
                    "<{address}>: relaying denied, this server does not accept mail for that domain"
                ),
            )),
            Err(RouteError::UnknownUser) => Err(Reply::new(
                550,
                Some((5, 1, 1)),
                format!("<{address}>: no such mailbox here"),
            )),
        }
    }
}
