//! The accounts internal systems log in with on the submission listener:
//! built once from `[[submission.account]]` (hash files read at startup),
//! then asked one question per AUTH — is this user, password and client
//! allowed, and as which account.
//!
//! Why a login failed ([`AuthRejection`]) is for the log and the metrics,
//! never for the client: the reply is the same for every failure. An
//! unknown user costs one argon2 verification against a fixed dummy hash,
//! like a known one, so the time taken does not tell which half was wrong.
//!
//! Verification is deliberately slow and memory-hard (argon2id, default
//! parameters: 19 MiB, 2 passes): it blocks the thread for tens of
//! milliseconds. Callers run [`Accounts::verify`] on
//! `tokio::task::spawn_blocking`, and bound how many run at once.

use std::collections::HashMap;
use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ipnet::IpNet;

use crate::config::MailboxConfig;
pub use crate::config::submission::ReplyToPolicy;
use crate::config::submission::{HashError, SubmissionConfig, load_hash};
use crate::mail::Secret;

/// Verified against when the user is unknown: default parameters, like a
/// hash from `mailgate hash-password`, of a random password nobody kept.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Nrnx+o3PEfC28XHrK1yPig$JpGI7sLyMb4REHWdlXQkn6dIS2PX1kXf1oYTgin+4bw";

/// A logged-in account: who, as which mailboxes, and its Reply-To policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// As configured (the client may have typed another case).
    pub user: String,
    /// Names of the `[[mailbox]]`es this account may send as.
    pub mailboxes: Vec<String>,
    pub reply_to: ReplyToPolicy,
}

impl Account {
    /// The one of this account's mailboxes that owns `address` (compared
    /// ignoring case, as mailbox addresses are configured lower-case), or
    /// `None`: the account may not send as that address.
    pub fn mailbox_for<'m>(
        &self,
        address: &str,
        mailboxes: &'m [MailboxConfig],
    ) -> Option<&'m MailboxConfig> {
        let address = address.trim().to_lowercase();
        mailboxes
            .iter()
            .filter(|m| self.mailboxes.contains(&m.name))
            .find(|m| m.addresses.contains(&address))
    }

    /// Whether `address` belongs to one of this account's mailboxes.
    pub fn may_send_as(&self, address: &str, mailboxes: &[MailboxConfig]) -> bool {
        self.mailbox_for(address, mailboxes).is_some()
    }
}

/// Why a login was refused. Logged and counted, never told to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    BadPassword,
    #[error("right password, but the client's address is not in the account's networks")]
    NetworkNotAllowed,
}

impl AuthRejection {
    /// A metrics label value (`outcome` of `mailgate_submission_auth_total`).
    pub fn outcome(self) -> &'static str {
        match self {
            AuthRejection::UnknownUser => "unknown_user",
            AuthRejection::BadPassword => "bad_password",
            AuthRejection::NetworkNotAllowed => "network_not_allowed",
        }
    }
}

/// A hash file that could not be used at startup (it changed since
/// check-config, or was never checked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("submission.account[{index}].password_hash{suffix}: {source}", suffix = if *.file { "_file" } else { "" })]
pub struct AccountsError {
    pub index: usize,
    pub file: bool,
    pub source: HashError,
}

struct Entry {
    account: Account,
    hash: Secret,
    networks: Vec<IpNet>,
}

/// The configured accounts, their hashes loaded. Debug shows the users only.
pub struct Accounts {
    /// Keyed by the ASCII-lower-cased user name.
    by_user: HashMap<String, Entry>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&str> = self
            .by_user
            .values()
            .map(|e| e.account.user.as_str())
            .collect();
        users.sort_unstable();
        f.debug_struct("Accounts").field("users", &users).finish()
    }
}

impl Accounts {
    /// Reads every account's hash (files too) and checks it again.
    pub fn new(config: &SubmissionConfig) -> Result<Accounts, AccountsError> {
        let mut by_user = HashMap::new();
        for (index, a) in config.accounts.iter().enumerate() {
            let hash = load_hash(&a.password_hash).map_err(|source| AccountsError {
                index,
                file: matches!(
                    a.password_hash,
                    crate::config::submission::HashSource::File(_)
                ),
                source,
            })?;
            by_user.insert(
                a.user.to_ascii_lowercase(),
                Entry {
                    account: Account {
                        user: a.user.clone(),
                        mailboxes: a.mailboxes.clone(),
                        reply_to: a.reply_to,
                    },
                    hash,
                    networks: a.networks.clone(),
                },
            );
        }
        Ok(Accounts { by_user })
    }

    /// The account of a user name (ignoring ASCII case): the one a session
    /// authenticated as.
    pub fn get(&self, user: &str) -> Option<&Account> {
        self.by_user
            .get(&user.to_ascii_lowercase())
            .map(|e| &e.account)
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Checks a login: the user (ignoring ASCII case), its password, and
    /// that `client` is in the account's networks (any, when it has none;
    /// an IPv4 client seen as `::ffff:a.b.c.d` counts as `a.b.c.d`).
    /// The password is checked first, always, also for an unknown user
    /// (against a dummy hash with `mailgate hash-password`'s parameters:
    /// an account whose hash has other parameters takes a different time).
    ///
    /// CPU- and memory-heavy and blocking: call it on `spawn_blocking`.
    pub fn verify(
        &self,
        user: &str,
        password: &[u8],
        client: IpAddr,
    ) -> Result<Account, AuthRejection> {
        let Some(entry) = self.by_user.get(&user.to_ascii_lowercase()) else {
            let _ = argon2_verify(DUMMY_HASH, password);
            return Err(AuthRejection::UnknownUser);
        };
        if !argon2_verify(entry.hash.expose(), password) {
            return Err(AuthRejection::BadPassword);
        }
        let client = client.to_canonical();
        if !entry.networks.is_empty() && !entry.networks.iter().any(|n| n.contains(&client)) {
            return Err(AuthRejection::NetworkNotAllowed);
        }
        Ok(entry.account.clone())
    }
}

/// Whether `password` matches the PHC string `phc` (a parse failure is a
/// mismatch; loaded hashes were checked).
fn argon2_verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashPasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the system's random source failed")]
    Random,
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

/// An argon2id PHC string of `password`: default parameters (19 MiB, 2
/// passes, 1 lane), a random 16-byte salt from the operating system.
pub fn hash_password(password: &[u8]) -> Result<String, HashPasswordError> {
    if password.is_empty() {
        return Err(HashPasswordError::Empty);
    }
    let salt = argon2::password_hash::try_generate_salt().map_err(|_| HashPasswordError::Random)?;
    let hash = Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map_err(|e| HashPasswordError::Argon2(e.to_string()))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[server]\ndomains=[\"a.test\"]\n[[mailbox]]\nname=\"support\"\naddresses=[\"support@a.test\", \"help@a.test\"]\n[[mailbox]]\nname=\"sales\"\naddresses=[\"sales@a.test\"]\n";

    fn accounts(text: &str) -> (Config, Accounts) {
        let c = Config::parse(&format!("{BASE}{text}")).unwrap();
        let a = Accounts::new(c.submission.as_ref().unwrap()).unwrap();
        (c, a)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        crate::config::submission::check_phc(&hash).unwrap();
        assert_ne!(
            hash,
            hash_password(b"correct horse").unwrap(),
            "salt is random"
        );
        assert_eq!(hash_password(b""), Err(HashPasswordError::Empty));
        let (c, a) = accounts(&format!(
            "[[submission.account]]\nuser=\"CRM\"\npassword_hash=\"{hash}\"\nmailboxes=[\"support\"]\nreply_to=\"keep\"\n"
        ));
        assert_eq!(a.len(), 1);
        let any = ip("192.0.2.7");
        let ok = a.verify("crm", b"correct horse", any).unwrap();
        assert_eq!(
            ok,
            Account {
                user: "CRM".into(),
                mailboxes: vec!["support".into()],
                reply_to: ReplyToPolicy::Keep
            }
        );
        assert_eq!(
            a.verify("CRM", b"correct horsE", any),
            Err(AuthRejection::BadPassword)
        );
        assert_eq!(
            a.verify("nobody", b"correct horse", any),
            Err(AuthRejection::UnknownUser)
        );
        assert!(ok.may_send_as("Help@A.test", &c.mailboxes));
        assert_eq!(
            ok.mailbox_for("support@a.test", &c.mailboxes)
                .map(|m| m.name.as_str()),
            Some("support")
        );
        assert!(!ok.may_send_as("sales@a.test", &c.mailboxes));
        assert!(!ok.may_send_as("support@other.test", &c.mailboxes));
        assert!(!format!("{a:?}").contains(&hash));
    }

    #[test]
    fn the_dummy_hash_is_a_default_argon2id_hash() {
        crate::config::submission::check_phc(DUMMY_HASH).unwrap();
        let default = hash_password(b"x").unwrap();
        let params = |h: &str| h.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(DUMMY_HASH), params(&default));
    }

    #[test]
    fn networks_limit_where_an_account_logs_in_from() {
        let hash = hash_password(b"pw").unwrap();
        let (_, a) = accounts(&format!(
            "[[submission.account]]\nuser=\"mon\"\npassword_hash=\"{hash}\"\nmailboxes=[\"sales\"]\nnetworks=[\"10.0.0.0/8\", \"2001:db8::/32\"]\n"
        ));
        assert!(a.verify("mon", b"pw", ip("10.1.2.3")).is_ok());
        assert!(a.verify("mon", b"pw", ip("::ffff:10.1.2.3")).is_ok());
        assert!(a.verify("mon", b"pw", ip("2001:db8:1::5")).is_ok());
        assert_eq!(
            a.verify("mon", b"pw", ip("192.168.1.1")),
            Err(AuthRejection::NetworkNotAllowed)
        );
        assert_eq!(
            a.verify("mon", b"wrong", ip("192.168.1.1")),
            Err(AuthRejection::BadPassword)
        );
        assert_eq!(
            AuthRejection::NetworkNotAllowed.outcome(),
            "network_not_allowed"
        );
    }

    #[cfg(unix)]
    #[test]
    fn hash_files_are_read_at_startup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.hash");
        std::fs::write(&path, format!("{}\n", hash_password(b"shop pw").unwrap())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (c, a) = accounts(&format!(
            "[[submission.account]]\nuser=\"shop\"\npassword_hash_file=\"{}\"\nmailboxes=[\"sales\"]\n",
            path.display()
        ));
        assert!(a.verify("shop", b"shop pw", ip("127.0.0.1")).is_ok());
        // Made readable by others after the config was checked: refused at startup.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Accounts::new(c.submission.as_ref().unwrap()).unwrap_err();
        assert!(matches!(
            e.source,
            HashError::FilePermissions { mode: 0o640, .. }
        ));
        assert!(
            e.to_string()
                .starts_with("submission.account[0].password_hash_file: "),
            "{e}"
        );
    }
}
