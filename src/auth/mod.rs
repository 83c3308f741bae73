//! Credentials the gateway uses towards upstream servers: where passwords
//! come from (environment, file, prompt), never the config, and the
//! [`Credential`](crate::mail::Credential) a mailbox logs in with, and the
//! outbound relay's password ([`relay`]).

pub mod credential;
pub mod password;
pub mod private_fs;
pub mod relay;
pub mod token_key;
