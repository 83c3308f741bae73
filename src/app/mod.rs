//! The application: one composition root ([`root::App`]) that builds store,
//! committer, ingest, workers, listeners and HTTP from a config, the
//! commands that use it, and the ordered, joinable shutdown.

pub mod commands;
pub mod hash_password;
pub mod log_output;
pub mod oauth_cli;
pub mod relay_test;
pub mod retention;
pub mod root;
pub mod rules_cli;
pub mod serve;
pub mod server_api;
pub mod shutdown;
pub mod submission;

pub use root::{App, Core, Front};
