//! Where mail enters: the SMTP MX listener and the upstream puller. Both
//! hand messages to `ingest` and acknowledge only after its durable commit.

pub mod mx;
pub mod pull;
