//! The SMTP server side as a sans-IO core: addresses, commands, replies, the
//! DATA decoder and the session state machine.

pub mod address;
pub mod command;
pub mod data;
pub mod reply;
pub mod session;
