//! TLS configurations: the server side of the SMTP listeners (configured PEM
//! files or a generated development certificate) and the client side used
//! towards upstream servers (system roots plus an optional extra CA).

pub mod client;
pub mod server;

pub use server::server_config;
