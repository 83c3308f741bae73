//! Finding mailboxes on the server: the configured name as is, then with
//! '.' and '/' mapped to the server's hierarchy delimiter (LIST), with a
//! clear error naming what was tried; and move targets, created (and
//! subscribed) when missing.

use async_imap::imap_proto::{MailboxDatum, NameAttribute, Response};

use super::command::CmdError;
use super::names::{map_separators, mutf7_encode, quoted, same_mailbox};
use super::{COMMAND_BUDGET, ImapUpstream};
use crate::inbound::pull::upstream::FetchError;

/// A mailbox found with LIST.
pub(super) struct Found {
    /// The name as the server spells it (modified UTF-7), for commands.
    pub(super) wire: String,
    pub(super) selectable: bool,
}

impl ImapUpstream {
    /// Finds a configured folder name: as is, then with '.' and '/' mapped
    /// to the server's delimiter. Returns the spelling used and the mailbox.
    pub(super) async fn resolve(
        &mut self,
        configured: &str,
    ) -> Result<(String, Option<Found>), FetchError> {
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

    pub(super) fn not_found(&self, folder: &str) -> FetchError {
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
    pub(super) async fn target(&mut self, configured: &str) -> Result<String, FetchError> {
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
}
