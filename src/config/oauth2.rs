//! `[mailbox.oauth2]` (how a Microsoft 365 or Google mailbox gets its
//! access tokens) and `[oauth]` (the key that encrypts stored tokens, and
//! when failing refreshes make the gateway report itself degraded).
//!
//! Secrets are never in the config: the client secret and the initial
//! refresh token come from an environment variable or a file, named here.
//! A `client_secret` or `refresh_token` key is an error that says so.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Quantity, TokenKeySource, duration, valid_env_name};

/// Who runs the authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthProvider {
    Microsoft,
    Google,
}

impl OAuthProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthProvider::Microsoft => "microsoft",
            OAuthProvider::Google => "google",
        }
    }
}

/// What an access token is for: it picks the default scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenUse {
    Imap,
    Smtp,
    Graph,
    Gmail,
}

impl TokenUse {
    pub const ALL: [TokenUse; 4] = [
        TokenUse::Imap,
        TokenUse::Smtp,
        TokenUse::Graph,
        TokenUse::Gmail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Imap => "imap",
            TokenUse::Smtp => "smtp",
            TokenUse::Graph => "graph",
            TokenUse::Gmail => "gmail",
        }
    }
}

/// An environment variable or a file holding a secret. Debug shows
/// neither (a secret may have been pasted into the wrong key).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretSource::Env(_) => "Env(<not shown>)",
            SecretSource::File(_) => "File(<not shown>)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    pub provider: OAuthProvider,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// Microsoft's directory (tenant) id or domain; `None` for Google.
    pub tenant: Option<String>,
    pub token_url: String,
    pub authorize_url: String,
    /// Set: these scopes for every use; unset: the defaults per use.
    pub scopes: Option<Vec<String>>,
    /// `imap_scopes`, `smtp_scopes`, `graph_scopes`, `gmail_scopes`: one
    /// use's own scopes, over `scopes` and the default (a Microsoft access
    /// token is for one resource: Graph and outlook.office.com need two).
    pub scopes_by_use: Vec<(TokenUse, Vec<String>)>,
    /// Where the refresh token the admin starts with comes from (the
    /// stored one wins once the gateway has one of its own).
    pub refresh_token: Option<SecretSource>,
    /// When the client secret expires (Microsoft's app secrets do).
    pub client_secret_expires: Option<time::Date>,
    pub ca_file: Option<PathBuf>,
    /// Per request to the token endpoint.
    pub timeout: Duration,
}

impl OAuth2Config {
    /// The scopes requested for `use_`.
    pub fn scopes_for(&self, use_: TokenUse) -> Vec<String> {
        if let Some((_, s)) = self.scopes_by_use.iter().find(|(u, _)| *u == use_) {
            return s.clone();
        }
        if let Some(s) = &self.scopes {
            return s.clone();
        }
        let list: &[&str] = match (self.provider, use_) {
            (OAuthProvider::Microsoft, TokenUse::Graph) => &[
                "https://graph.microsoft.com/Mail.ReadWrite",
                "https://graph.microsoft.com/Mail.Send",
                "offline_access",
            ],
            (OAuthProvider::Microsoft, TokenUse::Imap) => &[
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access",
            ],
            (OAuthProvider::Microsoft, TokenUse::Smtp) => {
                &["https://outlook.office.com/SMTP.Send", "offline_access"]
            }
            (OAuthProvider::Microsoft, TokenUse::Gmail) => &["offline_access"],
            (OAuthProvider::Google, TokenUse::Gmail | TokenUse::Graph) => {
                &["https://www.googleapis.com/auth/gmail.modify"]
            }
            (OAuthProvider::Google, TokenUse::Imap | TokenUse::Smtp) => {
                &["https://mail.google.com/"]
            }
        };
        list.iter().map(|s| s.to_string()).collect()
    }
}

/// `[oauth]`: settings shared by every OAuth2 mailbox.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The key that encrypts stored tokens (32 bytes, hex or base64).
    pub key: TokenKeySource,
    /// Refreshes failing this long make /healthz report `degraded`.
    pub degraded_after: Duration,
}

#[derive(Deserialize)]
#[serde(default)]
pub(super) struct RawOAuth {
    key_env: Option<String>,
    key_file: Option<String>,
    degraded_after: Quantity,
}

impl Default for RawOAuth {
    fn default() -> Self {
        RawOAuth {
            key_env: None,
            key_file: None,
            degraded_after: Quantity::Text("1h".into()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawOAuth2 {
    provider: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<String>,
    tenant: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    scopes: Option<Vec<String>>,
    imap_scopes: Option<Vec<String>>,
    smtp_scopes: Option<Vec<String>>,
    graph_scopes: Option<Vec<String>>,
    gmail_scopes: Option<Vec<String>>,
    refresh_token_env: Option<String>,
    refresh_token_file: Option<String>,
    client_secret_expires: Option<String>,
    ca_file: Option<String>,
    timeout: Option<Quantity>,
}

/// A problem for a key serde did not know, when it is a secret written
/// into the config.
pub(super) fn ignored_key_problem(key: &str) -> Option<String> {
    let (_, field) = key.rsplit_once(".oauth2.")?;
    let hint = match field {
        "client_secret" => "client_secret_env or client_secret_file",
        "refresh_token" => "refresh_token_env or refresh_token_file",
        "access_token" => "nothing: access tokens are obtained by the gateway",
        _ => return None,
    };
    Some(format!(
        "{key}: secrets are never written in the config; use {hint}"
    ))
}

pub(super) fn validate_settings(
    raw: &RawOAuth,
    data_dir: &str,
    err: &mut impl FnMut(&str, String),
) -> OAuthSettings {
    let key = match (
        raw.key_env.as_deref().map(str::trim),
        raw.key_file.as_deref().map(str::trim),
    ) {
        (Some(_), Some(_)) => {
            err("oauth.key_env", "set key_env or key_file, not both".into());
            TokenKeySource::File(PathBuf::new())
        }
        (Some(name), None) => {
            if !valid_env_name(name) {
                err(
                    "oauth.key_env",
                    "must name an environment variable (letters, digits, _), not hold the key itself"
                        .into(),
                );
            }
            TokenKeySource::Env(name.to_string())
        }
        (None, Some(path)) if !path.is_empty() => TokenKeySource::File(PathBuf::from(path)),
        _ => TokenKeySource::File(PathBuf::from(data_dir).join("oauth-token.key")),
    };
    OAuthSettings {
        key,
        degraded_after: duration("oauth.degraded_after", &raw.degraded_after, err),
    }
}

fn secret_source(
    key: &str,
    what: &str,
    env: &Option<String>,
    file: &Option<String>,
    err: &mut impl FnMut(&str, String),
) -> Option<SecretSource> {
    match (
        env.as_deref().map(str::trim),
        file.as_deref().map(str::trim),
    ) {
        (Some(_), Some(_)) => {
            err(
                &format!("{key}.{what}_env"),
                format!("set {what}_env or {what}_file, not both"),
            );
            None
        }
        (Some(name), None) => {
            if !valid_env_name(name) {
                err(
                    &format!("{key}.{what}_env"),
                    "must name an environment variable (letters, digits, _), not hold the secret itself"
                        .into(),
                );
            }
            Some(SecretSource::Env(name.to_string()))
        }
        (None, Some(path)) if !path.is_empty() => Some(SecretSource::File(PathBuf::from(path))),
        (None, Some(_)) => {
            err(&format!("{key}.{what}_file"), "must not be empty".into());
            None
        }
        (None, None) => None,
    }
}

fn https_url(key: &str, url: &str, err: &mut impl FnMut(&str, String)) {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => {}
        _ => err(key, format!("must be an https:// URL, not {url:?}")),
    }
}

/// `key` is `mailbox[i].oauth2`.
pub(super) fn validate(
    key: &str,
    raw: &RawOAuth2,
    err: &mut impl FnMut(&str, String),
) -> OAuth2Config {
    let k = |field: &str| format!("{key}.{field}");
    let provider = match raw.provider.trim() {
        "microsoft" => OAuthProvider::Microsoft,
        "google" => OAuthProvider::Google,
        "" => {
            err(
                &k("provider"),
                "missing: \"microsoft\" or \"google\"".into(),
            );
            OAuthProvider::Microsoft
        }
        other => {
            err(
                &k("provider"),
                format!("must be \"microsoft\" or \"google\", not {other:?}"),
            );
            OAuthProvider::Microsoft
        }
    };
    let client_id = raw.client_id.trim().to_string();
    if client_id.is_empty() {
        err(&k("client_id"), "missing".into());
    }
    let client_secret = secret_source(
        key,
        "client_secret",
        &raw.client_secret_env,
        &raw.client_secret_file,
        err,
    );
    if client_secret.is_none()
        && raw.client_secret_env.is_none()
        && raw.client_secret_file.is_none()
    {
        err(
            &k("client_secret_env"),
            "missing: name the environment variable (client_secret_env) or file (client_secret_file) that holds the client secret".into(),
        );
    }
    let tenant = raw
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    match (provider, &tenant) {
        (OAuthProvider::Microsoft, None)
            if raw.token_url.is_none() || raw.authorize_url.is_none() =>
        {
            err(
                &k("tenant"),
                "missing: Microsoft needs the directory (tenant) id or domain (or both token_url and authorize_url)".into(),
            )
        }
        (OAuthProvider::Microsoft, Some(t))
            if !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
        {
            err(&k("tenant"), format!("invalid tenant {t:?}"))
        }
        (OAuthProvider::Google, Some(_)) => err(
            &k("tenant"),
            "Google has no tenant; remove it (or use provider = \"microsoft\")".into(),
        ),
        _ => {}
    }
    let tenant_part = tenant.clone().unwrap_or_else(|| "common".into());
    let (token_default, authorize_default) = match provider {
        OAuthProvider::Microsoft => (
            format!("https://login.microsoftonline.com/{tenant_part}/oauth2/v2.0/token"),
            format!("https://login.microsoftonline.com/{tenant_part}/oauth2/v2.0/authorize"),
        ),
        OAuthProvider::Google => (
            "https://oauth2.googleapis.com/token".to_string(),
            "https://accounts.google.com/o/oauth2/v2/auth".to_string(),
        ),
    };
    let token_url = raw
        .token_url
        .as_deref()
        .map(str::trim)
        .map(str::to_string)
        .unwrap_or(token_default);
    https_url(&k("token_url"), &token_url, err);
    let authorize_url = raw
        .authorize_url
        .as_deref()
        .map(str::trim)
        .map(str::to_string)
        .unwrap_or(authorize_default);
    https_url(&k("authorize_url"), &authorize_url, err);
    let mut scope_list = |field: &str, list: &Vec<String>| {
        let list: Vec<String> = list
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_string)
            .collect();
        if list.is_empty() {
            err(
                &k(field),
                "must not be empty (leave it out for the defaults)".into(),
            );
        }
        list
    };
    let scopes = raw.scopes.as_ref().map(|l| scope_list("scopes", l));
    let scopes_by_use = [
        (TokenUse::Imap, "imap_scopes", &raw.imap_scopes),
        (TokenUse::Smtp, "smtp_scopes", &raw.smtp_scopes),
        (TokenUse::Graph, "graph_scopes", &raw.graph_scopes),
        (TokenUse::Gmail, "gmail_scopes", &raw.gmail_scopes),
    ]
    .into_iter()
    .filter_map(|(u, field, l)| l.as_ref().map(|l| (u, scope_list(field, l))))
    .collect();
    let refresh_token = secret_source(
        key,
        "refresh_token",
        &raw.refresh_token_env,
        &raw.refresh_token_file,
        err,
    );
    let client_secret_expires = raw.client_secret_expires.as_deref().and_then(|d| {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(d.trim(), format) {
            Ok(date) => Some(date),
            Err(_) => {
                err(
                    &k("client_secret_expires"),
                    format!("must be a date like \"2027-06-30\", not {d:?}"),
                );
                None
            }
        }
    });
    let ca_file = raw.ca_file.as_deref().map(PathBuf::from);
    if let Some(p) = &ca_file
        && !p.exists()
    {
        err(&k("ca_file"), format!("file not found: {}", p.display()));
    }
    let timeout = raw
        .timeout
        .as_ref()
        .map(|q| duration(&k("timeout"), q, err))
        .unwrap_or(Duration::from_secs(30));
    OAuth2Config {
        provider,
        client_id,
        client_secret: client_secret.unwrap_or(SecretSource::Env(String::new())),
        tenant,
        token_url,
        authorize_url,
        scopes,
        scopes_by_use,
        refresh_token,
        client_secret_expires,
        ca_file,
        timeout,
    }
}

/// For the settings that need OAuth2 (`upstream.protocol = "graph"`,
/// `upstream.auth = "oauth2"`, a relay sending as the mailbox with
/// XOAUTH2...): names the setting when the mailbox has no `[mailbox.oauth2]`.
/// `mailbox_key` is `mailbox[i]`, `needed_by` the setting, as written.
pub fn require(
    mailbox_key: &str,
    needed_by: &str,
    oauth2: Option<&OAuth2Config>,
    err: &mut impl FnMut(&str, String),
) {
    if oauth2.is_none() {
        err(
            &format!("{mailbox_key}.oauth2"),
            format!("missing: {needed_by} needs a [mailbox.oauth2] section"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"m\"\naddresses=[\"m@a.test\"]\n[mailbox.oauth2]\n";

    fn problems(text: &str) -> String {
        Config::parse(&format!("{BASE}{text}"))
            .unwrap_err()
            .problems()
            .join("\n")
    }

    #[test]
    fn microsoft_defaults_from_the_tenant() {
        let c = Config::parse(&format!(
            "{BASE}provider=\"microsoft\"\nclient_id=\"cid\"\ntenant=\"contoso.onmicrosoft.com\"\nclient_secret_env=\"CS\"\nrefresh_token_file=\"/run/rt\"\nclient_secret_expires=\"2027-01-31\"\n"
        ))
        .unwrap();
        let o = c.mailboxes[0].oauth2.as_ref().unwrap();
        assert_eq!(
            o.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            o.authorize_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert_eq!(
            o.scopes_for(super::TokenUse::Graph),
            [
                "https://graph.microsoft.com/Mail.ReadWrite",
                "https://graph.microsoft.com/Mail.Send",
                "offline_access"
            ]
        );
        assert_eq!(
            o.scopes_for(super::TokenUse::Imap),
            [
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access"
            ]
        );
        assert_eq!(o.client_secret, super::SecretSource::Env("CS".into()));
        assert_eq!(o.client_secret_expires.unwrap().to_string(), "2027-01-31");
        assert_eq!(format!("{:?}", o.refresh_token), "Some(File(<not shown>))");
        assert_eq!(
            c.oauth.key,
            crate::config::TokenKeySource::File("data/oauth-token.key".into())
        );
        assert_eq!(c.oauth.degraded_after, std::time::Duration::from_secs(3600));
    }

    #[test]
    fn google_defaults_and_overrides() {
        let c = Config::parse(&format!(
            "{BASE}provider=\"google\"\nclient_id=\"cid\"\nclient_secret_file=\"/run/cs\"\ntoken_url=\"https://127.0.0.1:9/token\"\nscopes=[\"a b\", \"c\"]\n[oauth]\nkey_env=\"OK\"\ndegraded_after=\"10m\"\n"
        ))
        .unwrap();
        let o = c.mailboxes[0].oauth2.as_ref().unwrap();
        assert_eq!(o.token_url, "https://127.0.0.1:9/token");
        assert_eq!(
            o.authorize_url,
            "https://accounts.google.com/o/oauth2/v2/auth"
        );
        assert_eq!(o.scopes_for(super::TokenUse::Imap), ["a", "b", "c"]);
        assert_eq!(c.oauth.key, crate::config::TokenKeySource::Env("OK".into()));
        // One use's own scopes win over `scopes`; the others keep `scopes`.
        let c = Config::parse(&format!(
            "{BASE}provider=\"microsoft\"\ntenant=\"t\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\nscopes=[\"all\"]\nsmtp_scopes=[\"https://outlook.office.com/SMTP.Send offline_access\"]\n"
        ))
        .unwrap();
        let o = c.mailboxes[0].oauth2.as_ref().unwrap();
        assert_eq!(
            o.scopes_for(super::TokenUse::Smtp),
            ["https://outlook.office.com/SMTP.Send", "offline_access"]
        );
        assert_eq!(o.scopes_for(super::TokenUse::Graph), ["all"]);
        let p = Config::parse(&format!(
            "{BASE}provider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\ngmail_scopes=[]\n"
        ))
        .unwrap_err()
        .problems()
        .join("\n");
        assert!(
            p.contains("mailbox[0].oauth2.gmail_scopes: must not be empty"),
            "{p}"
        );
        let c = Config::parse(&format!(
            "{BASE}provider=\"google\"\nclient_id=\"cid\"\nclient_secret_env=\"CS\"\n"
        ))
        .unwrap();
        let o = c.mailboxes[0].oauth2.as_ref().unwrap();
        assert_eq!(o.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(
            o.scopes_for(super::TokenUse::Gmail),
            ["https://www.googleapis.com/auth/gmail.modify"]
        );
        assert_eq!(
            o.scopes_for(super::TokenUse::Smtp),
            ["https://mail.google.com/"]
        );
    }

    #[test]
    fn every_missing_or_contradictory_field_is_named_and_secrets_are_refused() {
        let p = problems(
            "provider=\"microsoft\"\nclient_secret=\"hunter2-secret\"\nrefresh_token=\"rt-secret\"\nscopes=[]\nclient_secret_expires=\"soon\"\ntoken_url=\"http://x/token\"\n",
        );
        for expected in [
            "mailbox[0].oauth2.client_secret: secrets are never written in the config; use client_secret_env or client_secret_file",
            "mailbox[0].oauth2.refresh_token: secrets are never written in the config; use refresh_token_env",
            "mailbox[0].oauth2.client_id: missing",
            "mailbox[0].oauth2.client_secret_env: missing",
            "mailbox[0].oauth2.tenant: missing",
            "mailbox[0].oauth2.scopes: must not be empty",
            "mailbox[0].oauth2.client_secret_expires: must be a date",
            "mailbox[0].oauth2.token_url: must be an https:// URL",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        assert!(!p.contains("hunter2") && !p.contains("rt-secret"), "{p}");
        let p = problems(
            "provider=\"google\"\nclient_id=\"c\"\ntenant=\"t\"\nclient_secret_env=\"A\"\nclient_secret_file=\"/b\"\nrefresh_token_env=\"has space\"\n",
        );
        for expected in [
            "mailbox[0].oauth2.tenant: Google has no tenant",
            "mailbox[0].oauth2.client_secret_env: set client_secret_env or client_secret_file, not both",
            "mailbox[0].oauth2.refresh_token_env: must name an environment variable",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        let p = problems("provider=\"yahoo\"\n");
        assert!(p.contains("mailbox[0].oauth2.provider: must be"), "{p}");
    }

    /// The commented-out `[mailbox.oauth2]` and `[oauth]` examples in
    /// config/mailgate.toml, uncommented, validate.
    #[test]
    fn the_documented_examples_validate() {
        let mut text = crate::config::EMBEDDED_DEFAULT.to_string();
        for header in ["# [mailbox.oauth2]", "# [oauth]\n"] {
            let start = text.find(header).expect("example in the default config");
            let end = start + text[start..].find("\n\n").unwrap();
            let uncommented: String = text[start..end]
                .lines()
                .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
                .collect();
            text = format!("{}{}{}", &text[..start], uncommented, &text[end..]);
        }
        let c = Config::parse(&text)
            .map_err(|e| e.problems().join("\n"))
            .unwrap();
        let o = c.default_mailbox().unwrap().oauth2.as_ref().unwrap();
        assert_eq!(o.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(
            o.client_secret,
            super::SecretSource::Env("MAILGATE_SUPPORT_CLIENT_SECRET".into())
        );
        assert_eq!(
            c.oauth.key,
            crate::config::TokenKeySource::File("data/oauth-token.key".into())
        );
    }

    #[test]
    fn a_setting_that_needs_oauth2_names_itself() {
        let mut problems = Vec::new();
        super::require(
            "mailbox[2]",
            "upstream.protocol = \"graph\"",
            None,
            &mut |k: &str, m: String| problems.push(format!("{k}: {m}")),
        );
        assert_eq!(
            problems,
            [
                "mailbox[2].oauth2: missing: upstream.protocol = \"graph\" needs a [mailbox.oauth2] section"
            ]
        );
    }
}
