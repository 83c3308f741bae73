//! Pulling mail from upstream mailboxes into ingest: the scheduler runs one
//! worker per mailbox, the engine (list -> fetch -> commit -> mark) is
//! written once against the [`upstream::Upstream`] trait, and each protocol
//! lives under `providers/`.

pub mod connect;
pub mod engine;
pub mod providers;
pub mod scheduler;
pub mod upstream;
