//! The SMTP MX endpoint: a thin tokio/rustls layer around the sans-IO
//! session in `proto::smtp`.

pub mod listener;
