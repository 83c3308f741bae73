//! `[submission]` and `[[submission.account]]`: the relay endpoint for the
//! organisation's own systems (RFC 6409 submission with STARTTLS, RFC 8314
//! implicit TLS), its caps, the failed-AUTH throttle and the accounts that
//! may log in. Validated like the rest of the config: every problem, with
//! its key.
//!
//! Accounts carry only an argon2id password *hash* (a PHC string, inline or
//! in a file only its owner can read), never a password. A hash is never
//! shown: not in a problem, not in Debug output. `[relay]` is the upstream
//! relay the gateway sends through, so accounts written as
//! `[[relay.account]]` are refused with a pointer to the right name.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{MailboxConfig, Quantity, duration, positive, size};
use crate::mail::Secret;

/// Largest argon2 memory cost accepted in a hash, in KiB (2 GiB, RFC 9106's
/// largest recommendation): a mistyped parameter must not let every AUTH
/// attempt allocate without bound.
pub const MAX_M_COST_KIB: u32 = 2 * 1024 * 1024;
/// Largest argon2 time cost (passes) accepted in a hash.
pub const MAX_T_COST: u32 = 64;
/// Longest `auth_failure_delay`.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(60);
/// The failure delay grows by `auth_failure_delay` per recent failure of a
/// client, up to this many times it.
pub const MAX_DELAY_STEPS: u32 = 5;

#[derive(Debug, Clone)]
pub struct SubmissionConfig {
    /// Listeners offering STARTTLS (RFC 6409, port 587 style).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (RFC 8314, port 465 style).
    pub listen_tls: Vec<SocketAddr>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_per_minute_per_ip: u32,
    pub idle_timeout: Duration,
    /// As `smtp.min_data_rate`, for this listener.
    pub min_data_rate: u64,
    /// Bytes after dot-unstuffing; default `limits.max_message_size`.
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Failed AUTHs from one client (IPv4 address, IPv6 /64) within
    /// `auth_failure_window` that block it for `auth_block`.
    pub auth_failures_per_ip: u32,
    pub auth_failure_window: Duration,
    pub auth_block: Duration,
    /// Delay before answering a failed AUTH; grows with that client's
    /// recent failures (see `auth::throttle`). Zero: no delay.
    pub auth_failure_delay: Duration,
    /// At least one.
    pub accounts: Vec<AccountConfig>,
}

/// One `[[submission.account]]`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// As written; matched ignoring ASCII case, unique that way.
    pub user: String,
    pub password_hash: HashSource,
    /// Names of configured `[[mailbox]]`es, at least one, no repeats.
    pub mailboxes: Vec<String>,
    /// Client networks allowed to log in as this account; empty: any.
    pub networks: Vec<IpNet>,
    pub reply_to: ReplyToPolicy,
}

/// What happens to a submitted message's Reply-To (the ticket rules apply it).
pub use crate::mail::ReplyToPolicy;

/// Where an account's argon2id PHC string is: in the config (checked when
/// the config is read) or in a file (checked when read, at check-config
/// and again at startup). Debug shows neither the hash nor the path.
#[derive(Clone)]
pub enum HashSource {
    Inline(Secret),
    File(PathBuf),
}

impl std::fmt::Debug for HashSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashSource::Inline(_) => "Inline(<not shown>)",
            HashSource::File(_) => "File(<not shown>)",
        })
    }
}

/// Why a hash (or its file) is not usable. Never holds the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a PHC string (make one with `mailgate hash-password`; value not shown)")]
    NotPhc,
    #[error(
        "not an argon2id hash: the PHC string must start with $argon2id$ (make one with `mailgate hash-password`; value not shown)"
    )]
    NotArgon2id,
    #[error("the PHC string has no salt or no hash part (value not shown)")]
    Incomplete,
    #[error("invalid argon2 parameters or version in the PHC string (value not shown)")]
    BadParams,
    #[error(
        "argon2 parameters too costly for a login (m at most {MAX_M_COST_KIB} KiB, t at most {MAX_T_COST}; value not shown)"
    )]
    TooCostly,
    #[error(
        "holds a PHC string, not a file path: put it in password_hash instead (value not shown)"
    )]
    HashAsPath,
    #[error("file not found: {path}")]
    FileMissing { path: String },
    #[error("cannot read {path}: {detail}")]
    FileUnreadable { path: String, detail: String },
    #[error(
        "{path} is readable or writable by group or others (mode {mode:o}); run chmod 600 on it"
    )]
    FilePermissions { path: String, mode: u32 },
    #[error("{path} is empty")]
    FileEmpty { path: String },
    #[error("{path}: {problem}")]
    InFile {
        path: String,
        problem: Box<HashError>,
    },
}

/// Checks that `phc` is an argon2id PHC string this gateway can verify at
/// a bounded cost.
pub fn check_phc(phc: &str) -> Result<(), HashError> {
    use argon2::password_hash::phc::PasswordHash;
    let parsed = PasswordHash::new(phc).map_err(|_| HashError::NotPhc)?;
    if parsed.algorithm.as_str() != argon2::ARGON2ID_IDENT.as_str() {
        return Err(HashError::NotArgon2id);
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(HashError::Incomplete);
    }
    if let Some(v) = parsed.version
        && argon2::Version::try_from(v).is_err()
    {
        return Err(HashError::BadParams);
    }
    let params = argon2::Params::try_from(&parsed).map_err(|_| HashError::BadParams)?;
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST {
        return Err(HashError::TooCostly);
    }
    Ok(())
}

/// The PHC string of `source`: the inline one, or the file's contents
/// (trailing line end removed) once the file is proven private. Checked
/// with [`check_phc`].
pub fn load_hash(source: &HashSource) -> Result<Secret, HashError> {
    match source {
        HashSource::Inline(hash) => {
            check_phc(hash.expose())?;
            Ok(hash.clone())
        }
        HashSource::File(path) => read_hash_file(path),
    }
}

fn read_hash_file(path: &Path) -> Result<Secret, HashError> {
    let shown = path.display().to_string();
    if shown.starts_with('$') {
        return Err(HashError::HashAsPath);
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HashError::FileMissing { path: shown });
        }
        Err(e) => {
            return Err(HashError::FileUnreadable {
                path: shown,
                detail: e.to_string(),
            });
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(HashError::FilePermissions { path: shown, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|e| HashError::FileUnreadable {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let hash = text.trim();
    if hash.is_empty() {
        return Err(HashError::FileEmpty { path: shown });
    }
    check_phc(hash).map_err(|problem| HashError::InFile {
        path: shown,
        problem: Box::new(problem),
    })?;
    Ok(Secret::new(hash))
}

/// The problem for a key the config does not know, when it is one of the
/// submission mistakes worth explaining: a plain password in an account,
/// or accounts under `[relay]`.
pub(super) fn ignored_key_problem(key: &str) -> Option<String> {
    if key == "relay.account"
        || key.starts_with("relay.account[")
        || key.starts_with("relay.account.")
    {
        return Some(format!(
            "{key}: submission accounts are [[submission.account]]; [relay] is the upstream relay the gateway sends through"
        ));
    }
    let rest = key.strip_prefix("submission.account[")?;
    let (_, field) = rest.split_once("].")?;
    (field == "password").then(|| {
        format!(
            "{key}: only password hashes are accepted, never a password: run `mailgate hash-password` and put its output in password_hash or password_hash_file (value not shown)"
        )
    })
}

// ---- raw shape, as written in TOML ----

/// One address or a list; `""` and `[]` both mean none.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn list(&self) -> Vec<String> {
        match self {
            Addresses::One(s) if s.trim().is_empty() => Vec::new(),
            Addresses::One(s) => vec![s.clone()],
            Addresses::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawSubmission {
    enabled: bool,
    listen: Addresses,
    listen_tls: Addresses,
    max_connections: i64,
    max_connections_per_ip: i64,
    connections_per_minute_per_ip: i64,
    idle_timeout: Quantity,
    min_data_rate: i64,
    max_message_size: Option<Quantity>,
    max_recipients: i64,
    auth_failures_per_ip: i64,
    auth_failure_window: Quantity,
    auth_block: Quantity,
    auth_failure_delay: Quantity,
    account: Vec<RawAccount>,
}

impl Default for RawSubmission {
    fn default() -> Self {
        RawSubmission {
            enabled: true,
            listen: Addresses::Many(vec!["127.0.0.1:2587".into()]),
            listen_tls: Addresses::Many(vec!["127.0.0.1:2466".into()]),
            max_connections: 64,
            max_connections_per_ip: 16,
            connections_per_minute_per_ip: 300,
            idle_timeout: Quantity::Text("5m".into()),
            min_data_rate: 500,
            max_message_size: None,
            max_recipients: 100,
            auth_failures_per_ip: 5,
            auth_failure_window: Quantity::Text("10m".into()),
            auth_block: Quantity::Text("15m".into()),
            auth_failure_delay: Quantity::Text("1s".into()),
            account: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawAccount {
    user: Option<String>,
    password_hash: Option<String>,
    password_hash_file: Option<String>,
    mailboxes: Vec<String>,
    networks: Vec<String>,
    reply_to: Option<String>,
}

/// What the rest of the config already listens on, to catch a submission
/// listener on the same socket.
pub(super) struct Taken<'a> {
    pub smtp_listen: &'a [SocketAddr],
    pub smtp_listen_tls: &'a [SocketAddr],
    pub http_listen: SocketAddr,
    /// `[[mailbox]]`es, for the accounts' `mailboxes`.
    pub mailboxes: &'a [MailboxConfig],
    /// `limits.max_message_size`, the default.
    pub max_message_size: usize,
}

impl Taken<'_> {
    fn sockets(&self) -> Vec<(String, SocketAddr)> {
        let named = |key: &str, list: &[SocketAddr]| {
            let list = list.iter().enumerate();
            list.map(|(i, a)| (format!("{key}[{i}]"), *a))
                .collect::<Vec<_>>()
        };
        let mut all = named("smtp.listen", self.smtp_listen);
        all.extend(named("smtp.listen_tls", self.smtp_listen_tls));
        all.push(("http.listen".into(), self.http_listen));
        all
    }
}

/// `None` when `enabled = false` (the section is still checked).
pub(super) fn validate(
    raw: &RawSubmission,
    taken: &Taken<'_>,
    err: &mut impl FnMut(&str, String),
) -> Option<SubmissionConfig> {
    let mut seen = taken.sockets();
    let mut sockets = |key: &str, list: &Addresses, err: &mut dyn FnMut(&str, String)| {
        let mut out = Vec::new();
        for (i, s) in list.list().iter().enumerate() {
            let k = format!("{key}[{i}]");
            match s.trim().parse::<SocketAddr>() {
                Ok(a) => {
                    if let Some((other, _)) = seen.iter().find(|(_, b)| *b == a) {
                        err(&k, format!("{a} is already used by {other}"));
                    } else {
                        seen.push((k, a));
                        out.push(a);
                    }
                }
                Err(_) => err(&k, format!("invalid socket address {s:?}")),
            }
        }
        out
    };
    let listen = sockets("submission.listen", &raw.listen, err);
    let listen_tls = sockets("submission.listen_tls", &raw.listen_tls, err);
    if raw.enabled && listen.is_empty() && listen_tls.is_empty() {
        err(
            "submission.listen",
            "no submission listener (listen and listen_tls are both empty); set enabled = false to turn submission off".into(),
        );
    }
    let max_connections = positive("submission.max_connections", raw.max_connections, err);
    let max_connections_per_ip = positive(
        "submission.max_connections_per_ip",
        raw.max_connections_per_ip,
        err,
    );
    let rate = positive(
        "submission.connections_per_minute_per_ip",
        raw.connections_per_minute_per_ip,
        err,
    );
    let idle_timeout = duration("submission.idle_timeout", &raw.idle_timeout, err);
    let min_data_rate = super::non_negative("submission.min_data_rate", raw.min_data_rate, err);
    let max_message_size = match &raw.max_message_size {
        Some(q) => size("submission.max_message_size", q, err),
        None => taken.max_message_size,
    };
    let max_recipients = positive("submission.max_recipients", raw.max_recipients, err);
    let auth_failures_per_ip = positive(
        "submission.auth_failures_per_ip",
        raw.auth_failures_per_ip,
        err,
    );
    let auth_failure_window = duration(
        "submission.auth_failure_window",
        &raw.auth_failure_window,
        err,
    );
    let auth_block = duration("submission.auth_block", &raw.auth_block, err);
    let auth_failure_delay = failure_delay(&raw.auth_failure_delay, err);
    // The block starts with the failure that causes it, before its delay:
    // a block no longer than the longest delay would be over before the
    // client hears its 421.
    let longest_delay = auth_failure_delay.saturating_mul(MAX_DELAY_STEPS);
    if !auth_block.is_zero() && auth_block <= longest_delay {
        err(
            "submission.auth_block",
            format!(
                "{} is not longer than the longest failure delay ({} = {MAX_DELAY_STEPS} x auth_failure_delay): the block would end before the client is told",
                humantime::format_duration(auth_block),
                humantime::format_duration(longest_delay)
            ),
        );
    }

    let mut accounts = Vec::new();
    let mut users = BTreeSet::new();
    for (i, a) in raw.account.iter().enumerate() {
        let key = format!("submission.account[{i}]");
        let user = a.user.as_deref().unwrap_or_default();
        if !user.is_empty() && !users.insert(user.to_ascii_lowercase()) {
            err(
                &format!("{key}.user"),
                format!("duplicate user {user:?} (user names are compared ignoring case)"),
            );
        }
        if let Some(account) = validate_account(&key, a, taken.mailboxes, err) {
            accounts.push(account);
        }
    }
    if raw.account.is_empty() {
        err(
            "submission.account",
            "no [[submission.account]]: nobody could log in; add one, or remove [submission]"
                .into(),
        );
    }
    raw.enabled.then_some(SubmissionConfig {
        listen,
        listen_tls,
        max_connections,
        max_connections_per_ip,
        connections_per_minute_per_ip: u32::try_from(rate).unwrap_or(u32::MAX),
        idle_timeout,
        min_data_rate,
        max_message_size,
        max_recipients,
        auth_failures_per_ip: u32::try_from(auth_failures_per_ip).unwrap_or(u32::MAX),
        auth_failure_window,
        auth_block,
        auth_failure_delay,
        accounts,
    })
}

/// Like [`duration`], but zero (no delay) is allowed, and at most a minute.
fn failure_delay(q: &Quantity, err: &mut impl FnMut(&str, String)) -> Duration {
    const KEY: &str = "submission.auth_failure_delay";
    let d = match q {
        Quantity::Number(n) if *n >= 0 => Some(Duration::from_secs(*n as u64)),
        Quantity::Number(_) => None,
        Quantity::Text(s) if s.trim() == "0" => Some(Duration::ZERO),
        Quantity::Text(s) => humantime::parse_duration(s.trim()).ok(),
    };
    match d {
        Some(d) if d <= MAX_FAILURE_DELAY => d,
        Some(_) => {
            err(KEY, format!("{} is longer than 1m", q.describe()));
            MAX_FAILURE_DELAY
        }
        None => {
            err(
                KEY,
                format!(
                    "invalid duration {} (use seconds or a unit, e.g. \"1s\"; 0 for none)",
                    q.describe()
                ),
            );
            Duration::from_secs(1)
        }
    }
}

fn validate_account(
    key: &str,
    a: &RawAccount,
    mailboxes: &[MailboxConfig],
    err: &mut impl FnMut(&str, String),
) -> Option<AccountConfig> {
    let k = |field: &str| format!("{key}.{field}");
    let mut ok = true;
    let user = a.user.clone().unwrap_or_default();
    if a.user.is_none() {
        err(
            &k("user"),
            "missing: the user name the system logs in with".into(),
        );
        ok = false;
    } else if user.is_empty()
        || user.len() > 255
        || user.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        err(
            &k("user"),
            format!("invalid user name {user:?} (1 to 255 bytes, no spaces or control characters)"),
        );
        ok = false;
    }

    let password_hash = match (&a.password_hash, &a.password_hash_file) {
        (Some(_), Some(_)) => {
            err(
                &k("password_hash"),
                "set password_hash or password_hash_file, not both".into(),
            );
            None
        }
        (None, None) => {
            err(
                &k("password_hash"),
                "missing: set password_hash (an argon2id PHC string from `mailgate hash-password`) or password_hash_file".into(),
            );
            None
        }
        (Some(inline), None) => Some((
            "password_hash",
            HashSource::Inline(Secret::new(inline.trim())),
        )),
        (None, Some(path)) if path.trim().is_empty() => {
            err(
                &k("password_hash_file"),
                "is empty: give the path of the file that holds the hash".into(),
            );
            None
        }
        (None, Some(path)) => Some(("password_hash_file", HashSource::File(PathBuf::from(path)))),
    };
    let password_hash = match password_hash {
        Some((field, source)) => match load_hash(&source) {
            Ok(_) => Some(source),
            Err(e) => {
                err(&k(field), e.to_string());
                None
            }
        },
        None => None,
    };

    let mut names: Vec<String> = Vec::new();
    if a.mailboxes.is_empty() {
        err(
            &k("mailboxes"),
            "at least one [[mailbox]] name is required: the mailboxes this account may send as"
                .into(),
        );
        ok = false;
    }
    for (j, name) in a.mailboxes.iter().enumerate() {
        let mkey = format!("{key}.mailboxes[{j}]");
        let name = name.trim();
        if !mailboxes.iter().any(|m| m.name == name) {
            err(&mkey, format!("no [[mailbox]] is named {name:?}"));
            ok = false;
        } else if names.iter().any(|n| n == name) {
            err(&mkey, format!("mailbox {name:?} is listed twice"));
        } else {
            names.push(name.to_string());
        }
    }

    let mut networks = Vec::new();
    for (j, n) in a.networks.iter().enumerate() {
        match network(n.trim()) {
            Ok(net) => networks.push(net),
            Err(msg) => {
                err(&format!("{key}.networks[{j}]"), msg);
                ok = false;
            }
        }
    }

    let reply_to = match a.reply_to.as_deref() {
        None | Some("set_when_absent") => ReplyToPolicy::SetWhenAbsent,
        Some("force") => ReplyToPolicy::Force,
        Some("keep") => ReplyToPolicy::Keep,
        Some(other) => {
            err(
                &k("reply_to"),
                format!("must be \"set_when_absent\", \"force\" or \"keep\", not {other:?}"),
            );
            ReplyToPolicy::SetWhenAbsent
        }
    };
    let password_hash = password_hash?;
    ok.then_some(AccountConfig {
        user,
        password_hash,
        mailboxes: names,
        networks,
        reply_to,
    })
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host).
fn network(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net = text.parse::<IpNet>().map_err(|_| {
        format!("invalid network {text:?} (an address, or address/prefix like \"10.0.0.0/8\")")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[server]\ndomains=[\"a.test\"]\n[limits]\nmax_message_size=\"20MB\"\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@a.test\"]\n[[mailbox]]\nname=\"sales\"\naddresses=[\"sales@a.test\"]\n";
    /// `mailgate hash-password` of "correct horse".
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$qaBRHC7qseAUyrHgV98T8A$aIzzAws9p0lnPm4IiOV3WVrA7G7WMuRmBGp3XF3/QWA";

    fn parse(submission: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{submission}")).map_err(|e| e.problems().join("\n"))
    }

    fn problems(submission: &str) -> String {
        parse(submission).expect_err("config accepted")
    }

    fn account(extra: &str) -> String {
        format!(
            "[[submission.account]]\nuser=\"crm\"\npassword_hash=\"{HASH}\"\nmailboxes=[\"support\"]\n{extra}"
        )
    }

    #[test]
    fn absent_means_no_submission() {
        assert!(parse("").unwrap().submission.is_none());
    }

    #[test]
    fn defaults() {
        let c = parse(&format!("[submission]\n{}", account(""))).unwrap();
        let s = c.submission.unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:2587".parse().unwrap()]);
        assert_eq!(s.listen_tls, vec!["127.0.0.1:2466".parse().unwrap()]);
        assert_eq!(s.max_message_size, 20_000_000);
        assert_eq!((s.max_connections, s.max_connections_per_ip), (64, 16));
        assert_eq!(s.connections_per_minute_per_ip, 300);
        assert_eq!(s.idle_timeout, Duration::from_secs(300));
        assert_eq!(s.min_data_rate, 500);
        assert_eq!(s.max_recipients, 100);
        assert_eq!(s.auth_failures_per_ip, 5);
        assert_eq!(s.auth_failure_window, Duration::from_secs(600));
        assert_eq!(s.auth_block, Duration::from_secs(900));
        assert_eq!(s.auth_failure_delay, Duration::from_secs(1));
        let a = &s.accounts[0];
        assert_eq!(a.user, "crm");
        assert_eq!(a.mailboxes, vec!["support".to_string()]);
        assert!(a.networks.is_empty());
        assert_eq!(a.reply_to, ReplyToPolicy::SetWhenAbsent);
        assert!(matches!(&a.password_hash, HashSource::Inline(h) if h.expose() == HASH));
        // The section alone (accounts only) implies it; no [submission] header needed.
        assert!(parse(&account("")).unwrap().submission.is_some());
    }

    #[test]
    fn listeners_and_caps() {
        let c = parse(&format!(
            "[submission]\nlisten=\"\"\nlisten_tls=\"[::1]:4650\"\nmax_message_size=\"2MB\"\nauth_failure_delay=0\nauth_failure_window=\"1m\"\n{}",
            account("networks=[\"10.0.0.0/8\", \"::1\", \"2001:db8::/32\"]\nreply_to=\"force\"\n")
        ))
        .unwrap();
        let s = c.submission.unwrap();
        assert!(s.listen.is_empty());
        assert_eq!(s.listen_tls, vec!["[::1]:4650".parse().unwrap()]);
        assert_eq!(s.max_message_size, 2_000_000);
        assert_eq!(s.auth_failure_delay, Duration::ZERO);
        assert_eq!(s.auth_failure_window, Duration::from_secs(60));
        let a = &s.accounts[0];
        assert_eq!(a.reply_to, ReplyToPolicy::Force);
        assert_eq!(
            a.networks,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap(),
                "2001:db8::/32".parse().unwrap()
            ]
        );
        // enabled = false: checked, but no listener.
        let c = parse(&format!(
            "[submission]\nenabled=false\nlisten=[]\nlisten_tls=[]\n{}",
            account("")
        ))
        .unwrap();
        assert!(c.submission.is_none());
    }

    /// The commented-out example in config/mailgate.toml, uncommented,
    /// is a valid config.
    #[test]
    fn the_documented_example_validates() {
        let example = crate::config::EMBEDDED_DEFAULT;
        let start = example
            .find("# [submission]")
            .expect("example in the default config");
        let uncommented: String = example[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!("{}{}", &example[..start], uncommented)
            .replace("$argon2id$v=19$m=19456,t=2,p=1$...$...", HASH);
        let c = Config::parse(&text)
            .map_err(|e| e.problems().join("\n"))
            .unwrap();
        let s = c.submission.unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:2587".parse().unwrap()]);
        assert_eq!(s.auth_failures_per_ip, 5);
        assert_eq!(s.accounts[0].networks.len(), 2);
        assert_eq!(s.max_message_size, 50_000_000);
    }

    #[test]
    fn a_block_must_outlast_the_longest_failure_delay() {
        let p = problems(&format!(
            "[submission]\nauth_block=\"5s\"\nauth_failure_delay=\"1s\"\n{}",
            account("")
        ));
        assert!(
            p.contains(
                "submission.auth_block: 5s is not longer than the longest failure delay (5s"
            ),
            "{p}"
        );
        let ok = parse(&format!(
            "[submission]\nauth_block=\"6s\"\nauth_failure_delay=\"1s\"\n{}",
            account("")
        ));
        assert!(ok.is_ok());
    }

    #[test]
    fn every_problem_names_its_key() {
        let p = problems(&format!(
            "[submission]\nlisten=[\"nope\", \"127.0.0.1:2525\"]\nmax_connections=0\nauth_failures_per_ip=0\nauth_block=\"soon\"\nauth_failure_delay=\"2m\"\nidle_timeout=0\nmin_data_rate=-5\nmax_message_size=\"1XB\"\ncolour=1\n{}{}{}{}",
            account("networks=[\"10.1.2.3/8\", \"lan\"]\nreply_to=\"sometimes\"\nshoe=1\n")
                .replace("[\"support\"]", "[\"support\", \"nope\", \"support\"]"),
            "[[submission.account]]\nuser=\"CRM\"\npassword_hash=\"x\"\npassword_hash_file=\"/y\"\nmailboxes=[]\n",
            "[[submission.account]]\nuser=\"a b\"\n",
            "[[submission.account]]\nuser=\"Crm\"\npassword_hash_file=\"/nonexistent/hash\"\nmailboxes=[\"sales\"]\n",
        ));
        for expected in [
            "submission.listen[0]: invalid socket address \"nope\"",
            "submission.listen[1]: 127.0.0.1:2525 is already used by smtp.listen[0]",
            "submission.max_connections: must be a positive number",
            "submission.auth_failures_per_ip: must be a positive number",
            "submission.auth_block: invalid duration",
            "submission.auth_failure_delay: \"2m\" is longer than 1m",
            "submission.idle_timeout: invalid duration",
            "submission.min_data_rate: must be 0 or more, not -5",
            "submission.max_message_size: invalid size",
            "unknown key: submission.colour",
            "unknown key: submission.account[0].shoe",
            "submission.account[0].networks[0]: \"10.1.2.3/8\" has host bits set; the network is 10.0.0.0/8",
            "submission.account[0].networks[1]: invalid network \"lan\"",
            "submission.account[0].reply_to: must be",
            "submission.account[0].mailboxes[1]: no [[mailbox]] is named \"nope\"",
            "submission.account[0].mailboxes[2]: mailbox \"support\" is listed twice",
            "submission.account[1].password_hash: set password_hash or password_hash_file, not both",
            "submission.account[1].mailboxes: at least one",
            "submission.account[2].user: invalid user name \"a b\"",
            "submission.account[2].password_hash: missing",
            "submission.account[2].mailboxes: at least one",
            "submission.account[3].password_hash_file: file not found: /nonexistent/hash",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let p = problems("[submission]\nlisten=[]\nlisten_tls=\"\"\n");
        assert!(
            p.contains("submission.listen: no submission listener"),
            "{p}"
        );
        assert!(
            p.contains("submission.account: no [[submission.account]]"),
            "{p}"
        );
        let p = problems(
            "[[submission.account]]\nmailboxes=[\"support\"]\npassword_hash_file=\"/x\"\n",
        );
        assert!(p.contains("submission.account[0].user: missing"), "{p}");
    }

    #[test]
    fn duplicate_users_ignore_case() {
        let p = problems(&format!(
            "{}{}",
            account(""),
            account("").replace("\"crm\"", "\"CRM\"")
        ));
        assert!(
            p.contains("submission.account[1].user: duplicate user \"CRM\""),
            "{p}"
        );
    }

    #[test]
    fn a_password_or_relay_accounts_are_refused() {
        let pasted = "hunter2 s3cret!";
        let p = problems(&account(&format!("password=\"{pasted}\"\n")));
        assert!(
            p.contains("submission.account[0].password: only password hashes are accepted")
                && p.contains("mailgate hash-password"),
            "{p}"
        );
        assert!(!p.contains(pasted), "{p}");
        let p = problems(&format!(
            "[relay]\nhost=\"smtp.a.test\"\n[[relay.account]]\nuser=\"crm\"\npassword_hash=\"{HASH}\"\n"
        ));
        assert!(
            p.contains("relay.account: submission accounts are [[submission.account]]; [relay] is the upstream relay"),
            "{p}"
        );
        assert!(!p.contains(HASH), "{p}");
    }

    #[test]
    fn bad_hashes_are_named_never_shown() {
        let cases = [
            ("not-a-hash-at-all", "not a PHC string"),
            (
                "$argon2i$v=19$m=19456,t=2,p=1$qaBRHC7qseAUyrHgV98T8A$aIzzAws9p0lnPm4IiOV3WVrA7G7WMuRmBGp3XF3/QWA",
                "not an argon2id hash",
            ),
            (
                "$argon2id$v=19$m=19456,t=2,p=1",
                "the PHC string has no salt or no hash",
            ),
            (
                "$argon2id$v=19$m=4294967295,t=2,p=1$qaBRHC7qseAUyrHgV98T8A$aIzzAws9p0lnPm4IiOV3WVrA7G7WMuRmBGp3XF3/QWA",
                "argon2 parameters too costly",
            ),
            (
                "$argon2id$v=19$m=1,t=2,p=1$qaBRHC7qseAUyrHgV98T8A$aIzzAws9p0lnPm4IiOV3WVrA7G7WMuRmBGp3XF3/QWA",
                "invalid argon2 parameters",
            ),
        ];
        for (hash, expected) in cases {
            let p = problems(&account("").replace(HASH, hash));
            assert!(
                p.contains(&format!("submission.account[0].password_hash: {expected}")),
                "{hash}: {p}"
            );
            assert!(!p.contains(hash), "{p}");
        }
        let p = problems(&account("").replace(HASH, "").replace(
            "password_hash=\"\"",
            &format!("password_hash_file=\"{HASH}\""),
        ));
        assert!(
            p.contains("submission.account[0].password_hash_file: holds a PHC string"),
            "{p}"
        );
        assert!(!p.contains(HASH), "{p}");
        assert_eq!(
            format!("{:?}", HashSource::Inline(Secret::new(HASH))),
            "Inline(<not shown>)"
        );
        let c = parse(&account("")).unwrap();
        assert!(!format!("{c:?}").contains(HASH));
    }

    #[cfg(unix)]
    #[test]
    fn hash_files_must_be_private_and_valid() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.hash");
        std::fs::write(&path, format!("{HASH}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let with_file = account("").replace(&format!("password_hash=\"{HASH}\""), "")
            + &format!("password_hash_file=\"{}\"\n", path.display());
        let p = problems(&with_file);
        assert!(
            p.contains("submission.account[0].password_hash_file: ")
                && p.contains("(mode 644); run chmod 600"),
            "{p}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&with_file).unwrap();
        let source = &c.submission.unwrap().accounts[0].password_hash;
        assert!(matches!(source, HashSource::File(p) if *p == path));
        assert_eq!(load_hash(source).unwrap().expose(), HASH);
        std::fs::write(&path, "$argon2id$v=19$nonsense\n").unwrap();
        let p = problems(&with_file);
        assert!(
            p.contains("password_hash_file: ") && p.contains(": not a PHC string"),
            "{p}"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(problems(&with_file).contains("is empty"));
    }
}
