//! The SMTP MX endpoint: a thin tokio/rustls layer around the sans-IO
//! session in `proto::smtp`, and the connection budget all SMTP listeners
//! share.

pub mod budget;
pub mod listener;
pub mod rate;
