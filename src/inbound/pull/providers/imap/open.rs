//! From settings to a selected folder: refuse unusable settings before any
//! network step, log in, read capabilities and the hierarchy delimiter,
//! find the folder and SELECT it (read-write, with a UIDVALIDITY).

use std::collections::{BTreeSet, HashMap};

use async_imap::imap_proto::{MailboxDatum, Outcome, Response, ResponseCode, Status};
use tokio::time::timeout;

use super::command::{CmdError, capability_name};
use super::login::connect_and_login;
use super::names::{mutf7_encode, quoted};
use super::{COMMAND_BUDGET, Caps, ImapSettings, ImapUpstream, SIZE_SLACK, Tally};
use crate::inbound::pull::upstream::{FetchError, Probe};
use crate::mail::{AfterImport, valid_keyword};

impl ImapUpstream {
    /// Connects (implicit TLS, STARTTLS or plain as configured), logs in,
    /// finds the folder and selects it.
    pub async fn open(settings: &ImapSettings) -> Result<ImapUpstream, FetchError> {
        check_settings(settings)?;
        let c = &settings.connect;
        let literal_max = settings.max_message_size.saturating_add(SIZE_SLACK);
        let conn = match timeout(c.connect_timeout, connect_and_login(c, literal_max)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(FetchError::Timeout(format!(
                    "connecting and logging in to {}:{}",
                    c.host, c.port
                )));
            }
        };
        let mut up = ImapUpstream {
            conn,
            host: c.host.clone(),
            after: settings.after.clone(),
            literal_max,
            folder: settings.folder.clone(),
            folder_wire: String::new(),
            delimiter: None,
            uidvalidity: 0,
            tally: Tally::default(),
            caps: Caps::default(),
            keywords_allowed: true,
            targets: HashMap::new(),
            listed: HashMap::new(),
            pending_expunge: BTreeSet::new(),
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
        use crate::inbound::pull::upstream::Upstream as _;
        let mut up = ImapUpstream::open(settings).await?;
        let unseen = up.search("UNSEEN").await?.len() as u64;
        let probe = Probe {
            messages: u64::from(up.tally.exists),
            unseen: Some(unseen),
            capabilities: up.caps.all.clone(),
            folder: Some(up.folder.clone()),
        };
        up.finish().await?;
        Ok(probe)
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

    pub(super) async fn select(
        &mut self,
        folder: &str,
        display: &str,
        wire: &str,
    ) -> Result<(), FetchError> {
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
        self.tally.exists = exists.unwrap_or(0);
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
        self.folder_wire = wire.to_string();
        self.tally.changed = false;
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
            exists = self.tally.exists,
            "IMAP folder selected"
        );
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
