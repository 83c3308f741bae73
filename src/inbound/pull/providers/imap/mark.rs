//! After import, upstream: label (`\Seen` + keywords), move (flags first,
//! then MOVE, or COPY + `\Deleted` + EXPUNGE), or delete. Flags are set
//! before a move or expunge so that an interrupted one is found again and
//! finished by the next sync.

use super::names::quoted;
use super::{COMMAND_BUDGET, ImapUpstream, MOVE_PROCESSED_KEYWORD, MOVE_REJECTED_KEYWORD};
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
                let flags = match verdict {
                    Verdict::Processed => format!("\\Seen {processed}"),
                    Verdict::Rejected => format!("\\Seen {processed} {rejected}"),
                };
                self.store(uid, &flags).await?;
            }
            AfterImport::Move {
                processed,
                rejected,
            } => {
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
                self.store(uid, &flags).await?;
                if self.caps.moves {
                    let command = format!("UID MOVE {uid} {target_q}");
                    self.run(&command, COMMAND_BUDGET, &mut |_| {})
                        .await
                        .map_err(|e| e.into_fetch(&command))?;
                } else {
                    let command = format!("UID COPY {uid} {target_q}");
                    self.run(&command, COMMAND_BUDGET, &mut |_| {})
                        .await
                        .map_err(|e| e.into_fetch(&command))?;
                    self.store(uid, "\\Deleted").await?;
                    self.expunge_uid(uid).await?;
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

    async fn store(&mut self, uid: u32, flags: &str) -> Result<(), FetchError> {
        let command = format!("UID STORE {uid} +FLAGS.SILENT ({flags})");
        self.run(&command, COMMAND_BUDGET, &mut |_| {})
            .await
            .map_err(|e| e.into_fetch(&command))?;
        Ok(())
    }

    /// Expunges a message flagged \Deleted: now with UIDPLUS, else at finish.
    async fn expunge_uid(&mut self, uid: u32) -> Result<(), FetchError> {
        if self.caps.uidplus {
            let command = format!("UID EXPUNGE {uid}");
            self.run(&command, COMMAND_BUDGET, &mut |_| {})
                .await
                .map_err(|e| e.into_fetch(&command))?;
        } else {
            self.pending_expunge = true;
        }
        Ok(())
    }
}
