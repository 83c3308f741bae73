//! Finding the copy an interrupted COPY fallback may have left behind.
//!
//! Without MOVE a move is COPY, then `\Deleted`, then EXPUNGE. When the
//! session dies after the COPY reached the server but before `\Deleted`
//! was set, only the target folder knows whether the copy exists. It is
//! looked for there: a message of the same RFC822.SIZE whose header block
//! is byte-identical to the source's (COPY copies the bytes; the header
//! block carries the Received lines, dates and Message-ID, so two distinct
//! messages do not share it). SEARCH narrows the candidates by size and,
//! when there is one, by the Message-ID; the header blocks decide.
//! Keywords are not relied on: a target may drop them on COPY.
//!
//! SEARCH only works on the selected mailbox, so the target is EXAMINEd
//! (read-only: nothing in it changes) and the configured folder is
//! SELECTed again afterwards, its UIDVALIDITY checked. Selecting another
//! mailbox does not expunge the one left (RFC 3501 6.3.1; only CLOSE does).

use async_imap::imap_proto::{AttributeValue, MessageSection, Response, SectionPath};

use super::names::{quoted, uid_set};
use super::{COMMAND_BUDGET, ImapUpstream};
use crate::inbound::pull::upstream::FetchError;

/// Header blocks compared per FETCH.
const CANDIDATES_PER_FETCH: usize = 50;

/// What the target folder holds of one message of the selected folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyState {
    /// A copy is already there: do not copy again.
    Present,
    /// No copy: COPY it.
    Absent,
    /// The source message itself is gone (expunged by another client).
    SourceGone,
}

impl ImapUpstream {
    /// Whether `target` (a quoted wire name) already holds a copy of the
    /// message `uid` of the selected folder. The selected folder is the
    /// same again afterwards, or the session is marked broken.
    pub(super) async fn find_copy(
        &mut self,
        uid: u32,
        target: &str,
    ) -> Result<CopyState, FetchError> {
        let Some((size, head)) = self
            .heads(&uid.to_string())
            .await?
            .pop()
            .map(|h| (h.1, h.2))
        else {
            return Ok(CopyState::SourceGone);
        };
        // SEARCH LARGER/SMALLER do not compare RFC822.SIZE everywhere:
        // Courier compares its stored file, with LF line ends, so a message
        // is smaller there by one byte per line. Bounded by half the size
        // (a message of empty lines) and the size itself; the fetched
        // RFC822.SIZE and header block below decide.
        let mut query = match size {
            0 => "SMALLER 1".to_string(),
            n => format!(
                "LARGER {} SMALLER {}",
                (n / 2).saturating_sub(1),
                n.saturating_add(1)
            ),
        };
        // Without a Message-ID the size alone narrows: how servers treat
        // `HEADER Message-ID ""` (presence) varies too much to rely on.
        if let Some(q) = message_id(&head).as_deref().and_then(quoted) {
            query.push_str(&format!(" HEADER Message-ID {q}"));
        }
        let (exists, changed) = (self.tally.exists, self.tally.changed);
        let found = self.look_in(target, &query, size, &head).await;
        let back = self.select_again().await;
        self.tally.changed = changed || self.tally.exists > exists;
        let found = found?;
        back?;
        tracing::debug!(host = %self.host, uid, target, ?found, "IMAP looked for an earlier copy");
        Ok(found)
    }

    async fn look_in(
        &mut self,
        target: &str,
        query: &str,
        size: u64,
        head: &[u8],
    ) -> Result<CopyState, FetchError> {
        let command = format!("EXAMINE {target}");
        self.run(&command, COMMAND_BUDGET, &mut |_| {})
            .await
            .map_err(|e| e.into_fetch(&command))?;
        let mut candidates = self.search(query).await?;
        // The copy, if any, is among the newest.
        candidates.reverse();
        for chunk in candidates.chunks(CANDIDATES_PER_FETCH) {
            let set = uid_set(&{
                let mut c = chunk.to_vec();
                c.sort_unstable();
                c
            });
            if self
                .heads(&set)
                .await?
                .iter()
                .any(|(_, s, h)| *s == size && h == head)
            {
                return Ok(CopyState::Present);
            }
        }
        Ok(CopyState::Absent)
    }

    /// The configured folder, selected again; refuses a new UIDVALIDITY.
    async fn select_again(&mut self) -> Result<(), FetchError> {
        let (folder, wire, validity) = (
            self.folder.clone(),
            self.folder_wire.clone(),
            self.uidvalidity,
        );
        let result = match self.select(&folder, &folder, &wire).await {
            Ok(()) if self.uidvalidity == validity => Ok(()),
            Ok(()) => Err(FetchError::Protocol(format!(
                "{folder:?} has a new UIDVALIDITY ({} instead of {validity}): the folder was recreated",
                self.uidvalidity
            ))),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Never go on in another mailbox than the listed one.
            self.conn.set_broken();
        }
        result
    }

    /// (UID, RFC822.SIZE, header block) of the messages of a UID set in
    /// the selected mailbox.
    async fn heads(&mut self, set: &str) -> Result<Vec<(u32, u64, Vec<u8>)>, FetchError> {
        let command = format!("UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER])");
        let mut found = Vec::new();
        self.run(&command, COMMAND_BUDGET, &mut |r| {
            let Response::Fetch(_, attrs) = r else {
                return;
            };
            let (mut uid, mut size, mut head) = (None, None, None);
            for a in attrs {
                match a {
                    AttributeValue::Uid(u) => uid = Some(*u),
                    AttributeValue::Rfc822Size(s) => size = Some(u64::from(*s)),
                    AttributeValue::BodySection {
                        section: Some(SectionPath::Full(MessageSection::Header)),
                        data: Some(bytes),
                        ..
                    } => head = Some(bytes.to_vec()),
                    _ => {}
                }
            }
            if let (Some(uid), Some(size), Some(head)) = (uid, size, head) {
                found.push((uid, size, head));
            }
        })
        .await
        .map_err(|e| e.into_fetch(&command))?;
        Ok(found)
    }
}

/// The Message-ID field of a header block (unfolded, trimmed), if any.
pub(super) fn message_id(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push_str(line);
                continue;
            }
            break;
        }
        if let Some((name, rest)) = line.split_once(':')
            && name.trim_end().eq_ignore_ascii_case("message-id")
        {
            value = Some(rest.to_string());
        }
    }
    let value = value?.trim().to_string();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod unit {
    use super::message_id;

    #[test]
    fn message_id_is_found_unfolded_and_trimmed() {
        let head = b"From: a@b\r\nMessage-Id:\r\n  <x@y>\r\nSubject: s\r\n\r\n";
        assert_eq!(message_id(head).as_deref(), Some("<x@y>"));
        assert_eq!(
            message_id(b"message-id: <1@x>\n\n").as_deref(),
            Some("<1@x>")
        );
        assert_eq!(message_id(b"From: a@b\r\nX-Message-ID: <z>\r\n\r\n"), None);
        assert_eq!(message_id(b"Message-ID:   \r\n\r\n"), None);
    }
}
