//! Credentials the gateway uses towards upstream servers: where passwords
//! come from (environment, file, prompt), never the config, and the
//! [`Credential`](crate::mail::Credential) a mailbox logs in with, and the
//! outbound relay's password ([`relay`]); and the other way round, the
//! accounts internal systems log in with on the submission listener
//! ([`submission`]) and the failed-login throttle in front of them
//! ([`throttle`]).

pub mod credential;
pub mod password;
pub mod private_fs;
pub mod relay;
pub mod submission;
pub mod throttle;
pub mod token_key;
