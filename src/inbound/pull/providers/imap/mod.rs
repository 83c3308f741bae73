//! IMAP upstream: the [`Upstream`] of an IMAP(S) mailbox, over async-imap.
//!
//! Only the configured folder is read (never its subfolders), only unread
//! messages without our keywords are listed, downloads use `BODY.PEEK` so
//! nothing changes upstream before [`Upstream::mark`], and every network
//! step is bounded by the configured timeouts and the message size cap.
//!
//! async-imap is used for the connection, the response parser and LOGIN.
//! Commands after login are sent with `run_command` and their responses
//! read one by one with `read_response`: async-imap's own command helpers
//! drop the tagged status of FETCH, SEARCH, STORE, LIST and EXPUNGE (a `NO`
//! looks like an empty success) and leave the connection out of step when
//! a stream is dropped early, which this module cannot afford.

mod names;
mod transport;

use std::collections::HashMap;
use std::time::Duration;

use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, MessageSection, NameAttribute, Outcome, RequestId,
    Response, ResponseCode, SectionPath, Status,
};
use async_imap::{Client, Session};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

use crate::inbound::pull::upstream::{
    ConnectSettings, FetchError, Probe, Upstream, UpstreamMessage, Verdict,
};
use crate::mail::{AfterImport, Security, valid_keyword};
use crate::tls::client as tls;
use names::{
    SIZE_CHUNK, clean_text, map_separators, message_key, mutf7_encode, parse_key, quoted,
    same_mailbox, server_text, uid_set_chunks,
};
use transport::{ReadGuard, Transport};

/// Keyword set together with `\Seen` before a move (processed), so that the
/// moved message shows it was imported. Only where the server allows keywords.
pub const MOVE_PROCESSED_KEYWORD: &str = "Mailgate";
/// Keyword added, besides [`MOVE_PROCESSED_KEYWORD`], before moving a rejected message.
pub const MOVE_REJECTED_KEYWORD: &str = "RejectedByMailgate";

/// Bytes allowed on top of `max_message_size` for one message download.
const SIZE_SLACK: u64 = 64 * 1024;
/// Byte budget of commands other than downloads (SEARCH of a huge folder...).
const COMMAND_BUDGET: u64 = 64 * 1024 * 1024;
/// RFC 2177: re-issue IDLE before the server's 30-minute inactivity timer.
const IDLE_ROUND: Duration = Duration::from_secs(25 * 60);

type ImapSession = Session<Transport>;

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

/// How a command failed.
#[derive(Debug)]
enum CmdError {
    No(String),
    Bad(String),
    /// The connection ended (with the server's BYE text, if any).
    Closed(Option<String>),
    Io(String),
    /// A size cap refused what the server sent.
    Limit(String),
    Timeout,
    /// An earlier failure left the session out of step.
    Unusable,
}

impl CmdError {
    /// Whether the session can no longer be used after this error.
    fn breaks(&self) -> bool {
        !matches!(self, CmdError::No(_) | CmdError::Bad(_))
    }

    fn into_fetch(self, what: &str) -> FetchError {
        match self {
            CmdError::No(text) => FetchError::Protocol(format!("{what}: server said NO: {text}")),
            CmdError::Bad(text) => FetchError::Protocol(format!("{what}: server said BAD: {text}")),
            CmdError::Closed(None) => {
                FetchError::Io(format!("{what}: connection closed by the server"))
            }
            CmdError::Closed(Some(bye)) => FetchError::Io(format!(
                "{what}: connection closed by the server (BYE {bye})"
            )),
            CmdError::Io(detail) => FetchError::Io(format!("{what}: {detail}")),
            CmdError::Limit(detail) => FetchError::Protocol(format!("{what}: {detail}")),
            CmdError::Timeout => FetchError::Timeout(what.to_string()),
            CmdError::Unusable => FetchError::Io(format!(
                "{what}: the session is unusable after an earlier error; reconnect"
            )),
        }
    }
}

/// What a command's tagged OK said.
struct Done {
    /// `[READ-ONLY]` (after SELECT).
    read_only: bool,
}

/// Receives each untagged response of a command.
type OnUntagged<'a> = &'a mut (dyn FnMut(&Response<'_>) + Send);

/// How an IDLE wait ended.
enum IdleEnd {
    Change,
    /// The server completed the IDLE command itself.
    Ended,
}

/// A mailbox found with LIST.
struct Found {
    /// The name as the server spells it (modified UTF-7), for commands.
    wire: String,
    selectable: bool,
}

/// An open, authenticated IMAP session with the folder selected.
pub struct ImapUpstream {
    session: ImapSession,
    host: String,
    command_timeout: Duration,
    after: AfterImport,
    /// Largest message (and literal) accepted: max_message_size + slack.
    literal_max: u64,
    /// The folder selected, in configured spelling after separator mapping.
    folder: String,
    delimiter: Option<char>,
    uidvalidity: u32,
    exists: u32,
    caps: Caps,
    /// PERMANENTFLAGS allows new keywords (or we could not tell).
    keywords_allowed: bool,
    /// Move targets resolved (or created) so far: configured name -> wire name.
    targets: HashMap<String, String>,
    /// Messages flagged \Deleted wait for an EXPUNGE at finish.
    pending_expunge: bool,
    /// The server reported new messages since the last list_new.
    changed: bool,
    /// A timeout or I/O error left the session out of step.
    broken: bool,
}

impl std::fmt::Debug for ImapUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUpstream")
            .field("host", &self.host)
            .field("folder", &self.folder)
            .field("uidvalidity", &self.uidvalidity)
            .field("exists", &self.exists)
            .field("broken", &self.broken)
            .finish()
    }
}

impl ImapUpstream {
    /// Connects (implicit TLS, STARTTLS or plain as configured), logs in,
    /// finds the folder and selects it.
    pub async fn open(settings: &ImapSettings) -> Result<ImapUpstream, FetchError> {
        check_settings(settings)?;
        let c = &settings.connect;
        let literal_max = settings.max_message_size.saturating_add(SIZE_SLACK);
        let session = match timeout(c.connect_timeout, connect_and_login(c, literal_max)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(FetchError::Timeout(format!(
                    "connecting and logging in to {}:{}",
                    c.host, c.port
                )));
            }
        };
        let mut up = ImapUpstream {
            session,
            host: c.host.clone(),
            command_timeout: c.command_timeout,
            after: settings.after.clone(),
            literal_max,
            folder: settings.folder.clone(),
            delimiter: None,
            uidvalidity: 0,
            exists: 0,
            caps: Caps::default(),
            keywords_allowed: true,
            targets: HashMap::new(),
            pending_expunge: false,
            changed: false,
            broken: false,
        };
        match up.init(&settings.folder).await {
            Ok(()) => Ok(up),
            Err(e) => {
                up.logout().await;
                Err(e)
            }
        }
    }

    /// For `mailgate test-connection`: opens the folder, counts, logs out.
    pub async fn probe(settings: &ImapSettings) -> Result<Probe, FetchError> {
        let mut up = ImapUpstream::open(settings).await?;
        let unseen = up.search("UNSEEN").await?.len() as u64;
        let probe = Probe {
            messages: u64::from(up.exists),
            unseen: Some(unseen),
            capabilities: up.caps.all.clone(),
            folder: Some(up.folder.clone()),
        };
        up.finish().await?;
        Ok(probe)
    }

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

    /// IMAP IDLE: waits until the server reports a change (new or changed
    /// messages) or `timeout` elapses; `true` when something changed.
    /// Returns `Ok(false)` at once when the server has no IDLE (poll
    /// instead), and `true` at once when a change was already reported
    /// since the last `list_new`. On error the session is gone: reconnect.
    pub async fn wait_for_change(
        mut self,
        timeout: Duration,
    ) -> Result<(ImapUpstream, bool), FetchError> {
        if self.broken {
            return Err(CmdError::Unusable.into_fetch("IDLE"));
        }
        if !self.caps.idle {
            return Ok((self, false));
        }
        if self.changed {
            return Ok((self, true));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok((self, false));
            }
            let round = (deadline - now).min(IDLE_ROUND);
            match self.idle_round(round).await {
                Ok(true) => return Ok((self, true)),
                Ok(false) => {}
                Err(e) => return Err(e.into_fetch("IDLE")),
            }
        }
    }

    /// After login: capabilities, hierarchy delimiter, folder, SELECT.
    async fn init(&mut self, folder: &str) -> Result<(), FetchError> {
        let mut caps = Vec::new();
        self.run("CAPABILITY", COMMAND_BUDGET, &mut |r| {
            if let Response::Capabilities(list) = r {
                caps.extend(list.iter().map(capability_name));
            }
        })
        .await
        .map_err(|e| e.into_fetch("CAPABILITY"))?;
        self.caps = Caps::new(caps);

        let mut delimiter = None;
        self.run("LIST \"\" \"\"", COMMAND_BUDGET, &mut |r| {
            if let Response::MailboxData(MailboxDatum::List(list)) = r {
                delimiter = list.delimiter.as_deref().and_then(|d| d.chars().next());
            }
        })
        .await
        .map_err(|e| e.into_fetch("LIST"))?;
        self.delimiter = delimiter;

        let (display, found) = self.resolve(folder).await?;
        let Some(found) = found else {
            return Err(self.not_found(folder));
        };
        if !found.selectable {
            return Err(FetchError::Folder {
                folder: folder.to_string(),
                detail: format!("{display:?} exists but cannot be selected (\\Noselect)"),
            });
        }
        self.select(folder, &display, &found.wire).await
    }

    async fn select(&mut self, folder: &str, display: &str, wire: &str) -> Result<(), FetchError> {
        let name = quoted(wire).ok_or_else(|| FetchError::Folder {
            folder: folder.to_string(),
            detail: format!("server name {wire:?} cannot be sent back"),
        })?;
        let mut uidvalidity = None;
        let mut permanent: Option<Vec<String>> = None;
        let mut exists = None;
        let on_untagged = &mut |r: &Response<'_>| match r {
            Response::Data {
                status: Status::Ok,
                outcome: Outcome {
                    code: Some(code), ..
                },
            } => match code {
                ResponseCode::UidValidity(v) => uidvalidity = Some(*v),
                ResponseCode::PermanentFlags(flags) => {
                    permanent = Some(flags.iter().map(|f| f.to_string()).collect());
                }
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => exists = Some(*n),
            _ => {}
        };
        let done = match self
            .run(&format!("SELECT {name}"), COMMAND_BUDGET, on_untagged)
            .await
        {
            Ok(done) => done,
            Err(CmdError::No(text) | CmdError::Bad(text)) => {
                return Err(FetchError::Folder {
                    folder: folder.to_string(),
                    detail: format!("SELECT {display:?} refused: {text}"),
                });
            }
            Err(e) => return Err(e.into_fetch("SELECT")),
        };
        self.exists = exists.unwrap_or(0);
        if done.read_only {
            return Err(FetchError::Folder {
                folder: folder.to_string(),
                detail: format!(
                    "{display:?} can only be opened read-only: messages could not be marked"
                ),
            });
        }
        let uidvalidity = match uidvalidity {
            Some(v) if v != 0 => v,
            _ => {
                return Err(FetchError::Protocol(format!(
                    "SELECT {display:?}: the server did not report a UIDVALIDITY"
                )));
            }
        };
        self.uidvalidity = uidvalidity;
        self.folder = display.to_string();
        self.changed = false;
        if let Some(flags) = &permanent {
            self.keywords_allowed = flags.iter().any(|f| f == "\\*");
            if let AfterImport::Label {
                processed,
                rejected,
            } = &self.after
            {
                for keyword in [processed, rejected] {
                    let known = flags.iter().any(|f| f.eq_ignore_ascii_case(keyword));
                    if !self.keywords_allowed && !known {
                        return Err(FetchError::Unsupported {
                            what: format!(
                                "the keyword {keyword:?} in {display:?} (PERMANENTFLAGS has no \\*)"
                            ),
                        });
                    }
                }
            }
        }
        tracing::debug!(
            host = %self.host,
            folder = %self.folder,
            uidvalidity,
            exists = self.exists,
            "IMAP folder selected"
        );
        Ok(())
    }

    /// Finds a configured folder name: as is, then with '.' and '/' mapped
    /// to the server's delimiter. Returns the spelling used and the mailbox.
    async fn resolve(&mut self, configured: &str) -> Result<(String, Option<Found>), FetchError> {
        let mut candidates = vec![configured.to_string()];
        let mapped = map_separators(configured, self.delimiter);
        if mapped != configured {
            candidates.push(mapped);
        }
        let mut unselectable = None;
        for candidate in candidates {
            let wire = mutf7_encode(&candidate);
            let Some(pattern) = quoted(&wire) else {
                return Err(FetchError::Folder {
                    folder: configured.to_string(),
                    detail: "the name contains control characters".into(),
                });
            };
            let mut found = None;
            self.run(&format!("LIST \"\" {pattern}"), COMMAND_BUDGET, &mut |r| {
                if let Response::MailboxData(MailboxDatum::List(list)) = r
                    && same_mailbox(&list.name, &wire)
                {
                    let selectable = !list.name_attributes.iter().any(|a| match a {
                        NameAttribute::NoSelect => true,
                        NameAttribute::Extension(x) => x.eq_ignore_ascii_case("\\NonExistent"),
                        _ => false,
                    });
                    found = Some(Found {
                        wire: list.name.to_string(),
                        selectable,
                    });
                }
            })
            .await
            .map_err(|e| e.into_fetch("LIST"))?;
            match found {
                Some(f) if f.selectable => return Ok((candidate, Some(f))),
                Some(f) => unselectable = unselectable.or(Some((candidate, f))),
                None => {}
            }
        }
        Ok(match unselectable {
            Some((candidate, f)) => (candidate, Some(f)),
            None => (configured.to_string(), None),
        })
    }

    fn not_found(&self, folder: &str) -> FetchError {
        let mapped = map_separators(folder, self.delimiter);
        let tried = if mapped != folder {
            format!(" (also tried {mapped:?})")
        } else {
            String::new()
        };
        let delimiter = match self.delimiter {
            Some(d) => format!("{d:?}"),
            None => "none".into(),
        };
        FetchError::Folder {
            folder: folder.to_string(),
            detail: format!(
                "no such mailbox on the server{tried}; its hierarchy separator is {delimiter}"
            ),
        }
    }

    /// The wire name of a move target, created (and subscribed) if missing.
    async fn target(&mut self, configured: &str) -> Result<String, FetchError> {
        if let Some(wire) = self.targets.get(configured) {
            return Ok(wire.clone());
        }
        let (_, found) = self.resolve(configured).await?;
        let wire = match found {
            Some(f) if f.selectable => f.wire,
            Some(_) => {
                return Err(FetchError::Folder {
                    folder: configured.to_string(),
                    detail: "the move target exists but cannot hold messages (\\Noselect)".into(),
                });
            }
            None => {
                let name = map_separators(configured, self.delimiter);
                let wire = mutf7_encode(&name);
                let quoted_name = quoted(&wire).ok_or_else(|| FetchError::Folder {
                    folder: configured.to_string(),
                    detail: "the name contains control characters".into(),
                })?;
                match self
                    .run(
                        &format!("CREATE {quoted_name}"),
                        COMMAND_BUDGET,
                        &mut |_| {},
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(host = %self.host, folder = %name, "created IMAP folder for moved messages");
                        // So that mail clients showing subscribed folders show it.
                        if let Err(e) = self
                            .run(
                                &format!("SUBSCRIBE {quoted_name}"),
                                COMMAND_BUDGET,
                                &mut |_| {},
                            )
                            .await
                            && e.breaks()
                        {
                            return Err(e.into_fetch("SUBSCRIBE"));
                        }
                        wire
                    }
                    // ALREADYEXISTS (a concurrent creation) or a real refusal: look again.
                    Err(CmdError::No(text) | CmdError::Bad(text)) => {
                        match self.resolve(configured).await? {
                            (_, Some(f)) if f.selectable => f.wire,
                            _ => {
                                return Err(FetchError::Folder {
                                    folder: configured.to_string(),
                                    detail: format!("cannot create it: {text}"),
                                });
                            }
                        }
                    }
                    Err(e) => return Err(e.into_fetch("CREATE")),
                }
            }
        };
        self.targets.insert(configured.to_string(), wire.clone());
        Ok(wire)
    }

    /// UIDs matching a SEARCH query, ascending.
    async fn search(&mut self, query: &str) -> Result<Vec<u32>, FetchError> {
        let mut uids: Vec<u32> = Vec::new();
        self.run(&format!("UID SEARCH {query}"), COMMAND_BUDGET, &mut |r| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = r {
                uids.extend(found.iter().copied().filter(|&u| u != 0));
            }
        })
        .await
        .map_err(|e| e.into_fetch("UID SEARCH"))?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The UID of one of our messages; refuses keys of another UIDVALIDITY.
    fn uid_of(&self, message: &UpstreamMessage) -> Result<u32, FetchError> {
        match parse_key(&message.key) {
            Some((validity, uid)) if validity == self.uidvalidity => Ok(uid),
            Some((validity, _)) => Err(FetchError::Protocol(format!(
                "{} belongs to UIDVALIDITY {validity}, but {:?} now has {}: the folder was recreated",
                message.key, self.folder, self.uidvalidity
            ))),
            None => Err(FetchError::Protocol(format!(
                "{:?} is not an IMAP message key",
                message.key
            ))),
        }
    }

    /// One section of one message, byte-exact.
    async fn fetch_section(
        &mut self,
        uid: u32,
        section: &str,
        header: bool,
    ) -> Result<Vec<u8>, FetchError> {
        let what = format!("UID FETCH {uid} {section}");
        let budget = self.literal_max.saturating_add(SIZE_SLACK);
        let literal_max = self.literal_max;
        let mut found: Option<Result<Vec<u8>, FetchError>> = None;
        self.run(&what, budget, &mut |r| {
            let Response::Fetch(_, attrs) = r else {
                return;
            };
            if found.is_some()
                || !attrs
                    .iter()
                    .any(|a| matches!(a, AttributeValue::Uid(u) if *u == uid))
            {
                return;
            }
            for a in attrs {
                let data = match a {
                    AttributeValue::BodySection {
                        section: None,
                        data,
                        ..
                    } if !header => data,
                    AttributeValue::BodySection {
                        section: Some(SectionPath::Full(MessageSection::Header)),
                        data,
                        ..
                    } if header => data,
                    _ => continue,
                };
                found = Some(match data {
                    Some(bytes) if bytes.len() as u64 <= literal_max => Ok(bytes.to_vec()),
                    Some(bytes) => Err(FetchError::Protocol(format!(
                        "{} bytes, over the limit of {literal_max}",
                        bytes.len()
                    ))),
                    None => Err(FetchError::Protocol("the server returned NIL".into())),
                });
                return;
            }
        })
        .await
        .map_err(|e| e.into_fetch(&what))?;
        match found {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(FetchError::Protocol(detail))) => {
                Err(FetchError::Protocol(format!("{what}: {detail}")))
            }
            Some(Err(e)) => Err(e),
            None => Err(FetchError::Protocol(format!(
                "{what}: no such message in {:?} (expunged by another client?)",
                self.folder
            ))),
        }
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

    /// Best-effort LOGOUT; errors only logged.
    async fn logout(&mut self) {
        if self.broken {
            return;
        }
        if let Err(e) = self.run("LOGOUT", COMMAND_BUDGET, &mut |_| {}).await {
            tracing::debug!(host = %self.host, error = ?e, "IMAP LOGOUT failed");
        }
        self.broken = true;
    }

    /// Sends a command and reads its responses within the command timeout,
    /// with `budget` bytes allowed; untagged responses go to `on_untagged`.
    /// Timeouts and I/O errors break the session.
    async fn run(
        &mut self,
        command: &str,
        budget: u64,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        if self.broken {
            return Err(CmdError::Unusable);
        }
        self.session.get_mut().guard.set_budget(budget);
        let result = timeout(self.command_timeout, self.exchange(command, on_untagged)).await;
        self.settle(result)
    }

    fn settle<T>(
        &mut self,
        result: Result<Result<T, CmdError>, tokio::time::error::Elapsed>,
    ) -> Result<T, CmdError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.breaks() {
                    self.broken = true;
                }
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(CmdError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        command: &str,
        on_untagged: OnUntagged<'_>,
    ) -> Result<Done, CmdError> {
        let tag = self
            .session
            .run_command(command)
            .await
            .map_err(|e| self.lib_error(e))?;
        let mut bye = None;
        loop {
            let step = self
                .read_one(&mut bye, |this, response| match response {
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if *t == tag => Some(match status {
                        Status::Ok => Ok(Done {
                            read_only: matches!(outcome.code, Some(ResponseCode::ReadOnly)),
                        }),
                        Status::No => Err(CmdError::No(outcome_text(outcome))),
                        _ => Err(CmdError::Bad(outcome_text(outcome))),
                    }),
                    other => {
                        this.note_untagged(other);
                        on_untagged(other);
                        None
                    }
                })
                .await?;
            if let Some(result) = step {
                return result;
            }
        }
    }

    /// Reads one response and hands it to `f`; remembers a BYE so that
    /// the end of the connection can be explained.
    async fn read_one<R>(
        &mut self,
        bye: &mut Option<String>,
        f: impl FnOnce(&mut Self, &Response<'_>) -> R,
    ) -> Result<R, CmdError> {
        let response = match self.session.read_response().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(CmdError::Closed(bye.take())),
            Err(e) => return Err(self.io_error(e)),
        };
        let parsed = response.parsed();
        if let Response::Data {
            status: Status::Bye,
            outcome,
        } = parsed
        {
            *bye = Some(outcome_text(outcome));
        }
        Ok(f(self, parsed))
    }

    /// Keeps track of the folder's size from untagged responses.
    fn note_untagged(&mut self, response: &Response<'_>) {
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

    fn io_error(&self, e: std::io::Error) -> CmdError {
        match self.session.get_ref().guard.tripped() {
            Some(reason) => CmdError::Limit(reason.to_string()),
            None => CmdError::Io(e.to_string()),
        }
    }

    fn lib_error(&self, e: async_imap::error::Error) -> CmdError {
        match e {
            async_imap::error::Error::Io(e) => self.io_error(e),
            async_imap::error::Error::ConnectionLost => CmdError::Closed(None),
            other => CmdError::Io(other.to_string()),
        }
    }

    /// One IDLE command: start, wait up to `wait`, DONE.
    async fn idle_round(&mut self, wait: Duration) -> Result<bool, CmdError> {
        if self.broken {
            return Err(CmdError::Unusable);
        }
        self.session.get_mut().guard.set_budget(COMMAND_BUDGET);
        let started = timeout(self.command_timeout, self.idle_start()).await;
        let tag = self.settle(started)?;
        let mut changed = self.changed;
        if !changed {
            let waited = timeout(wait, self.idle_wait(&tag)).await;
            match waited {
                Ok(Ok(IdleEnd::Change)) => changed = true,
                Ok(Ok(IdleEnd::Ended)) => return Ok(self.changed),
                Ok(Err(e)) => {
                    self.broken = true;
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let done = timeout(self.command_timeout, self.idle_done(&tag)).await;
        self.settle(done)?;
        Ok(changed || self.changed)
    }

    async fn idle_start(&mut self) -> Result<RequestId, CmdError> {
        let tag = self
            .session
            .run_command("IDLE")
            .await
            .map_err(|e| self.lib_error(e))?;
        let mut bye = None;
        loop {
            let step = self
                .read_one(&mut bye, |this, response| match response {
                    Response::Continue(_) => Some(Ok(())),
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if *t == tag => Some(Err(match status {
                        Status::No => CmdError::No(outcome_text(outcome)),
                        _ => CmdError::Bad(outcome_text(outcome)),
                    })),
                    other => {
                        this.note_untagged(other);
                        None
                    }
                })
                .await?;
            match step {
                Some(Ok(())) => return Ok(tag),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    async fn idle_wait(&mut self, tag: &RequestId) -> Result<IdleEnd, CmdError> {
        let mut bye = None;
        loop {
            let step = self
                .read_one(&mut bye, |this, response| match response {
                    Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_))
                    | Response::Fetch(..) => {
                        this.note_untagged(response);
                        Some(IdleEnd::Change)
                    }
                    Response::Done { tag: t, .. } if t == tag => Some(IdleEnd::Ended),
                    other => {
                        this.note_untagged(other);
                        None
                    }
                })
                .await?;
            if let Some(end) = step {
                return Ok(end);
            }
        }
    }

    async fn idle_done(&mut self, tag: &RequestId) -> Result<(), CmdError> {
        self.session
            .run_command_untagged("DONE")
            .await
            .map_err(|e| self.lib_error(e))?;
        let mut bye = None;
        loop {
            let step = self
                .read_one(&mut bye, |this, response| match response {
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t == tag => Some(match status {
                        Status::Ok => Ok(()),
                        Status::No => Err(CmdError::No(outcome_text(outcome))),
                        _ => Err(CmdError::Bad(outcome_text(outcome))),
                    }),
                    other => {
                        this.note_untagged(other);
                        None
                    }
                })
                .await?;
            if let Some(result) = step {
                return result;
            }
        }
    }
}

impl Upstream for ImapUpstream {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        self.changed = false;
        let query = match &self.after {
            AfterImport::Label {
                processed,
                rejected,
            } => {
                format!("UNSEEN UNKEYWORD {processed} UNKEYWORD {rejected}")
            }
            _ => "UNSEEN".to_string(),
        };
        let mut uids = self.search(&query).await?;
        // A move or delete interrupted after its flags were set leaves the
        // message read and flagged in this folder: list it to finish the job.
        let leftover_query = match &self.after {
            AfterImport::Move { .. } if self.keywords_allowed => Some(format!(
                "OR KEYWORD {MOVE_PROCESSED_KEYWORD} KEYWORD {MOVE_REJECTED_KEYWORD}"
            )),
            AfterImport::Delete => Some("DELETED".to_string()),
            _ => None,
        };
        let mut leftovers = Vec::new();
        if let Some(q) = leftover_query {
            for uid in self.search(&q).await? {
                if !uids.contains(&uid) {
                    leftovers.push(uid);
                }
            }
        }
        uids.extend(leftovers.iter().copied());
        let mut sizes: HashMap<u32, u64> = HashMap::with_capacity(uids.len());
        for set in uid_set_chunks(&uids, SIZE_CHUNK) {
            let command = format!("UID FETCH {set} (UID RFC822.SIZE)");
            self.run(&command, COMMAND_BUDGET, &mut |r| {
                if let Response::Fetch(_, attrs) = r {
                    let mut uid = None;
                    let mut size = None;
                    for a in attrs {
                        match a {
                            AttributeValue::Uid(u) => uid = Some(*u),
                            AttributeValue::Rfc822Size(s) => size = Some(u64::from(*s)),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(size)) = (uid, size) {
                        sizes.insert(uid, size);
                    }
                }
            })
            .await
            .map_err(|e| e.into_fetch("UID FETCH (RFC822.SIZE)"))?;
        }
        // A UID without a size was expunged in between: nothing to import.
        let messages: Vec<UpstreamMessage> = uids
            .iter()
            .filter_map(|uid| {
                sizes.get(uid).map(|&size| UpstreamMessage {
                    key: message_key(self.uidvalidity, *uid),
                    size,
                    leftover: leftovers.contains(uid),
                })
            })
            .collect();
        tracing::debug!(host = %self.host, folder = %self.folder, new = messages.len(), "IMAP list");
        Ok(messages)
    }

    async fn fetch(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let uid = self.uid_of(message)?;
        if message.size > self.literal_max {
            return Err(FetchError::Protocol(format!(
                "{}: {} bytes, over the download limit of {} (fetch the headers only)",
                message.key, message.size, self.literal_max
            )));
        }
        self.fetch_section(uid, "BODY.PEEK[]", false).await
    }

    async fn fetch_headers(&mut self, message: &UpstreamMessage) -> Result<Vec<u8>, FetchError> {
        let uid = self.uid_of(message)?;
        self.fetch_section(uid, "BODY.PEEK[HEADER]", true).await
    }

    async fn mark(
        &mut self,
        message: &UpstreamMessage,
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        let uid = self.uid_of(message)?;
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
        tracing::debug!(host = %self.host, key = %message.key, ?verdict, "IMAP message marked");
        Ok(())
    }

    async fn finish(mut self) -> Result<(), FetchError> {
        if self.broken {
            if self.pending_expunge {
                return Err(FetchError::Io(format!(
                    "the session with {} broke before EXPUNGE: messages flagged \\Deleted stay until the next expunge",
                    self.host
                )));
            }
            return Ok(());
        }
        if self.pending_expunge {
            self.run("EXPUNGE", COMMAND_BUDGET, &mut |_| {})
                .await
                .map_err(|e| e.into_fetch("EXPUNGE"))?;
            self.pending_expunge = false;
        }
        self.logout().await;
        Ok(())
    }
}

/// Refuses settings that cannot work before touching the network.
fn check_settings(settings: &ImapSettings) -> Result<(), FetchError> {
    match &settings.after {
        AfterImport::Keep => Err(FetchError::Unsupported {
            what: "after_import = keep over IMAP (use label, move or delete)".into(),
        }),
        AfterImport::Label {
            processed,
            rejected,
        } => {
            for keyword in [processed, rejected] {
                if !valid_keyword(keyword) {
                    return Err(FetchError::Protocol(format!(
                        "{keyword:?} is not a valid IMAP keyword"
                    )));
                }
            }
            Ok(())
        }
        AfterImport::Move {
            processed,
            rejected,
        } => {
            for folder in [processed, rejected] {
                if folder.trim().is_empty() || quoted(&mutf7_encode(folder)).is_none() {
                    return Err(FetchError::Folder {
                        folder: folder.clone(),
                        detail: "not a usable move target name".into(),
                    });
                }
            }
            Ok(())
        }
        AfterImport::Delete => Ok(()),
    }
}

/// TCP, TLS or STARTTLS, greeting, LOGIN.
async fn connect_and_login(
    c: &ConnectSettings,
    literal_max: u64,
) -> Result<ImapSession, FetchError> {
    let guard = ReadGuard::new(literal_max, COMMAND_BUDGET);
    let tcp = tls::connect_tcp(c).await?;
    let mut client = match c.security {
        Security::Tls => Client::new(Transport::tls(tls::handshake(c, tcp).await?, guard.clone())),
        Security::StartTls | Security::None => Client::new(Transport::plain(tcp, guard.clone())),
    };
    let greeting_caps = read_greeting(&mut client, c).await?;
    if c.security == Security::StartTls {
        let caps = match greeting_caps {
            Some(caps) => caps,
            None => {
                let mut caps = Vec::new();
                client_command(&mut client, "mg1", "CAPABILITY", &mut |r| {
                    if let Response::Capabilities(list) = r {
                        caps.extend(list.iter().map(capability_name));
                    }
                })
                .await
                .map_err(|e| e.into_fetch("CAPABILITY"))?;
                caps
            }
        };
        if !caps.iter().any(|cap| cap.eq_ignore_ascii_case("STARTTLS")) {
            return Err(FetchError::Unsupported {
                what: format!(
                    "STARTTLS at {}:{} (refusing to log in without TLS)",
                    c.host, c.port
                ),
            });
        }
        match client_command(&mut client, "mg2", "STARTTLS", &mut |_| {}).await {
            Ok(_) => {}
            Err(CmdError::No(text) | CmdError::Bad(text)) => {
                return Err(FetchError::Tls {
                    host: c.host.clone(),
                    detail: format!("the server refused STARTTLS: {text}"),
                });
            }
            Err(e) => return Err(e.into_fetch("STARTTLS")),
        }
        // Anything the server sent after its OK is dropped with the plain
        // stream's buffer (no injection across the TLS boundary).
        let tcp = client
            .into_inner()
            .into_plain()
            .ok_or_else(|| FetchError::Protocol("STARTTLS on a TLS stream".into()))?;
        client = Client::new(Transport::tls(tls::handshake(c, tcp).await?, guard));
    } else if greeting_caps.as_ref().is_some_and(|caps| {
        caps.iter()
            .any(|cap| cap.eq_ignore_ascii_case("LOGINDISABLED"))
    }) {
        return Err(FetchError::Auth {
            user: c.user.clone(),
            detail: "the server disables LOGIN on this connection (LOGINDISABLED)".into(),
        });
    }
    match client.login(&c.user, c.password.expose()).await {
        Ok(session) => {
            tracing::debug!(host = %c.host, user = %c.user, "IMAP login");
            Ok(session)
        }
        Err((e, _client)) => Err(match e {
            async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                FetchError::Auth {
                    user: c.user.clone(),
                    detail: server_text(&text),
                }
            }
            async_imap::error::Error::Validate(_) => FetchError::Auth {
                user: c.user.clone(),
                detail: "the user name or password contains a line break".into(),
            },
            async_imap::error::Error::Io(e) => FetchError::Io(format!("LOGIN: {e}")),
            async_imap::error::Error::ConnectionLost => {
                FetchError::Io("LOGIN: connection closed by the server".into())
            }
            other => FetchError::Protocol(format!("LOGIN: {other}")),
        }),
    }
}

/// Reads the greeting; the capabilities it carries, if any.
async fn read_greeting(
    client: &mut Client<Transport>,
    c: &ConnectSettings,
) -> Result<Option<Vec<String>>, FetchError> {
    let response = match client.read_response().await {
        Ok(Some(response)) => response,
        Ok(None) => {
            return Err(FetchError::Io(
                "connection closed before the greeting".into(),
            ));
        }
        Err(e) => return Err(FetchError::Io(format!("reading the greeting: {e}"))),
    };
    match response.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome,
        } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(list)) => {
                Some(list.iter().map(capability_name).collect())
            }
            _ => None,
        }),
        Response::Data {
            status: Status::PreAuth,
            ..
        } => Err(FetchError::Unsupported {
            what: "a PREAUTH greeting".into(),
        }),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(FetchError::Connect {
            address: format!("{}:{}", c.host, c.port),
            detail: format!("the server said BYE: {}", outcome_text(outcome)),
        }),
        _ => Err(FetchError::Protocol(
            "the server did not send an IMAP greeting".into(),
        )),
    }
}

/// A command before login (CAPABILITY, STARTTLS) with our own tag.
async fn client_command(
    client: &mut Client<Transport>,
    tag: &str,
    command: &str,
    on_untagged: OnUntagged<'_>,
) -> Result<(), CmdError> {
    let line = format!("{tag} {command}\r\n");
    let stream = client.get_mut();
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(|e| CmdError::Io(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| CmdError::Io(e.to_string()))?;
    let tag = RequestId(tag.to_string());
    loop {
        let response = match client.read_response().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(CmdError::Closed(None)),
            Err(e) => return Err(CmdError::Io(e.to_string())),
        };
        match response.parsed() {
            Response::Done {
                tag: t,
                status,
                outcome,
            } if *t == tag => {
                return match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(CmdError::No(outcome_text(outcome))),
                    _ => Err(CmdError::Bad(outcome_text(outcome))),
                };
            }
            other => on_untagged(other),
        }
    }
}

fn capability_name(c: &Capability<'_>) -> String {
    match c {
        Capability::Imap4rev1 => "IMAP4rev1".to_string(),
        Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
        Capability::Atom(atom) => atom.to_string(),
    }
}

/// The text of a status response, with its code when async-imap parsed one.
fn outcome_text(outcome: &Outcome<'_>) -> String {
    let code = match &outcome.code {
        Some(code) => format!("[{code:?}] "),
        None => String::new(),
    };
    clean_text(&format!(
        "{code}{}",
        outcome.information.as_deref().unwrap_or("")
    ))
}

#[cfg(test)]
mod tests;
