//! SMTP: a sans-IO session state machine plus a thin tokio listener.

pub mod address;
pub mod command;
pub mod data;
pub mod listener;
pub mod reply;
pub mod session;
