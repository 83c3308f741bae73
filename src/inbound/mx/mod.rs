//! The SMTP MX endpoint: mail for the served domains, from anyone, handed
//! to ingest and answered only after the durable commit.

pub mod handler;
