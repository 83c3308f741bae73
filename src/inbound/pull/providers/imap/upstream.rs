//! The [`Upstream`] impl: what is new (SEARCH for unread mail without our
//! keywords, plus leftovers of interrupted moves/deletes, sizes in chunks),
//! byte-exact downloads with `BODY.PEEK`, marking, and the final EXPUNGE
//! (only of our own messages, see `expunge`).

use std::collections::HashMap;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, MessageSection, Response, SectionPath};

use super::names::{SIZE_CHUNK, message_key, parse_key, uid_set, uid_set_chunks};
use super::{
    COMMAND_BUDGET, ImapUpstream, MOVE_PROCESSED_KEYWORD, MOVE_REJECTED_KEYWORD, SIZE_SLACK,
    Touched,
};
use crate::inbound::pull::upstream::{FetchError, Upstream, UpstreamMessage, Verdict};
use crate::mail::AfterImport;

impl ImapUpstream {
    /// UIDs matching a SEARCH query, ascending.
    pub(super) async fn search(&mut self, query: &str) -> Result<Vec<u32>, FetchError> {
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
}

impl ImapUpstream {
    /// Whole messages by UID with one `UID FETCH <set> BODY.PEEK[]`,
    /// byte-exact, in the order asked. The byte budget is what the server
    /// announced (RFC822.SIZE) plus slack per message, plus one message's
    /// limit for a server that announced less than it sends.
    async fn fetch_bodies(
        &mut self,
        messages: &[UpstreamMessage],
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        let mut uids = Vec::with_capacity(messages.len());
        let mut budget = self.literal_max.saturating_add(SIZE_SLACK);
        for message in messages {
            uids.push(self.uid_of(message)?);
            if message.size > self.literal_max {
                return Err(FetchError::Protocol(format!(
                    "{}: {} bytes, over the download limit of {} (fetch the headers only)",
                    message.key, message.size, self.literal_max
                )));
            }
            budget = budget.saturating_add(message.size.saturating_add(SIZE_SLACK));
        }
        let mut sorted = uids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let what = format!("UID FETCH {} BODY.PEEK[]", uid_set(&sorted));
        let literal_max = self.literal_max;
        let mut found: HashMap<u32, Result<Vec<u8>, String>> = HashMap::with_capacity(uids.len());
        self.run(&what, budget, &mut |r| {
            let Response::Fetch(_, attrs) = r else {
                return;
            };
            let Some(uid) = attrs.iter().find_map(|a| match a {
                AttributeValue::Uid(u) => Some(*u),
                _ => None,
            }) else {
                return;
            };
            if found.contains_key(&uid) || sorted.binary_search(&uid).is_err() {
                return;
            }
            for a in attrs {
                if let AttributeValue::BodySection {
                    section: None,
                    data,
                    ..
                } = a
                {
                    let body = match data {
                        Some(bytes) if bytes.len() as u64 <= literal_max => Ok(bytes.to_vec()),
                        Some(bytes) => Err(format!(
                            "{} bytes, over the limit of {literal_max}",
                            bytes.len()
                        )),
                        None => Err("the server returned NIL".into()),
                    };
                    found.insert(uid, body);
                    return;
                }
            }
        })
        .await
        .map_err(|e| e.into_fetch(&what))?;
        let mut raws = Vec::with_capacity(uids.len());
        for uid in uids {
            match found.remove(&uid) {
                Some(Ok(bytes)) => raws.push(bytes),
                Some(Err(detail)) => {
                    return Err(FetchError::Protocol(format!(
                        "UID FETCH {uid} BODY.PEEK[]: {detail}"
                    )));
                }
                None => {
                    return Err(FetchError::Protocol(format!(
                        "UID FETCH {uid} BODY.PEEK[]: no such message in {:?} (expunged by another client?)",
                        self.folder
                    )));
                }
            }
        }
        Ok(raws)
    }
}

impl Upstream for ImapUpstream {
    async fn list_new(&mut self) -> Result<Vec<UpstreamMessage>, FetchError> {
        self.tally.changed = false;
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
        // (Another client's \Deleted messages are listed too: the engine
        // skips what it never committed.)
        let leftover_query = match &self.after {
            AfterImport::Move { .. } if self.keywords_allowed => Some(format!(
                "OR DELETED OR KEYWORD {MOVE_PROCESSED_KEYWORD} KEYWORD {MOVE_REJECTED_KEYWORD}"
            )),
            AfterImport::Move { .. } | AfterImport::Delete => Some("DELETED".to_string()),
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
        // Sizes, and the flags that tell how far an interrupted move got.
        let mut sizes: HashMap<u32, u64> = HashMap::with_capacity(uids.len());
        let mut touched: HashMap<u32, Touched> = HashMap::with_capacity(uids.len());
        for set in uid_set_chunks(&uids, SIZE_CHUNK) {
            let command = format!("UID FETCH {set} (UID RFC822.SIZE FLAGS)");
            self.run(&command, COMMAND_BUDGET, &mut |r| {
                if let Response::Fetch(_, attrs) = r {
                    let mut uid = None;
                    let mut size = None;
                    let mut flags = None;
                    for a in attrs {
                        match a {
                            AttributeValue::Uid(u) => uid = Some(*u),
                            AttributeValue::Rfc822Size(s) => size = Some(u64::from(*s)),
                            AttributeValue::Flags(f) => flags = Some(Touched::of(f)),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(size)) = (uid, size) {
                        sizes.insert(uid, size);
                        if let Some(flags) = flags {
                            touched.insert(uid, flags);
                        }
                    }
                }
            })
            .await
            .map_err(|e| e.into_fetch("UID FETCH (RFC822.SIZE FLAGS)"))?;
        }
        self.listed = touched;
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

    async fn fetch_many(
        &mut self,
        messages: &[UpstreamMessage],
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        match messages {
            [] => Ok(Vec::new()),
            [one] => Ok(vec![self.fetch(one).await?]),
            _ => self.fetch_bodies(messages).await,
        }
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
        self.apply_after_import(uid, verdict).await?;
        tracing::debug!(host = %self.host, key = %message.key, ?verdict, "IMAP message marked");
        Ok(())
    }

    async fn mark_many(
        &mut self,
        messages: &[UpstreamMessage],
        verdict: Verdict,
    ) -> Result<(), FetchError> {
        let uids = messages
            .iter()
            .map(|m| self.uid_of(m))
            .collect::<Result<Vec<u32>, _>>()?;
        self.apply_after_import_many(uids, verdict).await?;
        tracing::debug!(host = %self.host, count = messages.len(), ?verdict, "IMAP messages marked");
        Ok(())
    }

    async fn finish(mut self) -> Result<(), FetchError> {
        if self.conn.broken() {
            if !self.pending_expunge.is_empty() {
                return Err(FetchError::Io(format!(
                    "the session with {} broke before EXPUNGE: messages flagged \\Deleted stay until the next expunge",
                    self.host
                )));
            }
            return Ok(());
        }
        self.expunge_pending().await?;
        self.logout().await;
        Ok(())
    }
}
