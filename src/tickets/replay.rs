//! Replaying a rejection: its kept raw bytes, run through ingest again (for
//! instance after an admin fixed a rule), become whatever the current
//! pipeline makes of them, and the rejection records the link. Decided in
//! the commit transaction, so a rejection is replayed once: a second (or
//! concurrent) replay answers the first result and changes nothing.

use super::apply::apply_items;
use super::model::{Earlier, Outcome, ReplayResult, Replayed};
use super::request::{ReplayOutcome, ReplayRequest, TicketSettings};
use super::txn::TicketTxn;

pub fn replay<T: TicketTxn>(
    txn: &mut T,
    settings: &TicketSettings,
    r: &ReplayRequest,
) -> Result<ReplayOutcome, T::Error> {
    let Some(mut rejection) = txn.rejection(r.rejection_id)? else {
        return Ok(ReplayOutcome::NotFound);
    };
    if let Some(replayed) = &rejection.replayed {
        return Ok(ReplayOutcome::Done {
            replayed: replayed.clone(),
            first: None,
        });
    }
    if !rejection.raw_available {
        return Ok(ReplayOutcome::NoRaw);
    }
    let outcomes = apply_items(txn, settings, &r.request, Some(rejection.id))?;
    let Some(first) = outcomes.into_iter().next() else {
        return Ok(ReplayOutcome::NoMailbox);
    };
    let outcome = match &first {
        Outcome::Stored {
            message_id,
            ticket_id,
            ..
        } => ReplayResult::Message {
            message_id: *message_id,
            ticket_id: *ticket_id,
        },
        Outcome::Rejected {
            rejection_id,
            reason,
        } => ReplayResult::Rejection {
            rejection_id: *rejection_id,
            reason: *reason,
        },
        Outcome::Duplicate(e) => ReplayResult::Duplicate { of: e.encode() },
    };
    let replayed = Replayed {
        at: r.at.clone(),
        as_ticket: r.as_ticket,
        outcome,
    };
    rejection.replayed = Some(replayed.clone());
    txn.update_rejection(&rejection)?;
    Ok(ReplayOutcome::Done {
        replayed,
        first: Some(first),
    })
}

/// Retention: removes rejections received before `cutoff` (at most `max`
/// in one transaction), with their raw bytes, index rows and the dedup
/// entry that still points at them (the same mail arriving again is then
/// judged anew, not answered "duplicate" of a record that is gone).
pub fn prune<T: TicketTxn>(
    txn: &mut T,
    cutoff: time::OffsetDateTime,
    max: usize,
) -> Result<u64, T::Error> {
    let ids = txn.old_rejections(cutoff, max)?;
    for &id in &ids {
        if let Some(r) = txn.rejection(id)?
            && let Some(key) = r.trace.dedup.as_ref().and_then(|d| d.key.as_deref())
        {
            let scope = r.mailbox.as_deref().unwrap_or("");
            if txn
                .dedup(scope, key)?
                .is_some_and(|e| e.earlier == Earlier::Rejection(id))
            {
                txn.delete_dedup(scope, key)?;
            }
        }
        txn.delete_rejection(id)?;
    }
    Ok(ids.len() as u64)
}
