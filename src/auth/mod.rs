//! Credentials the gateway uses towards upstream servers: where passwords
//! come from (environment, file, prompt), never the config.

pub mod password;
