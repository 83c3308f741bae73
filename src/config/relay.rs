//! `[relay]`: the organisation's upstream SMTP relay that every message the
//! gateway sends goes through. Read loosely, then validated like the rest
//! of the config: every problem, with its key.
//!
//! The section is optional: without it no relay is configured, and mail
//! the gateway would send stays queued. The password is never in the
//! config, only where to find it (`password_env` or `password_file`);
//! problems with those two keys never show their value.
//!
//! `auth = "oauth2"` logs in with SASL XOAUTH2 instead: `user` is the
//! account (the mailbox's address) and the access token comes from the
//! `[mailbox.oauth2]` of the mailbox named by `oauth2_mailbox`.
//!
//! `transport = "graph"` or `"gmail"` sends through Microsoft Graph
//! (`sendMail` with MIME) or the Gmail API (`messages.send`) instead of
//! SMTP: then `oauth2_mailbox` gives the token, `user` is whom to send as
//! (Graph: the UPN or id, required; Gmail: default `me`), `api_base`
//! defaults per provider and `ca_file` is trusted on top of the system
//! roots; host, port, security, auth, passwords and helo are not used.
//!
//! `[mailbox.relay]` (a sub-table of one `[[mailbox]]`) has the same keys
//! and is read by the same code: mail of that mailbox goes through it
//! instead of `[relay]`. There the token always comes from the mailbox's
//! own `[mailbox.oauth2]`: `oauth2_mailbox` may be left out, and naming
//! another mailbox is an error (a mailbox sends as itself; sending with
//! another mailbox's token is what the global `[relay]` is for). `user`
//! defaults, for Graph and SMTP XOAUTH2, to the user of the mailbox's
//! Graph or IMAP upstream, else to its first address; for Gmail to `me`.
//! Problems name the full key, `mailbox[0].relay.user`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::oauth2::{OAuth2Config, OAuthProvider};
use super::upstream::{PasswordSource, Protocol, UpstreamConfig};
use super::{Quantity, duration};
use crate::mail::Security;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Set for `security = "none"`; also what lets AUTH go over plain text.
    pub allow_insecure: bool,
    /// Who we log in as with a password (`auth = "password"`), when the
    /// relay wants AUTH.
    pub auth: Option<RelayAuth>,
    /// XOAUTH2 instead (`auth = "oauth2"`); then `auth` is `None`.
    pub oauth2: Option<RelayOAuth2>,
    /// Extra trusted CA certificate (PEM), on top of the system roots.
    pub ca_file: Option<PathBuf>,
    /// The name we give in EHLO (default: server.hostname).
    pub helo: String,
    /// Resolving, connecting, the greeting and the TLS handshake each.
    pub connect_timeout: Duration,
    /// Every SMTP command (EHLO, AUTH, MAIL, RCPT, DATA with its message);
    /// with an API transport, every HTTP request.
    pub command_timeout: Duration,
    /// `transport = "graph" | "gmail"`: send over that API, not SMTP.
    pub api: Option<RelayApi>,
}

/// Which HTTP API sends (`relay.transport`, other than `"smtp"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiTransport {
    Graph,
    Gmail,
}

impl ApiTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiTransport::Graph => "graph",
            ApiTransport::Gmail => "gmail",
        }
    }

    /// Whose OAuth2 tokens the API takes.
    pub fn provider(self) -> OAuthProvider {
        match self {
            ApiTransport::Graph => OAuthProvider::Microsoft,
            ApiTransport::Gmail => OAuthProvider::Google,
        }
    }
}

/// Sending over Graph or Gmail: as `user`, with the token of `mailbox`'s
/// `[mailbox.oauth2]`, to `api_base` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayApi {
    pub kind: ApiTransport,
    pub mailbox: String,
    pub user: String,
    pub api_base: String,
}

/// Gmail's API root unless `relay.api_base` says otherwise.
pub const GMAIL_API_BASE: &str = "https://gmail.googleapis.com";

/// AUTH PLAIN/LOGIN credentials: the user, and where the password is.
#[derive(Debug, Clone)]
pub struct RelayAuth {
    pub user: String,
    /// `Env` or `File`, never `Prompt` (the relay is used by `serve`).
    pub password: PasswordSource,
}

/// SASL XOAUTH2 (`auth = "oauth2"`): the user, and the mailbox whose
/// `[mailbox.oauth2]` gives the access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOAuth2 {
    pub user: String,
    pub mailbox: String,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawRelay {
    transport: String,
    api_base: Option<String>,
    host: String,
    port: Option<i64>,
    security: String,
    allow_insecure: bool,
    auth: String,
    oauth2_mailbox: Option<String>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    ca_file: Option<String>,
    helo: Option<String>,
    connect_timeout: Quantity,
    command_timeout: Quantity,
}

impl Default for RawRelay {
    fn default() -> Self {
        RawRelay {
            transport: "smtp".into(),
            api_base: None,
            host: String::new(),
            port: None,
            security: "starttls".into(),
            allow_insecure: false,
            auth: "password".into(),
            oauth2_mailbox: None,
            user: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            helo: None,
            connect_timeout: Quantity::Text("30s".into()),
            command_timeout: Quantity::Text("2m".into()),
        }
    }
}

/// Where a relay table is written: the global `[relay]`, or the
/// `[mailbox.relay]` of one mailbox (which then sends as itself).
pub(super) enum Scope<'a> {
    Global,
    Mailbox(OwnMailbox<'a>),
}

/// What a `[mailbox.relay]` takes its defaults from: its mailbox.
pub(super) struct OwnMailbox<'a> {
    /// The mailbox's key in problems, `mailbox[0]`.
    pub key: &'a str,
    pub name: &'a str,
    pub addresses: &'a [String],
    pub upstream: Option<&'a UpstreamConfig>,
    pub oauth2: Option<&'a OAuth2Config>,
}

impl OwnMailbox<'_> {
    /// Whom a Graph or SMTP XOAUTH2 relay of the mailbox logs in / sends
    /// as by default: its Graph or IMAP upstream's user (the account the
    /// mailbox's token is for), else its first address.
    fn default_user(&self) -> String {
        match self.upstream {
            Some(u) if matches!(u.protocol, Protocol::Graph | Protocol::Imap) => u.user.clone(),
            _ => self.addresses.first().cloned().unwrap_or_default(),
        }
    }
}

impl Scope<'_> {
    /// The prefix of every key in problems: `relay` or `mailbox[0].relay`.
    fn prefix(&self) -> String {
        match self {
            Scope::Global => "relay".into(),
            Scope::Mailbox(own) => format!("{}.relay", own.key),
        }
    }
}

pub(super) fn validate(
    raw: &RawRelay,
    scope: &Scope<'_>,
    hostname: &str,
    err: &mut impl FnMut(&str, String),
) -> RelayConfig {
    let p = scope.prefix();
    let p = p.as_str();
    let kind = match raw.transport.trim() {
        "smtp" => None,
        "graph" => Some(ApiTransport::Graph),
        "gmail" => Some(ApiTransport::Gmail),
        other => {
            err(
                &format!("{p}.transport"),
                format!("must be \"smtp\", \"graph\" or \"gmail\", not {other:?}"),
            );
            None
        }
    };
    let config = match kind {
        Some(kind) => api_relay(raw, kind, scope, hostname, err),
        None => smtp_relay(raw, scope, hostname, err),
    };
    if let Scope::Mailbox(own) = scope {
        check_own_mailbox(raw, &config, own, p, err);
    }
    config
}

fn smtp_relay(
    raw: &RawRelay,
    scope: &Scope<'_>,
    hostname: &str,
    err: &mut impl FnMut(&str, String),
) -> RelayConfig {
    let p = scope.prefix();
    let p = p.as_str();
    let key = |k: &str| format!("{p}.{k}");
    if raw.api_base.is_some() {
        err(
            &key("api_base"),
            "is only used with transport = \"graph\" or \"gmail\"".into(),
        );
    }
    let host = raw.host.trim().to_string();
    if host.is_empty() {
        err(
            &key("host"),
            "missing: the relay's host name or address".into(),
        );
    } else if host.contains(char::is_whitespace) || host.contains(['/', '@']) {
        err(&key("host"), format!("invalid host {host:?}"));
    }
    let security = match raw.security.as_str() {
        "tls" => Security::Tls,
        "starttls" => Security::StartTls,
        "none" => {
            if !raw.allow_insecure {
                err(
                    &key("security"),
                    "\"none\" sends mail (and any password) in the clear; set allow_insecure = true to accept that".into(),
                );
            }
            Security::None
        }
        other => {
            err(
                &key("security"),
                format!("must be \"tls\", \"starttls\" or \"none\", not {other:?}"),
            );
            Security::StartTls
        }
    };
    let port = match raw.port {
        None => match security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::None => 25,
        },
        Some(n) => match u16::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => {
                err(&key("port"), format!("invalid port {n}"));
                1
            }
        },
    };
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            err(
                &key("password_env"),
                "set password_env or password_file, not both".into(),
            );
            None
        }
        (Some(name), None) => {
            // Maybe the password itself, pasted in by mistake: never shown.
            if name.is_empty() {
                err(
                    &key("password_env"),
                    "is empty: give the name of the environment variable that holds the password"
                        .into(),
                );
            } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                err(
                    &key("password_env"),
                    "is not an environment variable name (letters, digits and _ only); it names the variable that holds the password and must not be the password itself (value not shown)".into(),
                );
            }
            Some(PasswordSource::Env(name.clone()))
        }
        (None, Some(path)) => {
            if path.trim().is_empty() {
                err(
                    &key("password_file"),
                    "is empty: give the path of the file that holds the password".into(),
                );
            }
            Some(PasswordSource::File(PathBuf::from(path)))
        }
        (None, None) => None,
    };
    let oauth2_wanted = match raw.auth.as_str() {
        "password" => {
            if raw.oauth2_mailbox.is_some() {
                err(
                    &key("oauth2_mailbox"),
                    "is only used with auth = \"oauth2\"; leave it out or set auth = \"oauth2\""
                        .into(),
                );
            }
            false
        }
        "oauth2" => true,
        _ => {
            // Not echoed: it might be a token pasted into the wrong key.
            err(
                &key("auth"),
                "must be \"password\" or \"oauth2\" (value not shown)".into(),
            );
            false
        }
    };
    let (oauth2, password) = if oauth2_wanted {
        (oauth2_login(raw, scope, password, err), None)
    } else {
        (None, password)
    };
    let auth = match (raw.user.as_deref().map(str::trim), password) {
        (_, None) if oauth2_wanted => None,
        (None, None) => None,
        (Some(""), _) => {
            err(
                &key("user"),
                "is empty: leave it out when the relay needs no AUTH".into(),
            );
            None
        }
        (Some(user), Some(password)) => Some(RelayAuth {
            user: user.to_string(),
            password,
        }),
        (Some(_), None) => {
            err(
                &key("password_env"),
                format!(
                    "{p}.user is set, so the password is needed: set password_env or password_file (the password itself never goes in the config)"
                ),
            );
            None
        }
        (None, Some(_)) => {
            err(
                &key("user"),
                "missing: a password source is set, so the user to log in as is needed too".into(),
            );
            None
        }
    };
    let ca_file = ca_file(raw, p, err);
    let helo = match raw.helo.as_deref().map(str::trim) {
        None => hostname.to_string(),
        Some(h) => {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic()) {
                err(
                    &key("helo"),
                    format!("{h:?} is not a host name to give in EHLO"),
                );
            }
            h.to_string()
        }
    };
    RelayConfig {
        host,
        port,
        security,
        allow_insecure: raw.allow_insecure,
        auth,
        oauth2,
        ca_file,
        helo,
        connect_timeout: duration(&key("connect_timeout"), &raw.connect_timeout, err),
        command_timeout: duration(&key("command_timeout"), &raw.command_timeout, err),
        api: None,
    }
}

fn ca_file(raw: &RawRelay, p: &str, err: &mut impl FnMut(&str, String)) -> Option<PathBuf> {
    let ca_file = raw.ca_file.as_ref().map(PathBuf::from);
    if let Some(path) = &ca_file
        && !path.is_file()
    {
        err(
            &format!("{p}.ca_file"),
            format!("file not found: {}", path.display()),
        );
    }
    ca_file
}

/// The mailbox whose `[mailbox.oauth2]` gives the token: named by
/// `oauth2_mailbox` in `[relay]` (required); in a `[mailbox.relay]` the
/// mailbox itself (the key may name it, nothing else).
fn token_mailbox(
    raw: &RawRelay,
    scope: &Scope<'_>,
    needed_by: &str,
    err: &mut impl FnMut(&str, String),
) -> String {
    let p = scope.prefix();
    let given = raw.oauth2_mailbox.as_deref().map(str::trim);
    match scope {
        Scope::Global => {
            let name = given.unwrap_or("");
            if name.is_empty() {
                err(
                    &format!("{p}.oauth2_mailbox"),
                    format!(
                        "missing: {needed_by} needs the name of the [[mailbox]] whose [mailbox.oauth2] gives the access token"
                    ),
                );
            }
            name.to_string()
        }
        Scope::Mailbox(own) => {
            if let Some(other) = given
                && other != own.name
            {
                err(
                    &format!("{p}.oauth2_mailbox"),
                    format!(
                        "a [mailbox.relay] sends with its own mailbox's [mailbox.oauth2] (mailbox {:?}), not {other:?}: leave oauth2_mailbox out (to send with another mailbox's token, use the global [relay])",
                        own.name
                    ),
                );
            }
            own.name.to_string()
        }
    }
}

/// `transport = "graph" | "gmail"`: a mailbox for the token, whom to send
/// as and where; the SMTP-only keys are refused by name.
fn api_relay(
    raw: &RawRelay,
    kind: ApiTransport,
    scope: &Scope<'_>,
    hostname: &str,
    err: &mut impl FnMut(&str, String),
) -> RelayConfig {
    let p = scope.prefix();
    let p = p.as_str();
    let key = |k: &str| format!("{p}.{k}");
    let name = kind.as_str();
    let token_from = match scope {
        Scope::Global => format!("{p}.oauth2_mailbox"),
        Scope::Mailbox(_) => "the mailbox's [mailbox.oauth2]".into(),
    };
    let smtp_only = [
        ("host", !raw.host.trim().is_empty()),
        ("port", raw.port.is_some()),
        ("password_env", raw.password_env.is_some()),
        ("password_file", raw.password_file.is_some()),
        ("helo", raw.helo.is_some()),
        ("auth", raw.auth != "password"),
    ];
    for (k, set) in smtp_only {
        if set {
            err(
                &key(k),
                format!(
                    "is not used with transport = \"{name}\" (it sends over HTTPS with the OAuth2 token of {token_from}); leave it out"
                ),
            );
        }
    }
    let mailbox = token_mailbox(raw, scope, &format!("transport = \"{name}\""), err);
    let user = match (kind, raw.user.as_deref().map(str::trim)) {
        (_, Some(u)) if !u.is_empty() => u.to_string(),
        (ApiTransport::Gmail, None) => "me".to_string(),
        (ApiTransport::Graph, None) => match scope {
            Scope::Mailbox(own) => own.default_user(),
            Scope::Global => {
                err(
                    &key("user"),
                    "missing: transport = \"graph\" sends as this user (UPN or id)".into(),
                );
                String::new()
            }
        },
        (_, Some(_)) => {
            err(&key("user"), "is empty".into());
            String::new()
        }
    };
    let default_base = match kind {
        ApiTransport::Graph => super::upstream::GRAPH_API_BASE,
        ApiTransport::Gmail => GMAIL_API_BASE,
    };
    let api_base = raw
        .api_base
        .as_deref()
        .map(str::trim)
        .unwrap_or(default_base)
        .trim_end_matches('/')
        .to_string();
    let rest = api_base.strip_prefix("https://").unwrap_or_default();
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        err(
            &key("api_base"),
            format!("must be an https:// URL such as {default_base:?}, not {api_base:?}"),
        );
    }
    RelayConfig {
        host: String::new(),
        port: 443,
        security: Security::Tls,
        allow_insecure: false,
        auth: None,
        oauth2: None,
        ca_file: ca_file(raw, p, err),
        helo: hostname.to_string(),
        connect_timeout: duration(&key("connect_timeout"), &raw.connect_timeout, err),
        command_timeout: duration(&key("command_timeout"), &raw.command_timeout, err),
        api: Some(RelayApi {
            kind,
            mailbox,
            user,
            api_base,
        }),
    }
}

/// `auth = "oauth2"`: a user and a mailbox, no password source.
fn oauth2_login(
    raw: &RawRelay,
    scope: &Scope<'_>,
    password: Option<PasswordSource>,
    err: &mut impl FnMut(&str, String),
) -> Option<RelayOAuth2> {
    let p = scope.prefix();
    if password.is_some() {
        let key = if raw.password_env.is_some() {
            "password_env"
        } else {
            "password_file"
        };
        err(
            &format!("{p}.{key}"),
            format!(
                "{p}.auth = \"oauth2\" logs in with an access token, not a password: leave it out"
            ),
        );
    }
    let user = match (raw.user.as_deref().map(str::trim), scope) {
        (Some(u), _) if !u.is_empty() => u.to_string(),
        (None, Scope::Mailbox(own)) => own.default_user(),
        _ => String::new(),
    };
    if user.is_empty() {
        err(
            &format!("{p}.user"),
            format!("missing: {p}.auth = \"oauth2\" logs in as this user (the mailbox's address)"),
        );
    }
    let mailbox = token_mailbox(raw, scope, &format!("{p}.auth = \"oauth2\""), err);
    (!user.is_empty() && !mailbox.is_empty()).then(|| RelayOAuth2 {
        user: user.to_string(),
        mailbox: mailbox.to_string(),
    })
}

/// A `[mailbox.relay]` that needs a token needs its own mailbox's
/// `[mailbox.oauth2]`, from Microsoft for Graph, from Google for Gmail.
fn check_own_mailbox(
    raw: &RawRelay,
    config: &RelayConfig,
    own: &OwnMailbox<'_>,
    p: &str,
    err: &mut impl FnMut(&str, String),
) {
    if let Some(api) = &config.api {
        let needed_by = format!("{p}.transport = \"{}\"", api.kind.as_str());
        super::oauth2::require(own.key, &needed_by, own.oauth2, err);
        let provider = api.kind.provider();
        if let Some(o) = own.oauth2
            && o.provider != provider
        {
            err(
                &format!("{p}.transport"),
                format!(
                    "\"{}\" sends with a {} token, but {}.oauth2.provider is \"{}\"",
                    api.kind.as_str(),
                    provider.as_str(),
                    own.key,
                    o.provider.as_str()
                ),
            );
        }
    } else if raw.auth == "oauth2" {
        super::oauth2::require(own.key, &format!("{p}.auth = \"oauth2\""), own.oauth2, err);
    }
}

/// `oauth2_mailbox` names a configured mailbox that has OAuth2 settings.
pub(super) fn check_oauth2_mailbox(
    o: &RelayOAuth2,
    mailboxes: &[super::MailboxConfig],
    err: &mut impl FnMut(&str, String),
) {
    check_token_mailbox(
        &o.mailbox,
        "relay.auth = \"oauth2\" (relay.oauth2_mailbox)",
        mailboxes,
        err,
    );
}

/// The same for `transport = "graph" | "gmail"`; a Microsoft mailbox for
/// Graph, a Google one for Gmail.
pub(super) fn check_api_mailbox(
    api: &RelayApi,
    mailboxes: &[super::MailboxConfig],
    err: &mut impl FnMut(&str, String),
) {
    let (needed_by, provider) = match api.kind {
        ApiTransport::Graph => (
            "relay.transport = \"graph\" (relay.oauth2_mailbox)",
            super::oauth2::OAuthProvider::Microsoft,
        ),
        ApiTransport::Gmail => (
            "relay.transport = \"gmail\" (relay.oauth2_mailbox)",
            super::oauth2::OAuthProvider::Google,
        ),
    };
    if api.mailbox.is_empty() {
        return;
    }
    check_token_mailbox(&api.mailbox, needed_by, mailboxes, err);
    if let Some(o) =
        (mailboxes.iter().find(|m| m.name == api.mailbox)).and_then(|m| m.oauth2.as_ref())
        && o.provider != provider
    {
        err(
            "relay.oauth2_mailbox",
            format!(
                "{needed_by} needs a mailbox whose [mailbox.oauth2] provider is \"{}\"",
                provider.as_str()
            ),
        );
    }
}

fn check_token_mailbox(
    mailbox: &str,
    needed_by: &str,
    mailboxes: &[super::MailboxConfig],
    err: &mut impl FnMut(&str, String),
) {
    match mailboxes.iter().position(|m| m.name == mailbox) {
        None => err(
            "relay.oauth2_mailbox",
            format!("no [[mailbox]] is named {mailbox:?}"),
        ),
        Some(i) => super::oauth2::require(
            &format!("mailbox[{i}]"),
            needed_by,
            mailboxes[i].oauth2.as_ref(),
            err,
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::upstream::PasswordSource;
    use crate::mail::Security;
    use std::time::Duration;

    const BASE: &str = "[server]\nhostname=\"gw.a.test\"\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n";

    fn problems(relay: &str) -> String {
        Config::parse(&format!("{BASE}[relay]\n{relay}"))
            .unwrap_err()
            .problems()
            .join("\n")
    }

    #[test]
    fn absent_means_no_relay() {
        assert!(Config::parse(BASE).unwrap().relay.is_none());
    }

    #[test]
    fn defaults_follow_security() {
        let c = Config::parse(&format!("{BASE}[relay]\nhost=\"smtp.a.test\"\n")).unwrap();
        let r = c.relay.unwrap();
        assert_eq!((r.port, r.security), (587, Security::StartTls));
        assert_eq!(r.helo, "gw.a.test");
        assert!(r.auth.is_none());
        assert_eq!(r.connect_timeout, Duration::from_secs(30));
        assert_eq!(r.command_timeout, Duration::from_secs(120));
        let c = Config::parse(&format!(
            "{BASE}[relay]\nhost=\"h\"\nsecurity=\"tls\"\nuser=\"u\"\npassword_env=\"RELAY_PW\"\nhelo=\"out.a.test\"\n"
        ))
        .unwrap();
        let r = c.relay.unwrap();
        assert_eq!((r.port, r.helo.as_str()), (465, "out.a.test"));
        let auth = r.auth.unwrap();
        assert_eq!(auth.user, "u");
        assert_eq!(auth.password, PasswordSource::Env("RELAY_PW".into()));
        let c = Config::parse(&format!(
            "{BASE}[relay]\nhost=\"h\"\nsecurity=\"none\"\nallow_insecure=true\n"
        ))
        .unwrap();
        assert_eq!(c.relay.unwrap().port, 25);
    }

    #[test]
    fn every_problem_names_its_key() {
        let p = problems(
            "security=\"plain\"\nport=70000\nuser=\"u\"\nca_file=\"/nope/ca.pem\"\nhelo=\"a b\"\nconnect_timeout=\"soon\"\ncommand_timeout=0\ncolour=1\n",
        );
        for expected in [
            "relay.host: missing",
            "relay.security: must be",
            "relay.port: invalid port 70000",
            "relay.password_env: relay.user is set",
            "relay.ca_file: file not found: /nope/ca.pem",
            "relay.helo: \"a b\" is not a host name",
            "relay.connect_timeout: invalid duration",
            "relay.command_timeout: invalid duration",
            "unknown key: relay.colour",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let p = problems("host=\"h\"\nsecurity=\"none\"\n");
        assert!(p.contains("relay.security: \"none\" sends mail"), "{p}");
        let p = problems("host=\"h\"\npassword_file=\"/x\"\n");
        assert!(p.contains("relay.user: missing"), "{p}");
        let p = problems("host=\"h\"\nuser=\"u\"\npassword_env=\"A\"\npassword_file=\"/x\"\n");
        assert!(
            p.contains("relay.password_env: set password_env or password_file, not both"),
            "{p}"
        );
    }

    #[test]
    fn oauth2_needs_a_user_and_a_mailbox_and_no_password() {
        let oauth2 =
            "[mailbox.oauth2]\nprovider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n";
        let relay = "[relay]\nhost=\"smtp.a.test\"\nauth=\"oauth2\"\nuser=\"m@a.test\"\noauth2_mailbox=\"m\"\n";
        let p = Config::parse(&format!("{BASE}{relay}"))
            .unwrap_err()
            .problems()
            .join("\n");
        assert!(
            p.contains("mailbox[0].oauth2: missing: relay.auth = \"oauth2\" (relay.oauth2_mailbox) needs a [mailbox.oauth2] section"),
            "{p}"
        );
        let c = Config::parse(&format!("{BASE}{oauth2}{relay}")).unwrap();
        let r = c.relay.unwrap();
        assert!(r.auth.is_none());
        assert_eq!(
            r.oauth2,
            Some(super::RelayOAuth2 {
                user: "m@a.test".into(),
                mailbox: "m".into()
            })
        );
        let c = Config::parse(&format!("{BASE}[relay]\nhost=\"h\"\n")).unwrap();
        assert!(c.relay.unwrap().oauth2.is_none(), "password is the default");

        let p = problems("host=\"h\"\nauth=\"oauth2\"\npassword_env=\"PW\"\n");
        for expected in [
            "relay.password_env: relay.auth = \"oauth2\" logs in with an access token",
            "relay.user: missing: relay.auth = \"oauth2\"",
            "relay.oauth2_mailbox: missing",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let p = problems("host=\"h\"\nauth=\"oauth2\"\nuser=\"u\"\noauth2_mailbox=\"nope\"\n");
        assert!(
            p.contains("relay.oauth2_mailbox: no [[mailbox]] is named \"nope\""),
            "{p}"
        );
        let p = problems("host=\"h\"\nauth=\"kerberos\"\n");
        assert!(
            p.contains("relay.auth: must be \"password\" or \"oauth2\""),
            "{p}"
        );
        let p = problems("host=\"h\"\noauth2_mailbox=\"m\"\n");
        assert!(
            p.contains("relay.oauth2_mailbox: is only used with auth"),
            "{p}"
        );
    }

    #[test]
    fn secrets_are_never_shown() {
        let pasted = "hunter2 s3cret!";
        let p = problems(&format!(
            "host=\"h\"\nuser=\"u\"\npassword_env=\"{pasted}\"\n"
        ));
        assert!(
            p.contains("relay.password_env: is not an environment variable name"),
            "{p}"
        );
        assert!(!p.contains(pasted), "{p}");
        let p = problems(&format!("host=\"h\"\npassword=\"{pasted}\"\n"));
        assert!(
            p.contains("relay.password: passwords are never written in the config"),
            "{p}"
        );
        assert!(!p.contains(pasted), "{p}");
        let p = problems("host=\"h\"\nuser=\"u\"\npassword_env=12345678\n");
        assert!(!p.contains("12345678"), "{p}");
    }

    const OAUTH_BASE: &str = "[server]\nhostname=\"gw.a.test\"\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.oauth2]\nprovider=\"microsoft\"\nclient_id=\"cid\"\ntenant=\"contoso\"\nclient_secret_env=\"CS\"\n";

    fn api(relay: &str) -> Result<super::RelayConfig, String> {
        Config::parse(&format!("{OAUTH_BASE}[relay]\n{relay}"))
            .map(|c| c.relay.unwrap())
            .map_err(|e| e.problems().join("\n"))
    }

    #[test]
    fn graph_transport_needs_no_host_and_has_defaults() {
        let r =
            api("transport=\"graph\"\noauth2_mailbox=\"m\"\nuser=\"m@contoso.test\"\n").unwrap();
        let a = r.api.unwrap();
        assert_eq!(a.kind, super::ApiTransport::Graph);
        assert_eq!(a.api_base, crate::config::upstream::GRAPH_API_BASE);
        assert_eq!(
            (a.mailbox.as_str(), a.user.as_str()),
            ("m", "m@contoso.test")
        );
        assert!(
            Config::parse(&format!("{BASE}[relay]\nhost=\"h\"\n"))
                .unwrap()
                .relay
                .unwrap()
                .api
                .is_none()
        );
    }

    #[test]
    fn api_transport_mistakes_are_named_by_key() {
        let p = api(
            "transport=\"graph\"\nhost=\"smtp.x\"\npassword_env=\"PW\"\napi_base=\"http://g\"\n",
        )
        .unwrap_err();
        for key in [
            "relay.host:",
            "relay.password_env:",
            "relay.api_base: must be an https://",
            "relay.oauth2_mailbox: missing",
            "relay.user: missing",
        ] {
            assert!(p.contains(key), "{key} in {p}");
        }
        let p = api("transport=\"gmail\"\noauth2_mailbox=\"m\"\n").unwrap_err();
        assert!(
            p.contains("relay.oauth2_mailbox: relay.transport = \"gmail\""),
            "{p}"
        );
        assert!(p.contains("provider is \"google\""), "{p}");
        let p = api("transport=\"graph\"\noauth2_mailbox=\"x\"\nuser=\"u\"\n").unwrap_err();
        assert!(
            p.contains("relay.oauth2_mailbox: no [[mailbox]] is named \"x\""),
            "{p}"
        );
        let p = api("transport=\"ews\"\nhost=\"h\"\n").unwrap_err();
        assert!(
            p.contains("relay.transport: must be \"smtp\", \"graph\" or \"gmail\""),
            "{p}"
        );
        let p = api("host=\"h\"\napi_base=\"https://g\"\n").unwrap_err();
        assert!(
            p.contains("relay.api_base: is only used with transport"),
            "{p}"
        );
    }

    #[test]
    fn gmail_user_defaults_to_me() {
        let text = OAUTH_BASE
            .replace("microsoft", "google")
            .replace("tenant=\"contoso\"\n", "");
        let c = Config::parse(&format!(
            "{text}[relay]\ntransport=\"gmail\"\noauth2_mailbox=\"m\"\n"
        ))
        .unwrap();
        let a = c.relay.unwrap().api.unwrap();
        assert_eq!(
            (a.user.as_str(), a.api_base.as_str()),
            ("me", super::GMAIL_API_BASE)
        );
    }

    /// `[[mailbox]]` "m" with `extra` (its sub-tables), then `[mailbox.relay]`.
    fn own(extra: &str, relay: &str) -> Result<super::RelayConfig, String> {
        Config::parse(&format!("{BASE}{extra}[mailbox.relay]\n{relay}"))
            .map(|c| c.mailboxes[0].relay.clone().unwrap())
            .map_err(|e| e.problems().join("\n"))
    }

    const MS: &str = "[mailbox.oauth2]\nprovider=\"microsoft\"\nclient_id=\"cid\"\ntenant=\"contoso\"\nclient_secret_env=\"CS\"\n";
    const GOOGLE: &str =
        "[mailbox.oauth2]\nprovider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n";

    #[test]
    fn a_mailbox_relay_sends_as_its_mailbox_by_default() {
        // Graph: the token of the mailbox itself, as its first address...
        let a = own(MS, "transport=\"graph\"\n").unwrap().api.unwrap();
        assert_eq!(
            (a.kind, a.mailbox.as_str(), a.user.as_str()),
            (super::ApiTransport::Graph, "m", "m@a.test")
        );
        // ... or as the user of its Graph upstream.
        let upstream = "[mailbox.upstream]\nprotocol=\"graph\"\nuser=\"m.box@contoso.test\"\n";
        let a = own(&format!("{MS}{upstream}"), "transport=\"graph\"\n")
            .unwrap()
            .api
            .unwrap();
        assert_eq!(a.user, "m.box@contoso.test");
        // Gmail: "me"; naming the mailbox itself is accepted.
        let a = own(GOOGLE, "transport=\"gmail\"\noauth2_mailbox=\"m\"\n")
            .unwrap()
            .api
            .unwrap();
        assert_eq!((a.mailbox.as_str(), a.user.as_str()), ("m", "me"));
        // SMTP XOAUTH2: the IMAP upstream's user, the mailbox's token.
        let imap = "[mailbox.upstream]\nprotocol=\"imap\"\nauth=\"oauth2\"\nhost=\"imap.gmail.com\"\nuser=\"m.login@a.test\"\n";
        let r = own(
            &format!("{GOOGLE}{imap}"),
            "host=\"smtp.gmail.com\"\nauth=\"oauth2\"\n",
        )
        .unwrap();
        assert_eq!(
            r.oauth2,
            Some(super::RelayOAuth2 {
                user: "m.login@a.test".into(),
                mailbox: "m".into()
            })
        );
        assert_eq!((r.port, r.api.is_none()), (587, true));
        // A password relay of its own needs no OAuth2 at all.
        let r = own(
            "",
            "host=\"smtp.a.test\"\nuser=\"u\"\npassword_env=\"PW\"\n",
        )
        .unwrap();
        assert_eq!(r.auth.unwrap().user, "u");
        // Without [mailbox.relay] a mailbox has none (it uses [relay]).
        assert!(Config::parse(BASE).unwrap().mailboxes[0].relay.is_none());
    }

    #[test]
    fn mailbox_relay_problems_name_the_full_key() {
        let p = own("", "transport=\"graph\"\n").unwrap_err();
        assert!(
            p.contains("mailbox[0].oauth2: missing: mailbox[0].relay.transport = \"graph\" needs a [mailbox.oauth2] section"),
            "{p}"
        );
        let p = own(GOOGLE, "transport=\"graph\"\n").unwrap_err();
        assert!(
            p.contains("mailbox[0].relay.transport: \"graph\" sends with a microsoft token, but mailbox[0].oauth2.provider is \"google\""),
            "{p}"
        );
        let p = own(MS, "transport=\"gmail\"\n").unwrap_err();
        assert!(
            p.contains("mailbox[0].relay.transport: \"gmail\" sends with a google token"),
            "{p}"
        );
        let p = own("", "host=\"h\"\nauth=\"oauth2\"\n").unwrap_err();
        assert!(
            p.contains("mailbox[0].oauth2: missing: mailbox[0].relay.auth = \"oauth2\" needs a [mailbox.oauth2] section"),
            "{p}"
        );
        let p = own(MS, "transport=\"graph\"\noauth2_mailbox=\"other\"\n").unwrap_err();
        assert!(
            p.contains("mailbox[0].relay.oauth2_mailbox: a [mailbox.relay] sends with its own mailbox's [mailbox.oauth2] (mailbox \"m\"), not \"other\""),
            "{p}"
        );
        let p = own(
            MS,
            "transport=\"graph\"\nhost=\"smtp.x\"\nuser=\"\"\napi_base=\"http://g\"\nca_file=\"/nope.pem\"\ncommand_timeout=0\n",
        )
        .unwrap_err();
        for expected in [
            "mailbox[0].relay.host: is not used with transport = \"graph\" (it sends over HTTPS with the OAuth2 token of the mailbox's [mailbox.oauth2])",
            "mailbox[0].relay.user: is empty",
            "mailbox[0].relay.api_base: must be an https://",
            "mailbox[0].relay.ca_file: file not found",
            "mailbox[0].relay.command_timeout: invalid duration",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let p = own(
            "",
            "security=\"none\"\nuser=\"u\"\nauth=\"password\"\noauth2_mailbox=\"m\"\ncolour=1\n",
        )
        .unwrap_err();
        for expected in [
            "mailbox[0].relay.host: missing",
            "mailbox[0].relay.security: \"none\" sends mail",
            "mailbox[0].relay.password_env: mailbox[0].relay.user is set",
            "mailbox[0].relay.oauth2_mailbox: is only used with auth",
            "unknown key: mailbox[0].relay.colour",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let pasted = "hunter2 s3cret!";
        let p = own("", &format!("host=\"h\"\npassword=\"{pasted}\"\n")).unwrap_err();
        assert!(
            p.contains("mailbox[0].relay.password: passwords are never written in the config"),
            "{p}"
        );
        assert!(!p.contains(pasted), "{p}");
    }
}
