//! A small stateful IMAP server on loopback for the tests that cut the
//! connection in the middle of a mark: folders of messages with UIDs and
//! flags, the commands the client sends (SELECT/EXAMINE, UID SEARCH with
//! the keys it uses, UID FETCH, UID STORE, UID COPY with COPYUID, UID
//! EXPUNGE, EXPUNGE, LIST, CREATE), no MOVE, UIDPLUS on request, and a cut:
//! the connection dropped when the n-th command arrives, before or after
//! the server carried it out. Every connection shares the one state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message of a folder.
#[derive(Debug, Clone)]
pub(super) struct Msg {
    pub(super) uid: u32,
    pub(super) flags: BTreeSet<String>,
    pub(super) raw: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(super) struct Folder {
    pub(super) uidvalidity: u32,
    next_uid: u32,
    pub(super) msgs: Vec<Msg>,
}

impl Folder {
    fn new(uidvalidity: u32) -> Folder {
        Folder {
            uidvalidity,
            next_uid: 1,
            msgs: Vec::new(),
        }
    }

    fn add(&mut self, raw: Vec<u8>, flags: BTreeSet<String>) -> u32 {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.msgs.push(Msg { uid, flags, raw });
        uid
    }
}

/// When a cut happens, relative to carrying the command out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// The command never reaches the server's state.
    Before,
    /// The server carries it out; its reply is lost.
    After,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) folders: BTreeMap<String, Folder>,
    uidplus: bool,
    /// Commands received so far, over every connection (tags stripped).
    pub(super) seen: Vec<String>,
    /// Drop the connection at this index of `seen`.
    cut: Option<(usize, When)>,
    pub(super) cut_fired: bool,
}

impl State {
    pub(super) fn folder(&self, name: &str) -> &Folder {
        &self.folders[name]
    }

    /// Adds a message to a folder (created when missing).
    pub(super) fn deliver(&mut self, folder: &str, raw: &[u8], flags: &[&str]) -> u32 {
        let next = 100 + self.folders.len() as u32;
        self.folders
            .entry(folder.to_string())
            .or_insert_with(|| Folder::new(next))
            .add(raw.to_vec(), flags.iter().map(|f| f.to_string()).collect())
    }

    /// Arms a cut at the `n`-th command from now.
    pub(super) fn cut_at(&mut self, n: usize, when: When) {
        self.cut = Some((self.seen.len() + n, when));
        self.cut_fired = false;
    }

    pub(super) fn disarm(&mut self) {
        self.cut = None;
    }
}

pub(super) type Shared = Arc<Mutex<State>>;

/// Starts the server with an INBOX (UIDVALIDITY 77); returns its port.
pub(super) async fn start(uidplus: bool) -> (u16, Shared) {
    let state = Arc::new(Mutex::new(State {
        uidplus,
        ..State::default()
    }));
    state
        .lock()
        .unwrap()
        .folders
        .insert("INBOX".into(), Folder::new(77));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(session(socket, shared.clone()));
        }
    });
    (port, state)
}

async fn session(socket: tokio::net::TcpStream, state: Shared) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    if write
        .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut selected: Option<(String, bool)> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((tag, command)) = line.split_once(' ') else {
            return;
        };
        let (reply, close) = {
            let mut s = state.lock().unwrap();
            let index = s.seen.len();
            s.seen.push(command.to_string());
            let cut = match s.cut {
                Some((at, when)) if at == index => {
                    s.cut_fired = true;
                    Some(when)
                }
                _ => None,
            };
            if cut == Some(When::Before) {
                return;
            }
            let reply = handle(&mut s, &mut selected, tag, command);
            if cut == Some(When::After) {
                return;
            }
            let close = command.eq_ignore_ascii_case("LOGOUT");
            (reply, close)
        };
        if write.write_all(&reply).await.is_err() || close {
            return;
        }
    }
}

/// Carries one command out; returns the whole reply (untagged + tagged).
fn handle(s: &mut State, selected: &mut Option<(String, bool)>, tag: &str, line: &str) -> Vec<u8> {
    let mut words = Words::new(line);
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let mut out = Vec::new();
    let ok = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(format!("{tag} OK {text}\r\n").as_bytes());
    };
    match verb.as_str() {
        "LOGIN" => ok(&mut out, "logged in"),
        "CAPABILITY" => {
            let extra = if s.uidplus { " UIDPLUS" } else { "" };
            out.extend_from_slice(format!("* CAPABILITY IMAP4rev1{extra}\r\n").as_bytes());
            ok(&mut out, "done");
        }
        "LIST" => {
            let _reference = words.next();
            let pattern = words.next().unwrap_or_default();
            if pattern.is_empty() {
                out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
            } else if s.folders.contains_key(&pattern) {
                out.extend_from_slice(
                    format!("* LIST (\\HasNoChildren) \".\" \"{pattern}\"\r\n").as_bytes(),
                );
            }
            ok(&mut out, "done");
        }
        "CREATE" => {
            let name = words.next().unwrap_or_default();
            let next = 100 + s.folders.len() as u32;
            s.folders.entry(name).or_insert_with(|| Folder::new(next));
            ok(&mut out, "created");
        }
        "SUBSCRIBE" | "NOOP" => ok(&mut out, "done"),
        "SELECT" | "EXAMINE" => {
            let name = words.next().unwrap_or_default();
            let read_only = verb == "EXAMINE";
            let Some(f) = s.folders.get(&name) else {
                *selected = None;
                out.extend_from_slice(format!("{tag} NO no such mailbox\r\n").as_bytes());
                return out;
            };
            out.extend_from_slice(
                format!(
                    "* FLAGS (\\Seen \\Deleted)\r\n* {} EXISTS\r\n* OK [UIDVALIDITY {}] v\r\n* OK [PERMANENTFLAGS ({})] p\r\n{tag} OK [{}] selected\r\n",
                    f.msgs.len(),
                    f.uidvalidity,
                    if read_only { "" } else { "\\Seen \\Deleted \\*" },
                    if read_only { "READ-ONLY" } else { "READ-WRITE" },
                )
                .as_bytes(),
            );
            *selected = Some((name, read_only));
        }
        "UID" => {
            let Some((name, read_only)) = selected.clone() else {
                out.extend_from_slice(format!("{tag} BAD nothing selected\r\n").as_bytes());
                return out;
            };
            let sub = words.next().unwrap_or_default().to_ascii_uppercase();
            let uidplus = s.uidplus;
            let writes = matches!(sub.as_str(), "STORE" | "EXPUNGE");
            if writes && read_only {
                out.extend_from_slice(format!("{tag} NO read-only\r\n").as_bytes());
                return out;
            }
            match sub.as_str() {
                "SEARCH" => {
                    let tokens: Vec<String> = words.collect();
                    let f = &s.folders[&name];
                    let mut found = Vec::new();
                    for m in &f.msgs {
                        let mut at = 0;
                        let mut all = true;
                        while at < tokens.len() {
                            all &= matches(m, &tokens, &mut at);
                        }
                        if all {
                            found.push(m.uid.to_string());
                        }
                    }
                    let list = if found.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", found.join(" "))
                    };
                    out.extend_from_slice(format!("* SEARCH{list}\r\n").as_bytes());
                    ok(&mut out, "searched");
                }
                "FETCH" => {
                    let set = words.next().unwrap_or_default();
                    let items: String = words.collect::<Vec<_>>().join(" ").to_ascii_uppercase();
                    let f = &s.folders[&name];
                    for (i, m) in f.msgs.iter().enumerate() {
                        if !in_set(m.uid, &set, f) {
                            continue;
                        }
                        out.extend_from_slice(
                            format!("* {} FETCH (UID {}", i + 1, m.uid).as_bytes(),
                        );
                        if items.contains("RFC822.SIZE") {
                            out.extend_from_slice(
                                format!(" RFC822.SIZE {}", m.raw.len()).as_bytes(),
                            );
                        }
                        if items.contains("FLAGS") {
                            let flags: Vec<&str> = m.flags.iter().map(String::as_str).collect();
                            out.extend_from_slice(
                                format!(" FLAGS ({})", flags.join(" ")).as_bytes(),
                            );
                        }
                        if items.contains("BODY.PEEK[HEADER]") {
                            let head = header_block(&m.raw);
                            out.extend_from_slice(
                                format!(" BODY[HEADER] {{{}}}\r\n", head.len()).as_bytes(),
                            );
                            out.extend_from_slice(head);
                        } else if items.contains("BODY.PEEK[]") {
                            out.extend_from_slice(
                                format!(" BODY[] {{{}}}\r\n", m.raw.len()).as_bytes(),
                            );
                            out.extend_from_slice(&m.raw);
                        }
                        out.extend_from_slice(b")\r\n");
                    }
                    ok(&mut out, "fetched");
                }
                "STORE" => {
                    let set = words.next().unwrap_or_default();
                    let mode = words.next().unwrap_or_default().to_ascii_uppercase();
                    let flags: Vec<String> = words
                        .flat_map(|w| {
                            w.trim_matches(|c| c == '(' || c == ')')
                                .split_whitespace()
                                .map(str::to_string)
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    let f = s.folders.get_mut(&name).unwrap();
                    let snapshot = f.clone();
                    for m in &mut f.msgs {
                        if in_set(m.uid, &set, &snapshot) {
                            for flag in &flags {
                                if mode.starts_with('+') {
                                    m.flags.insert(flag.clone());
                                } else {
                                    m.flags.remove(flag);
                                }
                            }
                        }
                    }
                    ok(&mut out, "stored");
                }
                "COPY" => {
                    let set = words.next().unwrap_or_default();
                    let target = words.next().unwrap_or_default();
                    if !s.folders.contains_key(&target) {
                        out.extend_from_slice(
                            format!("{tag} NO [TRYCREATE] no such mailbox\r\n").as_bytes(),
                        );
                        return out;
                    }
                    let source = s.folders[&name].clone();
                    let copies: Vec<Msg> = source
                        .msgs
                        .iter()
                        .filter(|m| in_set(m.uid, &set, &source))
                        .cloned()
                        .collect();
                    let t = s.folders.get_mut(&target).unwrap();
                    let (mut from, mut to) = (Vec::new(), Vec::new());
                    for m in copies {
                        from.push(m.uid.to_string());
                        to.push(t.add(m.raw, m.flags).to_string());
                    }
                    if uidplus && !from.is_empty() {
                        ok(
                            &mut out,
                            &format!(
                                "[COPYUID {} {} {}] copied",
                                t.uidvalidity,
                                from.join(","),
                                to.join(",")
                            ),
                        );
                    } else {
                        ok(&mut out, "copied");
                    }
                }
                "EXPUNGE" if uidplus => {
                    let set = words.next().unwrap_or_default();
                    expunge(s.folders.get_mut(&name).unwrap(), Some(&set), &mut out);
                    ok(&mut out, "expunged");
                }
                _ => out.extend_from_slice(format!("{tag} BAD unknown UID command\r\n").as_bytes()),
            }
        }
        "EXPUNGE" => match selected.clone() {
            Some((name, false)) => {
                expunge(s.folders.get_mut(&name).unwrap(), None, &mut out);
                ok(&mut out, "expunged");
            }
            _ => out.extend_from_slice(format!("{tag} NO not selected read-write\r\n").as_bytes()),
        },
        "LOGOUT" => {
            out.extend_from_slice(b"* BYE bye\r\n");
            ok(&mut out, "done");
        }
        _ => out.extend_from_slice(format!("{tag} BAD unknown command\r\n").as_bytes()),
    }
    out
}

/// Removes the \Deleted messages (of a UID set, when given).
fn expunge(f: &mut Folder, set: Option<&str>, out: &mut Vec<u8>) {
    let snapshot = f.clone();
    let mut i = 0;
    while i < f.msgs.len() {
        let m = &f.msgs[i];
        if m.flags.contains("\\Deleted") && set.is_none_or(|set| in_set(m.uid, set, &snapshot)) {
            f.msgs.remove(i);
            out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
        } else {
            i += 1;
        }
    }
}

/// Whether `uid` is in a UID set like `1:3,7,9:*`.
fn in_set(uid: u32, set: &str, f: &Folder) -> bool {
    let top = f.msgs.iter().map(|m| m.uid).max().unwrap_or(0);
    let value = |s: &str| if s == "*" { Some(top) } else { s.parse().ok() };
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => match (value(a), value(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&uid),
            _ => false,
        },
        None => value(part) == Some(uid),
    })
}

/// One SEARCH key at `tokens[*at]`, advancing past it.
fn matches(m: &Msg, tokens: &[String], at: &mut usize) -> bool {
    let next = |at: &mut usize| {
        let t = tokens.get(*at).cloned().unwrap_or_default();
        *at += 1;
        t
    };
    let key = next(at).to_ascii_uppercase();
    let number = |at: &mut usize| next(at).parse::<usize>().unwrap_or(0);
    match key.as_str() {
        "ALL" => true,
        "SEEN" => m.flags.contains("\\Seen"),
        "UNSEEN" => !m.flags.contains("\\Seen"),
        "DELETED" => m.flags.contains("\\Deleted"),
        "UNDELETED" => !m.flags.contains("\\Deleted"),
        "KEYWORD" => {
            let k = next(at);
            m.flags.iter().any(|f| f.eq_ignore_ascii_case(&k))
        }
        "UNKEYWORD" => {
            let k = next(at);
            !m.flags.iter().any(|f| f.eq_ignore_ascii_case(&k))
        }
        "LARGER" => m.raw.len() > number(at),
        "SMALLER" => m.raw.len() < number(at),
        "HEADER" => {
            let (field, needle) = (next(at), next(at).to_ascii_lowercase());
            header_values(&m.raw, &field)
                .iter()
                .any(|v| v.to_ascii_lowercase().contains(&needle))
        }
        "NOT" => !matches(m, tokens, at),
        "OR" => {
            let a = matches(m, tokens, at);
            let b = matches(m, tokens, at);
            a || b
        }
        _ => false,
    }
}

fn header_block(raw: &[u8]) -> &[u8] {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(raw.len());
    &raw[..end]
}

/// The unfolded values of every header field named `name`.
fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(header_block(raw)).replace("\r\n ", " ");
    text.split("\r\n")
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

/// Words of a command line: atoms, and quoted strings unquoted.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(line: &'a str) -> Words<'a> {
        Words { rest: line }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        if self.rest.is_empty() {
            return None;
        }
        if let Some(body) = self.rest.strip_prefix('"') {
            let mut word = String::new();
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            word.push(e);
                        }
                    }
                    '"' => {
                        self.rest = &body[i + 1..];
                        return Some(word);
                    }
                    c => word.push(c),
                }
            }
            self.rest = "";
            return Some(word);
        }
        // A parenthesised list stays one word (FETCH items, STORE flags).
        let end = if self.rest.starts_with('(') {
            self.rest
                .find(')')
                .map(|i| i + 1)
                .unwrap_or(self.rest.len())
        } else {
            self.rest.find(' ').unwrap_or(self.rest.len())
        };
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word.to_string())
    }
}
