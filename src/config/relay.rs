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

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::upstream::PasswordSource;
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
    /// Every SMTP command (EHLO, AUTH, MAIL, RCPT, DATA with its message).
    pub command_timeout: Duration,
}

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

pub(super) fn validate(
    raw: &RawRelay,
    hostname: &str,
    err: &mut impl FnMut(&str, String),
) -> RelayConfig {
    let host = raw.host.trim().to_string();
    if host.is_empty() {
        err(
            "relay.host",
            "missing: the relay's host name or address".into(),
        );
    } else if host.contains(char::is_whitespace) || host.contains(['/', '@']) {
        err("relay.host", format!("invalid host {host:?}"));
    }
    let security = match raw.security.as_str() {
        "tls" => Security::Tls,
        "starttls" => Security::StartTls,
        "none" => {
            if !raw.allow_insecure {
                err(
                    "relay.security",
                    "\"none\" sends mail (and any password) in the clear; set allow_insecure = true to accept that".into(),
                );
            }
            Security::None
        }
        other => {
            err(
                "relay.security",
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
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => p,
            _ => {
                err("relay.port", format!("invalid port {p}"));
                1
            }
        },
    };
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            err(
                "relay.password_env",
                "set password_env or password_file, not both".into(),
            );
            None
        }
        (Some(name), None) => {
            // Maybe the password itself, pasted in by mistake: never shown.
            if name.is_empty() {
                err(
                    "relay.password_env",
                    "is empty: give the name of the environment variable that holds the password"
                        .into(),
                );
            } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                err(
                    "relay.password_env",
                    "is not an environment variable name (letters, digits and _ only); it names the variable that holds the password and must not be the password itself (value not shown)".into(),
                );
            }
            Some(PasswordSource::Env(name.clone()))
        }
        (None, Some(path)) => {
            if path.trim().is_empty() {
                err(
                    "relay.password_file",
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
                    "relay.oauth2_mailbox",
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
                "relay.auth",
                "must be \"password\" or \"oauth2\" (value not shown)".into(),
            );
            false
        }
    };
    let (oauth2, password) = if oauth2_wanted {
        (oauth2_login(raw, password, err), None)
    } else {
        (None, password)
    };
    let auth = match (raw.user.as_deref().map(str::trim), password) {
        (_, None) if oauth2_wanted => None,
        (None, None) => None,
        (Some(""), _) => {
            err(
                "relay.user",
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
                "relay.password_env",
                "relay.user is set, so the password is needed: set password_env or password_file (the password itself never goes in the config)".into(),
            );
            None
        }
        (None, Some(_)) => {
            err(
                "relay.user",
                "missing: a password source is set, so the user to log in as is needed too".into(),
            );
            None
        }
    };
    let ca_file = raw.ca_file.as_ref().map(PathBuf::from);
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        err("relay.ca_file", format!("file not found: {}", p.display()));
    }
    let helo = match raw.helo.as_deref().map(str::trim) {
        None => hostname.to_string(),
        Some(h) => {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic()) {
                err(
                    "relay.helo",
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
        connect_timeout: duration("relay.connect_timeout", &raw.connect_timeout, err),
        command_timeout: duration("relay.command_timeout", &raw.command_timeout, err),
    }
}

/// `auth = "oauth2"`: a user and a mailbox, no password source.
fn oauth2_login(
    raw: &RawRelay,
    password: Option<PasswordSource>,
    err: &mut impl FnMut(&str, String),
) -> Option<RelayOAuth2> {
    if password.is_some() {
        let key = if raw.password_env.is_some() {
            "relay.password_env"
        } else {
            "relay.password_file"
        };
        err(
            key,
            "relay.auth = \"oauth2\" logs in with an access token, not a password: leave it out"
                .into(),
        );
    }
    let user = raw.user.as_deref().map(str::trim).unwrap_or("");
    if user.is_empty() {
        err(
            "relay.user",
            "missing: relay.auth = \"oauth2\" logs in as this user (the mailbox's address)".into(),
        );
    }
    let mailbox = raw.oauth2_mailbox.as_deref().map(str::trim).unwrap_or("");
    if mailbox.is_empty() {
        err(
            "relay.oauth2_mailbox",
            "missing: relay.auth = \"oauth2\" needs the name of the [[mailbox]] whose [mailbox.oauth2] gives the access token".into(),
        );
    }
    (!user.is_empty() && !mailbox.is_empty()).then(|| RelayOAuth2 {
        user: user.to_string(),
        mailbox: mailbox.to_string(),
    })
}

/// `oauth2_mailbox` names a configured mailbox that has OAuth2 settings.
pub(super) fn check_oauth2_mailbox(
    o: &RelayOAuth2,
    mailboxes: &[super::MailboxConfig],
    err: &mut impl FnMut(&str, String),
) {
    match mailboxes.iter().position(|m| m.name == o.mailbox) {
        None => err(
            "relay.oauth2_mailbox",
            format!("no [[mailbox]] is named {:?}", o.mailbox),
        ),
        Some(i) => super::oauth2::require(
            &format!("mailbox[{i}]"),
            "relay.auth = \"oauth2\" (relay.oauth2_mailbox)",
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
}
