//! Expunging only our own messages.
//!
//! With UIDPLUS, `UID EXPUNGE <uid>` removes exactly the message we
//! flagged. Without it, the only way is a folder-wide EXPUNGE, which also
//! removes every message another client flagged `\Deleted` (a mail client
//! in "mark as deleted" mode): it runs at the end of a sync only when
//! `UID SEARCH DELETED` finds nothing but ours. Otherwise ours stay
//! flagged `\Seen \Deleted`: the next sync lists them again as leftovers,
//! finds them committed, flags them again (nothing is imported twice) and
//! tries once more. What remains: a message another client flags between
//! our SEARCH and our EXPUNGE goes with ours; IMAP without UIDPLUS offers
//! no way to close that gap.

use super::{COMMAND_BUDGET, ImapUpstream};
use crate::inbound::pull::upstream::FetchError;

impl ImapUpstream {
    /// Expunges a message we flagged \Deleted: now with UIDPLUS, else at finish.
    pub(super) async fn expunge_uid(&mut self, uid: u32) -> Result<(), FetchError> {
        if self.caps.uidplus {
            let command = format!("UID EXPUNGE {uid}");
            self.run(&command, COMMAND_BUDGET, &mut |_| {})
                .await
                .map_err(|e| e.into_fetch(&command))?;
        } else {
            self.pending_expunge.insert(uid);
        }
        Ok(())
    }

    /// Without UIDPLUS, at the end of a sync: EXPUNGE when every message
    /// flagged \Deleted in the folder is one we flagged, else leave ours.
    pub(super) async fn expunge_pending(&mut self) -> Result<(), FetchError> {
        if self.pending_expunge.is_empty() {
            return Ok(());
        }
        let deleted = self.search("DELETED").await?;
        let foreign = deleted
            .iter()
            .filter(|uid| !self.pending_expunge.contains(uid))
            .count();
        if foreign > 0 {
            tracing::info!(
                host = %self.host,
                folder = %self.folder,
                ours = self.pending_expunge.len(),
                foreign,
                "not expunging: other messages are flagged \\Deleted by another client and the server has no UIDPLUS (UID EXPUNGE); ours stay flagged \\Deleted until a later sync can expunge them alone"
            );
            self.pending_expunge.clear();
            return Ok(());
        }
        self.run("EXPUNGE", COMMAND_BUDGET, &mut |_| {})
            .await
            .map_err(|e| e.into_fetch("EXPUNGE"))?;
        self.pending_expunge.clear();
        Ok(())
    }
}
