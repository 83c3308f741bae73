//! What every SMTP listener shares: the thin tokio/rustls layer around the
//! sans-IO session in `proto::smtp` ([`server`]), the connection budget and
//! the per-IP connection rate, and the spool for large messages. The MX and the submission endpoint differ
//! only in their [`server::Handler`]: who may send to whom, and where an
//! accepted message goes.

pub mod budget;
pub mod rate;
pub mod server;
pub mod spool;
