//! Everything the gateway sends: the header policy ([`compose`]), send
//! limits per mailbox ([`limits`]); the outbox queue and the send worker
//! build on them; [`relays`] picks each mailbox's relay.

pub mod compose;
pub mod limits;
pub mod relays;
pub mod templates;
pub mod transport;
pub mod worker;
