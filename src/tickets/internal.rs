//! Mail from the organisation's own domains (`server.internal_domains`):
//! staff writing, not customers. It threads as an agent's message; when it
//! threads nowhere, the mailbox's `internal_unthreaded` decides, and a
//! ticket it opens is for the person the staff member wrote to, never for
//! the staff member (and is never acknowledged: see `notify`).

use crate::config::role::InternalUnthreaded;
use crate::mail::Person;

/// Whom a ticket opened by unthreaded internal mail is for, or why it is
/// a rejection (`internal_unthreaded`) instead: the detail.
pub fn unthreaded_requester(
    setting: InternalUnthreaded,
    counterpart: Option<&Person>,
) -> Result<Person, String> {
    match (setting, counterpart) {
        (InternalUnthreaded::Reject, _) => Err(
            "internal mail that continues no ticket (internal_unthreaded = \"reject\")".into(),
        ),
        (InternalUnthreaded::Ticket, Some(p)) => Ok(p.clone()),
        (InternalUnthreaded::Ticket, None) => Err(
            "internal mail that continues no ticket and names no recipient outside the internal domains to open one for"
                .into(),
        ),
    }
}
