//! Where mail enters: the SMTP MX listener, the submission (relay)
//! endpoint and the upstream puller. Each acknowledges only after its
//! durable commit: the MX and the puller hand messages to `ingest`, the
//! submission endpoint queues them in the outbox.

pub mod mx;
pub mod pull;
pub mod smtp;
pub mod submission;
