//! After import, upstream: label (`\Seen` + keywords), move, or delete,
//! each safe to repeat after a cut at any point (the engine marks a
//! committed message again when the next sync lists it).
//!
//! - Label: one `UID STORE +FLAGS`; repeating it changes nothing.
//! - Delete: `\Seen \Deleted`, then `UID EXPUNGE` (UIDPLUS) or an EXPUNGE
//!   at the end of the sync that only runs when nothing but ours is flagged
//!   (see `expunge`). A cut leaves it flagged: listed again as a leftover
//!   (`DELETED`), flagged again, expunged.
//! - Move with MOVE: flags (`\Seen` + `Mailgate` [+ `RejectedByMailgate`]),
//!   then `UID MOVE`, atomic on the server: either still in the folder
//!   (flagged, listed again as a leftover, moved) or moved.
//! - Move without MOVE: flags, `UID COPY`, `\Deleted`, expunge (as in
//!   delete). The flags mark the progress in the source folder: `\Seen`
//!   (always set first; move mode lists only unseen mail, so a listed
//!   message that is read was touched by us) means "a COPY may have
//!   happened"; `\Seen` + `\Deleted` means "the COPY is done" (`\Deleted`
//!   is only set after COPY's OK). Repeating the move therefore expunges a
//!   `\Seen \Deleted` message without copying it, and for a `\Seen` one
//!   first looks in the target for the copy a cut may have left (same size,
//!   byte-identical header block, see `recover`), copying only when there
//!   is none. A cut before COPY, after COPY's OK, after `\Deleted`, or after
//!   EXPUNGE was sent: the target ends with exactly one copy, the source
//!   with none. The flags come from list_new's FETCH (or are fetched).
//!   COPYUID (UIDPLUS) is not used: it cannot be recorded upstream before
//!   the cut it would guard against, and the lookup covers both cases.
//!
//! What remains: where the server refuses keywords, an interrupted move is
//! not listed again unless `\Deleted` was set (the message stays read in
//! the source folder, and is never copied twice); a message that another
//! client copies into the target folder byte for byte, before a cut move
//! of the same message is repeated, counts as our copy.

use super::names::{SIZE_CHUNK, quoted, uid_set_chunks};
use super::recover::CopyState;
use super::{COMMAND_BUDGET, ImapUpstream, MOVE_PROCESSED_KEYWORD, MOVE_REJECTED_KEYWORD, Touched};
use crate::inbound::pull::upstream::{FetchError, Verdict};
use crate::mail::AfterImport;

impl ImapUpstream {
    /// The configured after-import action for one message.
    pub(super) async fn apply_after_import(
        &mut self,
        uid: u32,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        match self.after.clone() {
            AfterImport::Label {
                processed,
                rejected,
            } => {
                let flags = label_flags(&processed, &rejected, verdict);
                self.store(uid, &flags).await?;
            }
            AfterImport::Move {
                processed,
                rejected,
            } => {
                let (target_q, flags) = self.move_plan(processed, rejected, verdict).await?;
                // Flagged \Seen \Deleted: copied by the fallback already
                // (a session without MOVE), only the expunge is left.
                let copied = self.copied_already(uid);
                if self.caps.moves && !copied {
                    self.store(uid, &flags).await?;
                    self.uid_move(&uid.to_string(), &target_q).await?;
                } else {
                    self.copy_and_expunge(uid, &flags, &target_q).await?;
                }
            }
            AfterImport::Delete => {
                self.store(uid, "\\Seen \\Deleted").await?;
                self.expunge_uid(uid).await?;
            }
            AfterImport::Keep => {
                return Err(FetchError::Unsupported {
                    what: "after_import = keep over IMAP".into(),
                });
            }
        }
        Ok(())
    }

    /// Flagged `\\Seen \\Deleted` as listed: the move fallback of an earlier
    /// session copied it, only the expunge is left.
    fn copied_already(&self, uid: u32) -> bool {
        matches!(self.listed.get(&uid), Some(t) if t.seen && t.deleted)
    }

    /// `UID MOVE <set> <target>` (RFC 6851).
    async fn uid_move(&mut self, set: &str, target_q: &str) -> Result<(), FetchError> {
        let command = format!("UID MOVE {set} {target_q}");
        self.run(&command, COMMAND_BUDGET, &mut |_| {})
            .await
            .map_err(|e| e.into_fetch(&command))?;
        Ok(())
    }

    /// Where a move goes (quoted for the wire) and the flags set before it.
    async fn move_plan(
        &mut self,
        processed: String,
        rejected: String,
        verdict: Verdict,
    ) -> Result<(String, String), FetchError> {
        let (folder, flags) = match verdict {
            Verdict::Processed => (processed, format!("\\Seen {MOVE_PROCESSED_KEYWORD}")),
            Verdict::Rejected => (
                rejected,
                format!("\\Seen {MOVE_PROCESSED_KEYWORD} {MOVE_REJECTED_KEYWORD}"),
            ),
        };
        let flags = if self.keywords_allowed {
            flags
        } else {
            "\\Seen".to_string()
        };
        let target = self.target(&folder).await?;
        let target_q = quoted(&target).ok_or_else(|| FetchError::Folder {
            folder: folder.clone(),
            detail: format!("server name {target:?} cannot be sent back"),
        })?;
        Ok((target_q, flags))
    }

    /// [`apply_after_import`](Self::apply_after_import) for several
    /// committed messages with one verdict, a command per step for all of
    /// them: label is one `UID STORE <set>`; move (server with MOVE) flags
    /// the set, then one `UID MOVE <set>`; delete flags the set `\Seen
    /// \Deleted`, then one `UID EXPUNGE <set>` (UIDPLUS) or the expunge at
    /// finish. A cut between or inside these steps leaves each message in
    /// one of the states the one-message form can leave it in (flagged and
    /// listed again as a leftover, moved, expunged), so repeating is as
    /// safe. The move fallback (no MOVE, or a copy already made) goes one
    /// message at a time.
    pub(super) async fn apply_after_import_many(
        &mut self,
        mut uids: Vec<u32>,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        uids.sort_unstable();
        uids.dedup();
        let batched = uids.len() > 1
            && match &self.after {
                AfterImport::Label { .. } | AfterImport::Delete => true,
                AfterImport::Move { .. } => self.caps.moves,
                AfterImport::Keep => false,
            };
        if !batched {
            for uid in uids {
                self.apply_after_import(uid, verdict).await?;
            }
            return Ok(());
        }
        match self.after.clone() {
            AfterImport::Label {
                processed,
                rejected,
            } => {
                let flags = label_flags(&processed, &rejected, verdict);
                for set in uid_set_chunks(&uids, SIZE_CHUNK) {
                    self.store_set(&set, &flags).await?;
                }
            }
            AfterImport::Move {
                processed,
                rejected,
            } => {
                // Copied by the fallback of an earlier session: only the
                // expunge is left, done one by one.
                let (copied, fresh): (Vec<u32>, Vec<u32>) =
                    uids.into_iter().partition(|&uid| self.copied_already(uid));
                for uid in copied {
                    self.apply_after_import(uid, verdict).await?;
                }
                if fresh.is_empty() {
                    return Ok(());
                }
                let (target_q, flags) = self.move_plan(processed, rejected, verdict).await?;
                for set in uid_set_chunks(&fresh, SIZE_CHUNK) {
                    self.store_set(&set, &flags).await?;
                    self.uid_move(&set, &target_q).await?;
                }
            }
            AfterImport::Delete => {
                for set in uid_set_chunks(&uids, SIZE_CHUNK) {
                    self.store_set(&set, "\\Seen \\Deleted").await?;
                    if self.caps.uidplus {
                        let command = format!("UID EXPUNGE {set}");
                        self.run(&command, COMMAND_BUDGET, &mut |_| {})
                            .await
                            .map_err(|e| e.into_fetch(&command))?;
                    }
                }
                if !self.caps.uidplus {
                    self.pending_expunge.extend(uids);
                }
            }
            AfterImport::Keep => {
                return Err(FetchError::Unsupported {
                    what: "after_import = keep over IMAP".into(),
                });
            }
        }
        Ok(())
    }

    /// The move fallback: flags, COPY (unless a copy is already there),
    /// `\Deleted`, expunge; each step skipped when the flags show it done.
    async fn copy_and_expunge(
        &mut self,
        uid: u32,
        flags: &str,
        target_q: &str,
    ) -> Result<(), FetchError> {
        let touched = match self.listed.get(&uid) {
            Some(t) => *t,
            None => self.touched(uid).await?,
        };
        if !(touched.seen && touched.deleted) {
            let copy = if touched.seen {
                self.find_copy(uid, target_q).await?
            } else {
                CopyState::Absent
            };
            match copy {
                CopyState::SourceGone => {
                    self.listed.remove(&uid);
                    return Ok(());
                }
                CopyState::Present => {
                    tracing::info!(host = %self.host, folder = %self.folder, uid, "an interrupted move had copied the message already: not copying it again");
                }
                CopyState::Absent => {
                    self.store(uid, flags).await?;
                    self.listed.insert(
                        uid,
                        Touched {
                            seen: true,
                            deleted: false,
                        },
                    );
                    let command = format!("UID COPY {uid} {target_q}");
                    self.run(&command, COMMAND_BUDGET, &mut |_| {})
                        .await
                        .map_err(|e| e.into_fetch(&command))?;
                }
            }
            self.store(uid, "\\Deleted").await?;
            self.listed.insert(
                uid,
                Touched {
                    seen: true,
                    deleted: true,
                },
            );
        }
        self.expunge_uid(uid).await
    }

    /// The flags of one message of the selected folder, asked for.
    async fn touched(&mut self, uid: u32) -> Result<Touched, FetchError> {
        use async_imap::imap_proto::{AttributeValue, Response};
        let command = format!("UID FETCH {uid} (UID FLAGS)");
        let mut found = Touched::default();
        self.run(&command, COMMAND_BUDGET, &mut |r| {
            if let Response::Fetch(_, attrs) = r
                && attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
            {
                for a in attrs {
                    if let AttributeValue::Flags(flags) = a {
                        found = Touched::of(flags);
                    }
                }
            }
        })
        .await
        .map_err(|e| e.into_fetch(&command))?;
        Ok(found)
    }

    async fn store(&mut self, uid: u32, flags: &str) -> Result<(), FetchError> {
        self.store_set(&uid.to_string(), flags).await
    }

    /// Adds flags to a UID set (`1:5,9`).
    async fn store_set(&mut self, set: &str, flags: &str) -> Result<(), FetchError> {
        let command = format!("UID STORE {set} +FLAGS.SILENT ({flags})");
        self.run(&command, COMMAND_BUDGET, &mut |_| {})
            .await
            .map_err(|e| e.into_fetch(&command))?;
        Ok(())
    }
}

/// The flags `after_import = "label"` sets for a verdict.
fn label_flags(processed: &str, rejected: &str, verdict: Verdict) -> String {
    match verdict {
        Verdict::Processed => format!("\\Seen {processed}"),
        Verdict::Rejected => format!("\\Seen {processed} {rejected}"),
    }
}
