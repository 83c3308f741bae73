//! Sans-IO protocol cores: pure code over bytes and state, no sockets, no
//! clock, fuzzed under `fuzz/`. The I/O layers in `inbound/` drive them.

pub mod pop3;
pub mod smtp;
#[cfg(test)]
pub(crate) mod testing;
