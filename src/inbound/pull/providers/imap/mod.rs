//! IMAP upstream: the [`Upstream`] of an IMAP(S) mailbox.
//!
//! Only the configured folder is read (never its subfolders), only unread
//! messages without our keywords are listed, downloads use `BODY.PEEK` so
//! nothing changes upstream before [`Upstream::mark`], and every network
//! step is bounded by the configured timeouts and the message size cap.
//!
//! One concept per file: `login` opens the session (TCP, TLS/STARTTLS,
//! greeting, credential), `command` is one command exchange, `open`
//! selects the folder, `folder` finds mailboxes (LIST, separators, move
//! targets), `idle` waits for new mail, `mark` labels, moves or deletes,
//! `recover` finds the copy an interrupted COPY fallback may have left,
//! `expunge` expunges only our own messages, and `upstream` is the
//! [`Upstream`] impl gluing them together.
//! async-imap only parses responses; every line is written by `command`.

mod command;
mod expunge;
mod folder;
mod idle;
mod login;
mod mark;
mod names;
mod open;
mod recover;
mod transport;
mod upstream;
mod xoauth2;

use std::collections::{BTreeSet, HashMap};

use async_imap::imap_proto::{MailboxDatum, Response};

use crate::inbound::pull::upstream::ConnectSettings;
#[cfg(doc)]
use crate::inbound::pull::upstream::Upstream;
use crate::mail::AfterImport;
use command::{CmdError, Conn, Done, OnUntagged};

/// Keyword set together with `\Seen` before a move (processed), so that the
/// moved message shows it was imported. Only where the server allows keywords.
pub const MOVE_PROCESSED_KEYWORD: &str = "Mailgate";
/// Keyword added, besides [`MOVE_PROCESSED_KEYWORD`], before moving a rejected message.
pub const MOVE_REJECTED_KEYWORD: &str = "RejectedByMailgate";

/// Bytes allowed on top of `max_message_size` for one message download.
const SIZE_SLACK: u64 = 64 * 1024;
/// Byte budget of commands other than downloads (SEARCH of a huge folder...).
const COMMAND_BUDGET: u64 = 64 * 1024 * 1024;

/// Everything needed to open one IMAP mailbox.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub connect: ConnectSettings,
    /// As configured: `INBOX`, `INBOX.support` or `INBOX/support`.
    pub folder: String,
    /// Label, Move or Delete (Keep is POP3 only).
    pub after: AfterImport,
    /// Never download more than this (+ 64 KiB) per message.
    pub max_message_size: u64,
}

/// Capabilities announced after login.
#[derive(Debug, Clone, Default)]
struct Caps {
    all: Vec<String>,
    idle: bool,
    moves: bool,
    uidplus: bool,
}

impl Caps {
    fn new(all: Vec<String>) -> Caps {
        let has = |name: &str| all.iter().any(|c| c.eq_ignore_ascii_case(name));
        Caps {
            idle: has("IDLE"),
            moves: has("MOVE"),
            uidplus: has("UIDPLUS"),
            all,
        }
    }
}

/// The flags of a listed message that tell how far an interrupted mark got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Touched {
    seen: bool,
    deleted: bool,
}

impl Touched {
    fn of<S: AsRef<str>>(flags: &[S]) -> Touched {
        let has = |name: &str| flags.iter().any(|f| f.as_ref().eq_ignore_ascii_case(name));
        Touched {
            seen: has("\\Seen"),
            deleted: has("\\Deleted"),
        }
    }
}

/// What untagged responses told about the selected folder.
#[derive(Debug, Default)]
struct Tally {
    exists: u32,
    /// The server reported new messages since the last list_new.
    changed: bool,
}

impl Tally {
    fn note(&mut self, response: &Response<'_>) {
        match response {
            Response::MailboxData(MailboxDatum::Exists(n)) => {
                if *n > self.exists {
                    self.changed = true;
                }
                self.exists = *n;
            }
            Response::Expunge(_) => self.exists = self.exists.saturating_sub(1),
            _ => {}
        }
    }
}

/// An open, authenticated IMAP session with the folder selected.
pub struct ImapUpstream {
    conn: Conn,
    host: String,
    after: AfterImport,
    /// Largest message (and literal) accepted: max_message_size + slack.
    literal_max: u64,
    /// The folder selected, in configured spelling after separator mapping.
    folder: String,
    /// Its name as the server spells it, to select it again.
    folder_wire: String,
    delimiter: Option<char>,
    uidvalidity: u32,
    tally: Tally,
    caps: Caps,
    /// PERMANENTFLAGS allows new keywords (or we could not tell).
    keywords_allowed: bool,
    /// Move targets resolved (or created) so far: configured name -> wire name.
    targets: HashMap<String, String>,
    /// Flags of the messages the last list_new returned, by UID.
    listed: HashMap<u32, Touched>,
    /// UIDs we flagged \Deleted that wait for an EXPUNGE at finish (no UIDPLUS).
    pending_expunge: BTreeSet<u32>,
}

impl std::fmt::Debug for ImapUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUpstream")
            .field("host", &self.host)
            .field("folder", &self.folder)
            .field("uidvalidity", &self.uidvalidity)
            .field("exists", &self.tally.exists)
            .field("broken", &self.conn.broken())
            .finish()
    }
}

impl ImapUpstream {
    /// UIDVALIDITY of the selected folder (part of every key).
    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// The folder selected, after hierarchy separator mapping.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// Capabilities the server announced after login.
    pub fn capabilities(&self) -> &[String] {
        &self.caps.all
    }

    /// One command (see [`Conn::run`]), its untagged responses tallied.
    async fn run(
        &mut self,
        command: &str,
        budget: u64,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        let tally = &mut self.tally;
        self.conn
            .run(command, budget, &mut |r| {
                tally.note(r);
                on_untagged(r);
            })
            .await
    }

    /// Best-effort LOGOUT; errors only logged.
    async fn logout(&mut self) {
        if self.conn.broken() {
            return;
        }
        if let Err(e) = self.run("LOGOUT", COMMAND_BUDGET, &mut |_| {}).await {
            tracing::debug!(host = %self.host, error = ?e, "IMAP LOGOUT failed");
        }
        self.conn.set_broken();
    }
}

#[cfg(test)]
mod cut_tests;
#[cfg(test)]
mod fake_server;
#[cfg(test)]
mod tests;
