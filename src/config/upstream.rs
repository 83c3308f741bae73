//! `[mailbox.upstream]`: the mailbox the gateway pulls mail from (IMAP,
//! POP3 or Microsoft Graph), validated like the rest of the config: every
//! problem, with its key.
//!
//! Passwords are never in the config: only the name of an environment
//! variable or the path of a file (checked not to be readable by others),
//! or nothing, and then `mailgate sync` asks for it. Problems with those
//! two keys never show their value: it may be a password pasted there.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::oauth2::TokenUse;
use super::{Quantity, duration, positive};
use crate::mail::{AfterImport, Security, valid_keyword};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    /// Microsoft Graph (REST over HTTPS, OAuth2 only): `api_base`, `user`,
    /// `folder`; `host`, `port`, `security` and passwords do not apply.
    Graph,
    /// The Gmail API over HTTPS (OAuth2 only).
    Gmail,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Graph => "graph",
            Protocol::Gmail => "gmail",
        }
    }
}

/// Where the password comes from. Debug hides the variable name and the
/// path (either may be a password pasted into the wrong key).
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Env(String),
    File(PathBuf),
    /// Typed at the prompt of `mailgate sync`; `serve` cannot use the mailbox.
    Prompt,
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordSource::Env(_) => "Env(<not shown>)",
            PasswordSource::File(_) => "File(<not shown>)",
            PasswordSource::Prompt => "Prompt",
        })
    }
}

/// How the gateway logs in to the upstream (`auth`): IMAP and POP3 take a
/// password by default; `"oauth2"` (IMAP only) logs in with SASL XOAUTH2
/// and the token of the mailbox's `[mailbox.oauth2]`. Graph and Gmail are
/// always OAuth2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAuth {
    Password,
    OAuth2,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub protocol: Protocol,
    pub auth: UpstreamAuth,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: String,
    pub password: PasswordSource,
    pub folder: String,
    pub poll_interval: Duration,
    pub active: bool,
    pub ca_file: Option<PathBuf>,
    pub after_import: AfterImport,
    /// Messages per minute (average, bursts up to the same number).
    pub fetch_per_minute: u32,
    /// Consecutive authentication failures before the mailbox is paused.
    pub auth_failure_limit: u32,
    pub idle: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Graph: the API root requests go to (national clouds, tests).
    pub api_base: String,
    /// `protocol = "gmail"` only.
    pub gmail: Option<GmailUpstreamConfig>,
}

/// The Gmail API mailbox: where the API is, which label is read, and the
/// labels set after import (created when missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailUpstreamConfig {
    pub api_base: String,
    pub label: String,
    pub processed_label: String,
    pub rejected_label: String,
}

/// Graph's API root unless `api_base` says otherwise.
pub const GRAPH_API_BASE: &str = "https://graph.microsoft.com/v1.0";

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawUpstream {
    pub(super) protocol: String,
    auth: Option<String>,
    host: String,
    port: Option<i64>,
    security: String,
    allow_insecure: bool,
    user: String,
    password_env: Option<String>,
    password_file: Option<String>,
    folder: String,
    poll_interval: Quantity,
    active: bool,
    ca_file: Option<String>,
    after_import: Option<String>,
    processed_keyword: String,
    rejected_keyword: String,
    processed_folder: Option<String>,
    rejected_folder: Option<String>,
    fetch_per_minute: i64,
    auth_failure_limit: i64,
    idle: bool,
    connect_timeout: Quantity,
    command_timeout: Quantity,
    api_base: Option<String>,
    processed_category: String,
    rejected_category: String,
    label: Option<String>,
    processed_label: Option<String>,
    rejected_label: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            protocol: String::new(),
            auth: None,
            host: String::new(),
            port: None,
            security: "tls".into(),
            allow_insecure: false,
            user: String::new(),
            password_env: None,
            password_file: None,
            folder: "INBOX".into(),
            poll_interval: Quantity::Text("1m".into()),
            active: true,
            ca_file: None,
            after_import: None,
            processed_keyword: "Mailgate".into(),
            rejected_keyword: "RejectedByMailgate".into(),
            processed_folder: None,
            rejected_folder: None,
            fetch_per_minute: 25,
            auth_failure_limit: 3,
            idle: true,
            connect_timeout: Quantity::Text("30s".into()),
            command_timeout: Quantity::Text("2m".into()),
            api_base: None,
            processed_category: "Mailgate".into(),
            rejected_category: "RejectedByMailgate".into(),
            label: None,
            processed_label: None,
            rejected_label: None,
        }
    }
}

pub(super) fn validate(
    key: &str,
    raw: &RawUpstream,
    err: &mut impl FnMut(&str, String),
) -> UpstreamConfig {
    let k = |field: &str| format!("{key}.{field}");
    let protocol = match raw.protocol.as_str() {
        "imap" => Protocol::Imap,
        "pop3" => Protocol::Pop3,
        "graph" => Protocol::Graph,
        "gmail" => Protocol::Gmail,
        "" => {
            err(
                &k("protocol"),
                "missing: \"imap\", \"pop3\", \"graph\" or \"gmail\"".into(),
            );
            Protocol::Imap
        }
        other => {
            err(
                &k("protocol"),
                format!("must be \"imap\", \"pop3\", \"graph\" or \"gmail\", not {other:?}"),
            );
            Protocol::Imap
        }
    };
    let auth = auth(&k, protocol, raw, err);
    let gmail = (protocol == Protocol::Gmail).then(|| gmail_config(&k, raw, err));
    let mut host = raw.host.trim().to_string();
    if let Some(g) = &gmail {
        // For logs and the API: the host of the API base.
        host = g
            .api_base
            .trim_start_matches("https://")
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
    } else if protocol != Protocol::Graph && (host.is_empty() || host.contains(char::is_whitespace))
    {
        err(&k("host"), format!("missing or invalid host {host:?}"));
    }
    let security = match raw.security.as_str() {
        "tls" => Security::Tls,
        "starttls" => Security::StartTls,
        "none" => {
            if !raw.allow_insecure {
                err(
                    &k("security"),
                    "\"none\" sends the password in the clear; set allow_insecure = true to accept that".into(),
                );
            }
            Security::None
        }
        other => {
            err(
                &k("security"),
                format!("must be \"tls\", \"starttls\" or \"none\", not {other:?}"),
            );
            Security::Tls
        }
    };
    if protocol == Protocol::Gmail && security != Security::Tls {
        err(
            &k("security"),
            "the Gmail API is always HTTPS; leave security out".into(),
        );
    }
    let port = match raw.port {
        None => match (protocol, security) {
            (Protocol::Imap, Security::Tls) => 993,
            (Protocol::Imap, _) => 143,
            (Protocol::Pop3, Security::Tls) => 995,
            (Protocol::Pop3, _) => 110,
            (Protocol::Graph, _) => 443,
            (Protocol::Gmail, _) => 443,
        },
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => p,
            _ => {
                err(&k("port"), format!("invalid port {p}"));
                1
            }
        },
    };
    let mut user = raw.user.clone();
    if protocol == Protocol::Gmail && user.trim().is_empty() {
        user = "me".into();
    }
    if user.trim().is_empty() {
        err(&k("user"), "missing".into());
    }
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            err(
                &k("password_env"),
                "set password_env or password_file, not both".into(),
            );
            PasswordSource::Prompt
        }
        (Some(name), None) => {
            // The value may be the password itself, pasted in by mistake:
            // never shown, only what is wrong with it.
            if name.is_empty() {
                err(
                    &k("password_env"),
                    "is empty: give the name of the environment variable that holds the password"
                        .into(),
                );
            } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                err(
                    &k("password_env"),
                    "is not an environment variable name (letters, digits and _ only); it names the variable that holds the password and must not be the password itself (value not shown)".into(),
                );
            }
            PasswordSource::Env(name.clone())
        }
        (None, Some(path)) => PasswordSource::File(PathBuf::from(path)),
        (None, None) => PasswordSource::Prompt,
    };
    let folder = raw.folder.trim().to_string();
    if folder.is_empty() {
        err(&k("folder"), "must not be empty".into());
    }
    if protocol == Protocol::Pop3 && folder != "INBOX" {
        err(&k("folder"), "POP3 has no folders; leave folder out".into());
    }
    if protocol == Protocol::Gmail && folder != "INBOX" {
        err(
            &k("folder"),
            "Gmail has labels, not folders: use label = \"...\"".into(),
        );
    }
    let poll_interval = duration(&k("poll_interval"), &raw.poll_interval, err);
    let ca_file = raw.ca_file.as_ref().map(PathBuf::from);
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        err(&k("ca_file"), format!("file not found: {}", p.display()));
    }
    for (field, value) in [
        ("processed_keyword", &raw.processed_keyword),
        ("rejected_keyword", &raw.rejected_keyword),
    ] {
        if !valid_keyword(value) {
            err(
                &k(field),
                format!("{value:?} is not a valid IMAP keyword (no spaces or specials)"),
            );
        }
    }
    let mode = raw.after_import.clone().unwrap_or_else(|| match protocol {
        Protocol::Imap => "label".into(),
        Protocol::Pop3 => "delete".into(),
        Protocol::Graph => "label".into(),
        Protocol::Gmail => "label".into(),
    });
    if protocol == Protocol::Graph {
        for (field, value) in [
            ("processed_category", &raw.processed_category),
            ("rejected_category", &raw.rejected_category),
        ] {
            if value.trim().is_empty() || value.trim() != value {
                err(
                    &k(field),
                    format!("{value:?} must be a non-empty name without surrounding spaces"),
                );
            }
        }
    }
    let after_import = match (protocol, mode.as_str()) {
        (Protocol::Imap, "label") => AfterImport::Label {
            processed: raw.processed_keyword.clone(),
            rejected: raw.rejected_keyword.clone(),
        },
        (Protocol::Imap | Protocol::Graph, "move") => {
            let processed = raw.processed_folder.clone().unwrap_or_default();
            if processed.trim().is_empty() {
                err(
                    &k("processed_folder"),
                    "required when after_import = \"move\"".into(),
                );
            }
            let rejected = raw
                .rejected_folder
                .clone()
                .unwrap_or_else(|| processed.clone());
            AfterImport::Move {
                processed,
                rejected,
            }
        }
        (Protocol::Graph, "label") => AfterImport::Label {
            processed: raw.processed_category.clone(),
            rejected: raw.rejected_category.clone(),
        },
        (Protocol::Gmail, "label") => AfterImport::Label {
            processed: gmail
                .as_ref()
                .map(|g| g.processed_label.clone())
                .unwrap_or_default(),
            rejected: gmail
                .as_ref()
                .map(|g| g.rejected_label.clone())
                .unwrap_or_default(),
        },
        (Protocol::Gmail, other) => {
            err(
                &k("after_import"),
                format!("Gmail supports \"label\" (read + labels), not {other:?}"),
            );
            AfterImport::Delete
        }
        (Protocol::Imap | Protocol::Pop3, "delete") => AfterImport::Delete,
        (Protocol::Pop3, "keep") => AfterImport::Keep,
        (Protocol::Imap, other) => {
            err(
                &k("after_import"),
                format!("IMAP supports \"label\", \"move\" or \"delete\", not {other:?}"),
            );
            AfterImport::Delete
        }
        (Protocol::Pop3, other) => {
            err(
                &k("after_import"),
                format!("POP3 supports \"delete\" or \"keep\", not {other:?}"),
            );
            AfterImport::Keep
        }
        (Protocol::Graph, other) => {
            err(
                &k("after_import"),
                format!("Graph supports \"label\" or \"move\", not {other:?}"),
            );
            AfterImport::Delete
        }
    };
    let api_base = match (&gmail, protocol) {
        (Some(g), _) => g.api_base.clone(),
        (None, Protocol::Graph) => raw
            .api_base
            .clone()
            .unwrap_or_else(|| GRAPH_API_BASE.to_string())
            .trim_end_matches('/')
            .to_string(),
        (None, _) => String::new(),
    };
    if protocol == Protocol::Graph && !api_base.starts_with("https://") {
        err(
            &k("api_base"),
            format!("must be an https:// URL, not {api_base:?}"),
        );
    }
    let fetch_per_minute = positive(&k("fetch_per_minute"), raw.fetch_per_minute, err);
    let auth_failure_limit = positive(&k("auth_failure_limit"), raw.auth_failure_limit, err);
    UpstreamConfig {
        protocol,
        auth,
        host,
        port,
        security,
        user,
        password,
        folder,
        poll_interval,
        active: raw.active,
        ca_file,
        after_import,
        fetch_per_minute: u32::try_from(fetch_per_minute).unwrap_or(u32::MAX),
        auth_failure_limit: u32::try_from(auth_failure_limit).unwrap_or(u32::MAX),
        idle: raw.idle,
        connect_timeout: duration(&k("connect_timeout"), &raw.connect_timeout, err),
        command_timeout: duration(&k("command_timeout"), &raw.command_timeout, err),
        api_base,
        gmail,
    }
}

impl UpstreamConfig {
    /// The OAuth2 token this upstream logs in with, if it uses one.
    pub fn token_use(&self) -> Option<TokenUse> {
        match (self.protocol, self.auth) {
            (Protocol::Graph, _) => Some(TokenUse::Graph),
            (Protocol::Gmail, _) => Some(TokenUse::Gmail),
            (Protocol::Imap, UpstreamAuth::OAuth2) => Some(TokenUse::Imap),
            (Protocol::Imap | Protocol::Pop3, _) => None,
        }
    }
}

/// The upstream against its mailbox's `[mailbox.oauth2]`: an OAuth2 login
/// needs one; an IMAP mailbox that has one but neither `auth = "oauth2"`
/// nor a password is almost certainly missing the `auth` key.
pub(super) fn check_oauth2(
    mailbox_key: &str,
    upstream: &UpstreamConfig,
    oauth2: Option<&super::oauth2::OAuth2Config>,
    err: &mut impl FnMut(&str, String),
) {
    match (upstream.auth, oauth2) {
        (UpstreamAuth::OAuth2, None) => {
            let needed_by = match upstream.protocol {
                Protocol::Graph | Protocol::Gmail => {
                    format!("upstream.protocol = {:?}", upstream.protocol.as_str())
                }
                _ => "upstream.auth = \"oauth2\"".to_string(),
            };
            super::oauth2::require(mailbox_key, &needed_by, None, err);
        }
        (UpstreamAuth::Password, Some(_))
            if upstream.protocol == Protocol::Imap
                && upstream.password == PasswordSource::Prompt =>
        {
            err(
                &format!("{mailbox_key}.upstream.auth"),
                "the mailbox has [mailbox.oauth2] but upstream.auth is \"password\" (the default) with no password_env or password_file: set auth = \"oauth2\" to log in with XOAUTH2".into(),
            );
        }
        _ => {}
    }
}

/// `auth`: its default per protocol, and the combinations that cannot work.
fn auth(
    k: &impl Fn(&str) -> String,
    protocol: Protocol,
    raw: &RawUpstream,
    err: &mut impl FnMut(&str, String),
) -> UpstreamAuth {
    let api = matches!(protocol, Protocol::Graph | Protocol::Gmail);
    let auth = match raw.auth.as_deref().map(str::trim) {
        None if api => UpstreamAuth::OAuth2,
        None | Some("password") => UpstreamAuth::Password,
        Some("oauth2") => UpstreamAuth::OAuth2,
        Some(other) => {
            err(
                &k("auth"),
                format!("must be \"password\" or \"oauth2\", not {other:?}"),
            );
            return UpstreamAuth::Password;
        }
    };
    match (protocol, auth) {
        (Protocol::Graph | Protocol::Gmail, UpstreamAuth::Password) => err(
            &k("auth"),
            format!(
                "protocol = {:?} logs in with OAuth2 only; leave auth out or set \"oauth2\"",
                protocol.as_str()
            ),
        ),
        (Protocol::Pop3, UpstreamAuth::OAuth2) => err(
            &k("auth"),
            "OAuth2 (XOAUTH2) is supported for IMAP, not POP3: use protocol = \"imap\"".into(),
        ),
        _ => {}
    }
    if auth == UpstreamAuth::OAuth2 && (raw.password_env.is_some() || raw.password_file.is_some()) {
        let field = if raw.password_env.is_some() {
            "password_env"
        } else {
            "password_file"
        };
        err(
            &k(field),
            "not used with OAuth2 (the access token comes from [mailbox.oauth2]); remove it".into(),
        );
    }
    auth
}

/// The Gmail keys, defaults filled in (`api_base` must be HTTPS).
fn gmail_config(
    k: &impl Fn(&str) -> String,
    raw: &RawUpstream,
    err: &mut impl FnMut(&str, String),
) -> GmailUpstreamConfig {
    let api_base = raw
        .api_base
        .clone()
        .unwrap_or_else(|| "https://gmail.googleapis.com".into())
        .trim()
        .trim_end_matches('/')
        .to_string();
    let rest = api_base.strip_prefix("https://").unwrap_or_default();
    if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        err(
            &k("api_base"),
            format!(
                "must be an https:// URL such as \"https://gmail.googleapis.com\", not {api_base:?}"
            ),
        );
    }
    let mut name = |field: &str, value: &Option<String>, default: &str| {
        let v = value.clone().unwrap_or_else(|| default.into());
        if v.trim().is_empty() || v.chars().any(char::is_control) {
            err(&k(field), format!("{v:?} is not a Gmail label name"));
        }
        v.trim().to_string()
    };
    GmailUpstreamConfig {
        api_base,
        label: name("label", &raw.label, "INBOX"),
        processed_label: name("processed_label", &raw.processed_label, "Mailgate"),
        rejected_label: name("rejected_label", &raw.rejected_label, "RejectedByMailgate"),
    }
}

/// A toml error message with every `quoted` value replaced (the value of
/// a secret-holding key is never shown).
pub(super) fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for ch in message.chars() {
        if ch == '`' {
            if !inside {
                out.push_str("(value not shown)");
            }
            inside = !inside;
        } else if !inside {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::mail::AfterImport;

    const BASE: &str = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.oauth2]\nprovider=\"microsoft\"\ntenant=\"contoso\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n[mailbox.upstream]\n";

    fn problems(config: &str) -> String {
        Config::parse(config).unwrap_err().problems().join("\n")
    }

    #[test]
    fn imap_logs_in_with_xoauth2_only_when_auth_says_oauth2() {
        use super::{TokenUse, UpstreamAuth};
        let imap = "protocol=\"imap\"\nhost=\"outlook.office365.com\"\nuser=\"s@contoso.test\"\n";
        let c = Config::parse(&format!("{BASE}{imap}auth=\"oauth2\"\n")).unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(u.auth, UpstreamAuth::OAuth2);
        assert_eq!(u.token_use(), Some(TokenUse::Imap));
        // A password login next to [mailbox.oauth2] (kept for the relay).
        let c = Config::parse(&format!("{BASE}{imap}password_env=\"P\"\n")).unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(u.auth, UpstreamAuth::Password);
        assert_eq!(u.token_use(), None);
        // Graph and Gmail default to OAuth2.
        let c = Config::parse(&format!("{BASE}protocol=\"graph\"\nuser=\"s\"\n")).unwrap();
        assert_eq!(
            c.mailboxes[0].upstream.as_ref().unwrap().token_use(),
            Some(TokenUse::Graph)
        );
    }

    #[test]
    fn contradictory_auth_settings_name_their_key() {
        let imap = "protocol=\"imap\"\nhost=\"h\"\nuser=\"u\"\n";
        let p = problems(&format!("{BASE}{imap}auth=\"kerberos\"\n"));
        assert!(
            p.contains("mailbox[0].upstream.auth: must be \"password\" or \"oauth2\""),
            "{p}"
        );
        // OAuth2 with a password source: which one is not used.
        let p = problems(&format!(
            "{BASE}{imap}auth=\"oauth2\"\npassword_env=\"SECRET_VALUE\"\n"
        ));
        assert!(
            p.contains("mailbox[0].upstream.password_env: not used with OAuth2"),
            "{p}"
        );
        assert!(!p.contains("SECRET_VALUE"), "{p}");
        // Graph cannot log in with a password; POP3 has no XOAUTH2 here.
        let p = problems(&format!(
            "{BASE}protocol=\"graph\"\nuser=\"s\"\nauth=\"password\"\n"
        ));
        assert!(
            p.contains("mailbox[0].upstream.auth: protocol = \"graph\" logs in with OAuth2 only"),
            "{p}"
        );
        let p = problems(&format!(
            "{BASE}protocol=\"pop3\"\nhost=\"h\"\nuser=\"u\"\nauth=\"oauth2\"\n"
        ));
        assert!(
            p.contains(
                "mailbox[0].upstream.auth: OAuth2 (XOAUTH2) is supported for IMAP, not POP3"
            ),
            "{p}"
        );
        // [mailbox.oauth2] with the default password auth and no password:
        // the missing `auth` key is named.
        let p = problems(&format!("{BASE}{imap}"));
        assert!(
            p.contains("mailbox[0].upstream.auth: the mailbox has [mailbox.oauth2]"),
            "{p}"
        );
        // auth = "oauth2" without [mailbox.oauth2].
        let bare = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.upstream]\n";
        let p = problems(&format!("{bare}{imap}auth=\"oauth2\"\n"));
        assert!(
            p.contains("mailbox[0].oauth2: missing: upstream.auth = \"oauth2\" needs a [mailbox.oauth2] section"),
            "{p}"
        );
        // A plain password mailbox stays valid without any auth key.
        Config::parse(&format!("{bare}{imap}password_env=\"P\"\n")).unwrap();
    }

    #[test]
    fn graph_needs_no_host_and_has_categories_and_an_api_base() {
        let c = Config::parse(&format!(
            "{BASE}protocol=\"graph\"\nuser=\"s@contoso.test\"\n"
        ))
        .unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(u.protocol, super::Protocol::Graph);
        assert_eq!(u.api_base, super::GRAPH_API_BASE);
        assert_eq!(
            u.after_import,
            AfterImport::Label {
                processed: "Mailgate".into(),
                rejected: "RejectedByMailgate".into()
            }
        );
        let c = Config::parse(&format!(
            "{BASE}protocol=\"graph\"\nuser=\"s\"\napi_base=\"https://graph.microsoft.us/v1.0/\"\nafter_import=\"move\"\nprocessed_folder=\"archive\"\n"
        ))
        .unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(u.api_base, "https://graph.microsoft.us/v1.0");
        assert_eq!(
            u.after_import,
            AfterImport::Move {
                processed: "archive".into(),
                rejected: "archive".into()
            }
        );
        let err = Config::parse(&format!(
            "{BASE}protocol=\"graph\"\nuser=\"s\"\napi_base=\"http://x\"\nafter_import=\"delete\"\nprocessed_category=\"\"\n"
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "mailbox[0].upstream.api_base: must be an https:// URL",
            "mailbox[0].upstream.after_import: Graph supports \"label\" or \"move\"",
            "mailbox[0].upstream.processed_category:",
        ] {
            assert!(err.contains(expected), "{expected} in {err}");
        }
        assert!(!err.contains("host"), "{err}");
    }
}
