//! The ticket domain: the records kept (tickets, messages, rejections) and
//! the rules of committing mail to them (threading, dedup, numbering),
//! written once against a small transaction trait ([`txn::TicketTxn`]) that
//! each store backend implements.

pub mod apply;
pub mod bounce;
pub mod dedup;
pub mod importer;
pub mod internal;
pub mod mail_rules;
#[cfg(test)]
pub(crate) mod memory;
pub mod model;
pub mod notify;
pub mod outgoing;
pub mod render;
pub mod replay;
pub mod reply;
pub mod request;
mod rule_mail;
#[cfg(test)]
mod rule_mail_tests;
mod send;
#[cfg(test)]
mod staff_tests;
pub mod submit;
#[cfg(test)]
pub(crate) mod suite;
pub mod token;
pub mod trace;
pub mod txn;
pub mod update;

pub use apply::{apply, apply_op};
pub use request::{
    Attempt, CommitRequest, DeliveryOutcome, DeliveryUpdate, Item, Journaling, MailboxRef,
    OpOutcome, Operation, ReplayOutcome, ReplayRequest, ReplyOutcome, ReplyRequest, Sender,
    TicketSettings, TicketUpdate, UpdateOutcome,
};
pub use submit::{SubmitOutcome, SubmitRequest};
