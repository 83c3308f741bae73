//! The composition root: builds store, committer, ingest, listeners,
//! workers and HTTP from a config, for `serve` and the foreground commands.

pub mod commands;
pub mod serve;
