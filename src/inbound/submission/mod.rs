//! The submission (relay) endpoint for the organisation's own systems.

pub mod handler;
