//! Typed configuration with validation that reports every problem at once.
//!
//! The TOML is first read into a loose "raw" shape (strings and numbers), so
//! that one bad value does not hide the next: validation then walks every key
//! and collects `key: problem` lines, which `check-config` prints.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mail::BareLf;

pub mod categories;
pub mod notify;
pub mod oauth2;
pub mod outbound;
pub mod relay;
pub mod role;
pub mod rules;
pub mod store;
pub mod submission;
pub mod upstream;
use upstream::{RawUpstream, UpstreamConfig};

/// The example config, compiled in: `serve` falls back to it when the
/// default path does not exist.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/mailgate.toml");
/// Where `serve` and `check-config` look when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/mailgate.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Every problem, one per line, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(list) => list.clone(),
            other => vec![other.to_string()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub smtp: SmtpConfig,
    pub limits: LimitsConfig,
    /// `[store]`: the database's memory.
    pub store: store::StoreConfig,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub tickets: TicketsConfig,
    pub outbound: outbound::OutboundConfig,
    pub notify: notify::NotifyConfig,
    pub categories: Vec<categories::CategoryConfig>,
    pub mailboxes: Vec<MailboxConfig>,
    /// `[[rule]]`: mail rules for every mailbox, run before each mailbox's own.
    pub rules: Vec<crate::rules::Rule>,
    /// The upstream SMTP relay for outgoing mail; `None`: mail stays queued.
    pub relay: Option<relay::RelayConfig>,
    /// The submission endpoint for internal systems; `None`: no listener.
    pub submission: Option<submission::SubmissionConfig>,
    /// `[oauth]`: the stored-token key and the health threshold.
    pub oauth: oauth2::OAuthSettings,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Lower-cased served domains.
    pub domains: Vec<String>,
    /// `internal_domains`: the organisation's own domains (lower-cased):
    /// mail From them is internal (staff), not a customer's.
    pub internal_domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub listen: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    pub bare_lf: BareLf,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_per_minute_per_ip: u32,
    pub idle_timeout: Duration,
    /// Bytes per second a request must keep up once it has taken longer
    /// than the idle time; 0: only each read is bounded by the idle time.
    pub min_data_rate: u64,
    pub max_recipients: usize,
    pub max_commands: usize,
    pub max_line_length: usize,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_message_size: usize,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub dev_cert_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub api_token_env: Option<String>,
    /// Host names (not IP addresses, which are always accepted) that requests
    /// may name in `Host`; anything else is refused (DNS rebinding).
    pub allowed_hosts: Vec<AllowedHost>,
    /// Open connections; at the cap the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// Longest wait for a request's headers, also between keep-alive requests.
    pub header_read_timeout: Duration,
}

/// One `http.allowed_hosts` entry: a lower-case name, and a port when the
/// entry names one (then only that port matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    pub name: String,
    pub port: Option<u16>,
}

impl AllowedHost {
    /// Parses `name`, `name:port`, `[v6]` or `[v6]:port`; `None` when it is
    /// none of these.
    pub fn parse(entry: &str) -> Option<AllowedHost> {
        let entry = entry.trim().to_ascii_lowercase();
        let (name, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
            };
            return Some(AllowedHost {
                name: format!("[{inside}]"),
                port,
            });
        } else {
            match entry.split_once(':') {
                Some((n, p)) => (n, Some(p.parse::<u16>().ok()?)),
                None => (entry.as_str(), None),
            }
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        valid_domain(name).then(|| AllowedHost {
            name: name.to_string(),
            port,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TicketsConfig {
    pub tag: crate::mail::TagFormat,
    pub first_number: u64,
    /// Where the key that signs reply tokens comes from.
    pub reply_token_key: TokenKeySource,
    /// Rejections older than this are pruned with their raw bytes.
    pub rejection_retention: Duration,
}

/// The reply-token key: an environment variable (hex, at least 32 bytes),
/// or a file (generated 0600 on first start when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKeySource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct MailboxConfig {
    pub name: String,
    /// This mailbox's own send limits, over `[outbound]`'s.
    pub send_limits: outbound::MailboxLimits,
    /// Display name of the From of mail sent for this mailbox.
    pub display_name: Option<String>,
    /// Lower-cased addresses.
    pub addresses: Vec<String>,
    pub queue: String,
    pub default: bool,
    /// The upstream mailbox to pull from, if any.
    pub upstream: Option<UpstreamConfig>,
    /// `[mailbox.oauth2]`: where its OAuth2 access tokens come from.
    pub oauth2: Option<oauth2::OAuth2Config>,
    /// `[mailbox.relay]`: this mailbox's own outbound relay (over `[relay]`).
    pub relay: Option<relay::RelayConfig>,
    /// Lower-cased addresses of the agents notified when a ticket has no assignee.
    pub team: Vec<String>,
    /// `[mailbox.notify.<name>]`: per notification, on or off and to whom.
    pub notify: std::collections::BTreeMap<notify::Notification, notify::NotifyOverride>,
    /// `[[mailbox.rule]]`: this mailbox's mail rules, after the global ones.
    pub rules: Vec<crate::rules::Rule>,
    /// `role`: a helpdesk mailbox, or a BCC importer (with its settings).
    pub role: role::MailboxRole,
    /// `internal_unthreaded`: what internal mail that threads nowhere becomes.
    pub internal_unthreaded: role::InternalUnthreaded,
}

// ---- raw shape, as written in TOML ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    server: RawServer,
    smtp: RawSmtp,
    limits: RawLimits,
    store: store::RawStore,
    tls: RawTls,
    http: RawHttp,
    tickets: RawTickets,
    outbound: outbound::RawOutbound,
    notify: notify::RawNotify,
    category: Vec<categories::RawCategory>,
    mailbox: Vec<RawMailbox>,
    rule: Vec<rules::RawRule>,
    relay: Option<relay::RawRelay>,
    submission: Option<submission::RawSubmission>,
    oauth: oauth2::RawOAuth,
}

#[derive(Deserialize)]
#[serde(default)]
struct RawServer {
    hostname: String,
    data_dir: String,
    domains: Vec<String>,
    internal_domains: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            hostname: "localhost".into(),
            data_dir: "data".into(),
            domains: Vec::new(),
            internal_domains: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawSmtp {
    listen: Vec<String>,
    listen_tls: Vec<String>,
    bare_lf: String,
    max_connections: i64,
    max_connections_per_ip: i64,
    connections_per_minute_per_ip: i64,
    idle_timeout: Quantity,
    min_data_rate: i64,
    max_recipients: i64,
    max_commands: i64,
    max_line_length: i64,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            listen: vec!["127.0.0.1:2525".into()],
            listen_tls: vec!["127.0.0.1:2465".into()],
            bare_lf: "normalize".into(),
            max_connections: 256,
            max_connections_per_ip: 50,
            connections_per_minute_per_ip: 600,
            idle_timeout: Quantity::Text("5m".into()),
            min_data_rate: 500,
            max_recipients: 100,
            max_commands: 10_000,
            max_line_length: 4096,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawLimits {
    max_message_size: Quantity,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_size: Quantity::Text("50MB".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    dev_cert_dir: String,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            cert: None,
            key: None,
            dev_cert_dir: "certs".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawHttp {
    listen: String,
    api_token_env: Option<String>,
    allowed_hosts: Vec<String>,
    max_connections: i64,
    header_read_timeout: Quantity,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8025".into(),
            api_token_env: None,
            allowed_hosts: vec!["localhost".into()],
            max_connections: 256,
            header_read_timeout: Quantity::Text("10s".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RawTickets {
    tag: String,
    first_number: i64,
    reply_token_key_env: Option<String>,
    reply_token_key_file: Option<String>,
    rejection_retention: Quantity,
}

impl Default for RawTickets {
    fn default() -> Self {
        RawTickets {
            tag: "[MG#{number}]".into(),
            first_number: 1000,
            reply_token_key_env: None,
            reply_token_key_file: None,
            rejection_retention: Quantity::Text("30d".into()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMailbox {
    name: String,
    send_limits: Option<outbound::RawMailboxLimits>,
    display_name: Option<String>,
    addresses: Vec<String>,
    queue: Option<String>,
    default: bool,
    upstream: Option<RawUpstream>,
    oauth2: Option<oauth2::RawOAuth2>,
    relay: Option<relay::RawRelay>,
    team: Vec<String>,
    notify: std::collections::BTreeMap<String, notify::RawOverride>,
    rule: Vec<rules::RawRule>,
    role: Option<String>,
    import_into: Option<String>,
    ticket_number_pattern: Option<String>,
    internal_unthreaded: Option<String>,
}

/// A size or duration: a plain number or a string with a unit.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum Quantity {
    Number(i64),
    Text(String),
}

impl Quantity {
    fn describe(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(s) => format!("{s:?}"),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    /// `serve` without --config: the default path, or the embedded copy.
    pub fn load_default() -> Result<(Config, String), ConfigError> {
        let path = Path::new(DEFAULT_PATH);
        if path.exists() {
            Ok((Config::load(path)?, DEFAULT_PATH.to_string()))
        } else {
            Ok((
                Config::parse(EMBEDDED_DEFAULT)?,
                "(embedded default)".into(),
            ))
        }
    }

    /// Parses and validates TOML text, listing every problem.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let deserializer = toml::Deserializer::new(text);
        let raw: Raw = match serde_ignored::deserialize(deserializer, |path| {
            let key = display_path(&path.to_string());
            let relay_password = key == "relay.password" || key.ends_with(".relay.password");
            if key.ends_with("upstream.password") || relay_password {
                let or_prompt = if relay_password {
                    ""
                } else {
                    ", or type it at `mailgate sync`"
                };
                problems.push(format!(
                    "{key}: passwords are never written in the config; use password_env or password_file{or_prompt}"
                ));
            } else if let Some(problem) = oauth2::ignored_key_problem(&key) {
                problems.push(problem);
            } else if let Some(problem) = submission::ignored_key_problem(&key) {
                problems.push(problem);
            } else {
                problems.push(format!("unknown key: {key}"));
            }
        }) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(syntax_problem(&e, text));
                return Err(ConfigError::Invalid(problems));
            }
        };
        let config = validate(raw, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The mailbox with `default = true`, if any.
    pub fn default_mailbox(&self) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|m| m.default)
    }

    pub fn db_path(&self) -> PathBuf {
        self.server.data_dir.join("mailgate.redb")
    }
}

/// serde_ignored writes array indices as `mailbox.0.x`; show `mailbox[0].x`.
fn display_path(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| *p != "?") {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A TOML or type error, with its line and the key toml names.
fn syntax_problem(error: &toml::de::Error, text: &str) -> String {
    let mut message = error.message().trim().to_string();
    match error.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            // toml quotes a mistyped value (`invalid type: integer `123``):
            // not for a key that holds a secret's source.
            let key = text[..start].rsplit('\n').next().unwrap_or("");
            if ["password", "token", "secret"]
                .iter()
                .any(|s| key.contains(s))
            {
                message = upstream::hide_quoted(&message);
            }
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn validate(raw: Raw, problems: &mut Vec<String>) -> Config {
    let mut err = |key: &str, msg: String| problems.push(format!("{key}: {msg}"));

    // server
    let hostname = raw.server.hostname.trim().to_string();
    if hostname.is_empty() || hostname.contains(char::is_whitespace) {
        err("server.hostname", format!("invalid host name {hostname:?}"));
    }
    let mut domains = Vec::new();
    for (i, d) in raw.server.domains.iter().enumerate() {
        let d = d.trim().to_ascii_lowercase();
        if !valid_domain(&d) {
            err(
                &format!("server.domains[{i}]"),
                format!("invalid domain {d:?}"),
            );
        } else if domains.contains(&d) {
            err(
                &format!("server.domains[{i}]"),
                format!("duplicate domain {d:?}"),
            );
        } else {
            domains.push(d);
        }
    }
    if domains.is_empty() {
        err(
            "server.domains",
            "at least one served domain is required".into(),
        );
    }
    let mut internal_domains = Vec::new();
    for (i, d) in raw.server.internal_domains.iter().enumerate() {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if !valid_domain(&d) {
            err(
                &format!("server.internal_domains[{i}]"),
                format!("invalid domain {d:?}"),
            );
        } else if !internal_domains.contains(&d) {
            internal_domains.push(d);
        }
    }
    if raw.server.data_dir.trim().is_empty() {
        err("server.data_dir", "must not be empty".into());
    }

    // smtp
    let listen = socket_list("smtp.listen", &raw.smtp.listen, &mut err);
    let listen_tls = socket_list("smtp.listen_tls", &raw.smtp.listen_tls, &mut err);
    if listen.is_empty() && listen_tls.is_empty() {
        err(
            "smtp.listen",
            "no SMTP listener configured (smtp.listen and smtp.listen_tls are both empty)".into(),
        );
    }
    let bare_lf = match raw.smtp.bare_lf.as_str() {
        "normalize" => BareLf::Normalize,
        "reject" => BareLf::Reject,
        other => {
            err(
                "smtp.bare_lf",
                format!("must be \"normalize\" or \"reject\", not {other:?}"),
            );
            BareLf::Normalize
        }
    };
    let max_connections = positive("smtp.max_connections", raw.smtp.max_connections, &mut err);
    let max_connections_per_ip = positive(
        "smtp.max_connections_per_ip",
        raw.smtp.max_connections_per_ip,
        &mut err,
    );
    let rate = positive(
        "smtp.connections_per_minute_per_ip",
        raw.smtp.connections_per_minute_per_ip,
        &mut err,
    );
    let idle_timeout = duration("smtp.idle_timeout", &raw.smtp.idle_timeout, &mut err);
    let min_data_rate = non_negative("smtp.min_data_rate", raw.smtp.min_data_rate, &mut err);
    let max_recipients = positive("smtp.max_recipients", raw.smtp.max_recipients, &mut err);
    let max_commands = positive("smtp.max_commands", raw.smtp.max_commands, &mut err);
    let max_line_length = positive("smtp.max_line_length", raw.smtp.max_line_length, &mut err);
    if (1..512).contains(&max_line_length) {
        err(
            "smtp.max_line_length",
            format!("{max_line_length} is below the 512 bytes RFC 5321 requires"),
        );
    }

    // limits
    let max_message_size = size(
        "limits.max_message_size",
        &raw.limits.max_message_size,
        &mut err,
    );
    let store = store::validate(&raw.store, &mut err);

    // tls
    let cert = raw.tls.cert.as_deref().map(PathBuf::from);
    let key = raw.tls.key.as_deref().map(PathBuf::from);
    match (&cert, &key) {
        (Some(_), None) => err(
            "tls.key",
            "missing: tls.cert is set, so tls.key is needed too".into(),
        ),
        (None, Some(_)) => err(
            "tls.cert",
            "missing: tls.key is set, so tls.cert is needed too".into(),
        ),
        _ => {}
    }
    for (k, p) in [("tls.cert", &cert), ("tls.key", &key)] {
        if let Some(p) = p
            && !p.is_file()
        {
            err(k, format!("file not found: {}", p.display()));
        }
    }
    if cert.is_none() && raw.tls.dev_cert_dir.trim().is_empty() {
        err(
            "tls.dev_cert_dir",
            "must not be empty when tls.cert is not set".into(),
        );
    }

    // http
    let http_listen = match raw.http.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            err(
                "http.listen",
                format!("invalid socket address {:?}", raw.http.listen),
            );
            SocketAddr::from(([127, 0, 0, 1], 8025))
        }
    };
    let api_token_env = raw.http.api_token_env.filter(|s| !s.is_empty());
    if let Some(name) = &api_token_env
        && !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        err(
            "http.api_token_env",
            "is not an environment variable name (letters, digits and _ only); it must not be the token itself (value not shown)".into(),
        );
    }
    let mut allowed_hosts = Vec::new();
    for entry in &raw.http.allowed_hosts {
        match AllowedHost::parse(entry) {
            Some(h) => allowed_hosts.push(h),
            None => err(
                "http.allowed_hosts",
                format!("{entry:?} is not a host name, optionally with \":port\""),
            ),
        }
    }
    let http_max_connections = positive("http.max_connections", raw.http.max_connections, &mut err);
    let header_read_timeout = duration(
        "http.header_read_timeout",
        &raw.http.header_read_timeout,
        &mut err,
    );

    // tickets
    let tag = match crate::mail::TagFormat::parse(&raw.tickets.tag) {
        Ok(t) => t,
        Err(msg) => {
            err("tickets.tag", msg);
            crate::mail::TagFormat::default()
        }
    };
    let first_number = if raw.tickets.first_number < 1 {
        err(
            "tickets.first_number",
            format!("must be at least 1, not {}", raw.tickets.first_number),
        );
        1
    } else {
        raw.tickets.first_number as u64
    };
    let outbound = outbound::validate(&raw.outbound, &mut err);
    let notify = notify::validate(&raw.notify, &mut err);
    let categories = categories::validate(&raw.category, &mut err);
    let category_keys: Vec<String> = categories.iter().map(|c| c.key.clone()).collect();
    let known = rules::Known {
        categories: &category_keys,
        templates_dir: &notify.templates_dir,
    };
    let global_rules = rules::validate("rule", &raw.rule, &known, &mut err);
    let reply_token_key = match (
        raw.tickets.reply_token_key_env.as_deref().map(str::trim),
        raw.tickets.reply_token_key_file.as_deref().map(str::trim),
    ) {
        (Some(_), Some(_)) => {
            err(
                "tickets.reply_token_key_env",
                "set reply_token_key_env or reply_token_key_file, not both".into(),
            );
            TokenKeySource::File(PathBuf::new())
        }
        (Some(name), None) => {
            if !valid_env_name(name) {
                err(
                    "tickets.reply_token_key_env",
                    "must name an environment variable (letters, digits, _), not hold the key itself"
                        .into(),
                );
            }
            TokenKeySource::Env(name.to_string())
        }
        (None, Some(path)) if !path.is_empty() => TokenKeySource::File(PathBuf::from(path)),
        _ => TokenKeySource::File(PathBuf::from(&raw.server.data_dir).join("reply-token.key")),
    };

    // mailboxes
    let mut mailboxes = Vec::new();
    let mut names = BTreeSet::new();
    let mut all_addresses = BTreeSet::new();
    let mut defaults = 0;
    for (i, m) in raw.mailbox.iter().enumerate() {
        let key = format!("mailbox[{i}]");
        let name = m.name.trim().to_string();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            err(
                &format!("{key}.name"),
                format!("invalid mailbox name {name:?} (letters, digits, - _ . only)"),
            );
        } else if !names.insert(name.clone()) {
            err(
                &format!("{key}.name"),
                format!("duplicate mailbox name {name:?}"),
            );
        }
        let mut addresses = Vec::new();
        if m.addresses.is_empty() {
            err(
                &format!("{key}.addresses"),
                "at least one address is required".into(),
            );
        }
        for (j, a) in m.addresses.iter().enumerate() {
            let akey = format!("{key}.addresses[{j}]");
            let a = a.trim().to_lowercase();
            match a.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && valid_domain(domain) => {
                    if !domains.iter().any(|d| d == domain) {
                        err(&akey, format!("domain of {a:?} is not in server.domains"));
                    } else if !all_addresses.insert(a.clone()) {
                        err(
                            &akey,
                            format!("address {a:?} belongs to more than one mailbox"),
                        );
                    } else {
                        addresses.push(a);
                    }
                }
                _ => err(&akey, format!("invalid address {a:?}")),
            }
        }
        if m.default {
            defaults += 1;
        }
        let oauth2 = m
            .oauth2
            .as_ref()
            .map(|o| oauth2::validate(&format!("{key}.oauth2"), o, &mut err));
        let upstream = m
            .upstream
            .as_ref()
            .map(|u| upstream::validate(&format!("{key}.upstream"), u, &mut err));
        if let Some(u) = &upstream {
            upstream::check_oauth2(&key, u, oauth2.as_ref(), &mut err);
        }
        let own = relay::OwnMailbox {
            key: &key,
            name: &name,
            addresses: &addresses,
            upstream: upstream.as_ref(),
            oauth2: oauth2.as_ref(),
        };
        let relay = (m.relay.as_ref())
            .map(|r| relay::validate(r, &relay::Scope::Mailbox(own), &hostname, &mut err));
        let default_name = (raw.mailbox.iter().find(|m| m.default)).map(|m| m.name.trim());
        let (role, internal_unthreaded) = role::validate(
            &key,
            &role::RawRole {
                role: m.role.as_deref(),
                import_into: m.import_into.as_deref(),
                ticket_number_pattern: m.ticket_number_pattern.as_deref(),
                internal_unthreaded: m.internal_unthreaded.as_deref(),
            },
            default_name,
            &mut err,
        );
        mailboxes.push(MailboxConfig {
            role,
            internal_unthreaded,
            relay,
            upstream,
            oauth2,
            queue: m
                .queue
                .clone()
                .filter(|q| !q.trim().is_empty())
                .unwrap_or_else(|| name.clone()),
            send_limits: m
                .send_limits
                .as_ref()
                .map(|l| outbound::validate_mailbox(&format!("{key}.send_limits"), l, &mut err))
                .unwrap_or_default(),
            display_name: m
                .display_name
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            team: notify::addresses(&format!("{key}.team"), &m.team, &mut err),
            notify: notify::validate_mailbox(&key, &m.notify, &mut err),
            rules: rules::validate(&format!("{key}.rule"), &m.rule, &known, &mut err),
            name,
            addresses,
            default: m.default,
        });
    }
    role::check_targets(&mailboxes, &mut err);
    if mailboxes.is_empty() {
        err("mailbox", "at least one [[mailbox]] is required".into());
    }
    if defaults > 1 {
        err(
            "mailbox",
            format!("{defaults} mailboxes have default = true; at most one may"),
        );
    }

    let relay = (raw.relay.as_ref())
        .map(|r| relay::validate(r, &relay::Scope::Global, &hostname, &mut err));
    if let Some(o) = relay.as_ref().and_then(|r| r.oauth2.as_ref()) {
        relay::check_oauth2_mailbox(o, &mailboxes, &mut err);
    }
    if let Some(a) = relay.as_ref().and_then(|r| r.api.as_ref()) {
        relay::check_api_mailbox(a, &mailboxes, &mut err);
    }
    let taken = submission::Taken {
        smtp_listen: &listen,
        smtp_listen_tls: &listen_tls,
        http_listen,
        mailboxes: &mailboxes,
        max_message_size,
    };
    let submission =
        (raw.submission.as_ref()).and_then(|s| submission::validate(s, &taken, &mut err));

    let oauth = oauth2::validate_settings(&raw.oauth, &raw.server.data_dir, &mut err);
    Config {
        relay,
        submission,
        oauth,
        rules: global_rules,
        server: ServerConfig {
            hostname,
            data_dir: PathBuf::from(raw.server.data_dir),
            domains,
            internal_domains,
        },
        smtp: SmtpConfig {
            listen,
            listen_tls,
            bare_lf,
            max_connections,
            max_connections_per_ip,
            connections_per_minute_per_ip: u32::try_from(rate).unwrap_or(u32::MAX),
            idle_timeout,
            min_data_rate,
            max_recipients,
            max_commands,
            max_line_length,
        },
        limits: LimitsConfig { max_message_size },
        store,
        tls: TlsConfig {
            cert,
            key,
            dev_cert_dir: PathBuf::from(raw.tls.dev_cert_dir),
        },
        http: HttpConfig {
            listen: http_listen,
            api_token_env,
            allowed_hosts,
            max_connections: http_max_connections,
            header_read_timeout,
        },
        tickets: TicketsConfig {
            tag,
            first_number,
            reply_token_key,
            rejection_retention: duration(
                "tickets.rejection_retention",
                &raw.tickets.rejection_retention,
                &mut err,
            ),
        },
        outbound,
        notify,
        categories,
        mailboxes,
    }
}

/// An environment variable name as a shell would accept it.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn socket_list(key: &str, list: &[String], err: &mut impl FnMut(&str, String)) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match s.parse::<SocketAddr>() {
            Ok(a) => out.push(a),
            Err(_) => err(
                &format!("{key}[{i}]"),
                format!("invalid socket address {s:?}"),
            ),
        }
    }
    out
}

pub(crate) fn positive(key: &str, value: i64, err: &mut impl FnMut(&str, String)) -> usize {
    if value < 1 {
        err(key, format!("must be a positive number, not {value}"));
        1
    } else {
        usize::try_from(value).unwrap_or(usize::MAX)
    }
}

pub(crate) fn non_negative(key: &str, value: i64, err: &mut impl FnMut(&str, String)) -> u64 {
    u64::try_from(value).unwrap_or_else(|_| {
        err(key, format!("must be 0 or more, not {value}"));
        0
    })
}

pub(crate) fn size(key: &str, q: &Quantity, err: &mut impl FnMut(&str, String)) -> usize {
    let bytes = match q {
        Quantity::Number(n) if *n > 0 => Some(*n as u64),
        Quantity::Number(_) => None,
        Quantity::Text(s) => s
            .trim()
            .parse::<bytesize::ByteSize>()
            .ok()
            .map(|b| b.as_u64()),
    };
    match bytes {
        Some(b) if b >= 1024 => usize::try_from(b).unwrap_or(usize::MAX),
        Some(b) => {
            err(
                key,
                format!("{} is too small ({b} bytes; at least 1KiB)", q.describe()),
            );
            1024
        }
        None => {
            err(
                key,
                format!(
                    "invalid size {} (use bytes or a unit, e.g. \"50MB\")",
                    q.describe()
                ),
            );
            1024
        }
    }
}

pub(crate) fn duration(key: &str, q: &Quantity, err: &mut impl FnMut(&str, String)) -> Duration {
    let d = match q {
        Quantity::Number(n) if *n > 0 => Some(Duration::from_secs(*n as u64)),
        Quantity::Number(_) => None,
        Quantity::Text(s) => humantime::parse_duration(s.trim())
            .ok()
            .filter(|d| !d.is_zero()),
    };
    d.unwrap_or_else(|| {
        err(
            key,
            format!(
                "invalid duration {} (use seconds or a unit, e.g. \"5m\")",
                q.describe()
            ),
        );
        Duration::from_secs(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::parse(EMBEDDED_DEFAULT).expect("embedded default must validate");
        assert_eq!(c.limits.max_message_size, 50_000_000);
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(c.smtp.max_connections_per_ip, 50);
        assert_eq!(
            c.default_mailbox().map(|m| m.name.as_str()),
            Some("support")
        );
    }

    #[test]
    fn http_section() {
        let c = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(
            c.http.allowed_hosts,
            vec![AllowedHost {
                name: "localhost".into(),
                port: None
            }]
        );
        assert_eq!(c.http.max_connections, 256);
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(
            AllowedHost::parse("Mail.Example.:8025"),
            Some(AllowedHost {
                name: "mail.example".into(),
                port: Some(8025)
            })
        );
        assert_eq!(
            AllowedHost::parse("[::1]:80").map(|h| h.name),
            Some("[::1]".into())
        );
        let text = r#"
[http]
allowed_hosts = ["localhost", "http://x.example/", "a:b"]
max_connections = 0
header_read_timeout = "later"
"#;
        let joined = Config::parse(text).unwrap_err().problems().join("\n");
        for expected in [
            "http.allowed_hosts: \"http://x.example/\" is not a host name",
            "http.allowed_hosts: \"a:b\" is not a host name",
            "http.max_connections: must be a positive number",
            "http.header_read_timeout: invalid duration",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let text = r#"
[server]
domains = ["example.test", "bad domain"]
[smtp]
listen = ["nope"]
lisen = 3
bare_lf = "maybe"
idle_timeout = "soon"
min_data_rate = -1
max_connections_per_ip = 0
[limits]
max_message_size = "50XB"
[tls]
cert = "/nonexistent/cert.pem"
key = "/nonexistent/key.pem"
[[mailbox]]
name = "a"
addresses = ["foo", "x@other.test"]
[[mailbox]]
name = "a"
addresses = ["y@example.test"]
default = true
colour = "red"
"#;
        let problems = Config::parse(text).unwrap_err().problems();
        let joined = problems.join("\n");
        for expected in [
            "unknown key: smtp.lisen",
            "unknown key: mailbox[1].colour",
            "server.domains[1]: invalid domain",
            "smtp.listen[0]: invalid socket address \"nope\"",
            "smtp.bare_lf: must be",
            "smtp.idle_timeout: invalid duration",
            "smtp.min_data_rate: must be 0 or more, not -1",
            "smtp.max_connections_per_ip: must be a positive number, not 0",
            "limits.max_message_size: invalid size \"50XB\"",
            "tls.cert: file not found: /nonexistent/cert.pem",
            "tls.key: file not found",
            "mailbox[0].addresses[0]: invalid address \"foo\"",
            "mailbox[0].addresses[1]: domain of \"x@other.test\" is not in server.domains",
            "mailbox[1].name: duplicate mailbox name",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn type_errors_name_the_line() {
        let problems = Config::parse("[smtp]\nmax_recipients = \"many\"\n")
            .unwrap_err()
            .problems();
        assert!(problems[0].starts_with("line 2:"), "{problems:?}");
    }

    #[test]
    fn sizes_and_durations_accept_units_and_numbers() {
        let c = Config::parse(
            "[server]\ndomains=[\"a.test\"]\n[limits]\nmax_message_size = 2048\n[smtp]\nidle_timeout = 30\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_message_size, 2048);
        assert_eq!(c.smtp.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.mailboxes[0].queue, "m");
    }

    #[test]
    fn gmail_upstream_defaults_and_problems() {
        let base = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.oauth2]\nprovider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n[mailbox.upstream]\nprotocol=\"gmail\"\n";
        let c = Config::parse(base).unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        let g = u.gmail.as_ref().unwrap();
        assert_eq!(
            (u.user.as_str(), u.host.as_str(), u.port),
            ("me", "gmail.googleapis.com", 443)
        );
        assert_eq!(g.api_base, "https://gmail.googleapis.com");
        assert_eq!(
            (g.label.as_str(), g.processed_label.as_str()),
            ("INBOX", "Mailgate")
        );
        let bad = format!(
            "{base}api_base=\"http://x.test\"\nfolder=\"INBOX.x\"\nafter_import=\"move\"\nrejected_label=\"\"\n"
        );
        let e = Config::parse(&bad).unwrap_err().to_string();
        for key in [
            "upstream.api_base: must be an https://",
            "upstream.folder: Gmail has labels",
            "upstream.after_import: Gmail supports",
            "upstream.rejected_label:",
        ] {
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn upstream_defaults_and_problems() {
        let base = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.upstream]\n";
        let c = Config::parse(&format!(
            "{base}protocol=\"imap\"\nhost=\"imap.a.test\"\nuser=\"u\"\npassword_env=\"PW\"\n"
        ))
        .unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(u.port, 993);
        assert_eq!(u.fetch_per_minute, 25);
        assert_eq!(u.poll_interval, Duration::from_secs(60));
        assert!(matches!(
            u.after_import,
            crate::mail::AfterImport::Label { .. }
        ));
        let c = Config::parse(&format!(
            "{base}protocol=\"pop3\"\nsecurity=\"starttls\"\nhost=\"h\"\nuser=\"u\"\n"
        ))
        .unwrap();
        let u = c.mailboxes[0].upstream.as_ref().unwrap();
        assert_eq!(
            (u.port, &u.password),
            (110, &upstream::PasswordSource::Prompt)
        );
        assert_eq!(u.after_import, crate::mail::AfterImport::Delete);

        let problems = Config::parse(&format!(
            "{base}protocol=\"smtp\"\nsecurity=\"none\"\nuser=\"\"\npassword=\"oops\"\nafter_import=\"move\"\nprocessed_keyword=\"a b\"\nca_file=\"/nope.pem\"\n"
        ))
        .unwrap_err()
        .problems()
        .join("\n");
        for expected in [
            "mailbox[0].upstream.password: passwords are never written in the config",
            "mailbox[0].upstream.protocol: must be",
            "mailbox[0].upstream.host: missing",
            "mailbox[0].upstream.security: \"none\" sends the password in the clear",
            "mailbox[0].upstream.user: missing",
            "mailbox[0].upstream.processed_folder: required",
            "mailbox[0].upstream.processed_keyword:",
            "mailbox[0].upstream.ca_file: file not found",
        ] {
            assert!(
                problems.contains(expected),
                "missing {expected:?} in:\n{problems}"
            );
        }
    }
}
