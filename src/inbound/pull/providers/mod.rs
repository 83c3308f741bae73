//! One module per upstream protocol, each implementing
//! [`super::upstream::Upstream`].

pub mod gmail;
pub mod graph;
pub mod imap;
pub mod pop3;
