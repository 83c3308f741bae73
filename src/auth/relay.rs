//! The password the gateway gives the outbound relay (`[relay]`): the same
//! sources and checks as an upstream mailbox's (an environment variable, or
//! a file only its owner can read), but never a prompt, and errors that
//! name the `relay.` keys. Like there, a value that names nothing is never
//! shown: it may be the password itself.

use super::password::{self, PasswordError};
use crate::config::relay::RelayAuth;
use crate::config::upstream::PasswordSource;
use crate::mail::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayPasswordError {
    #[error(
        "the environment variable named by relay.password_env is not set or empty (its name is not shown, in case the password itself was put there)"
    )]
    EnvMissing,
    #[error(
        "no password file at the path given in relay.password_file: {detail} (the path is not shown, in case the password itself was put there)"
    )]
    FileMissing { detail: String },
    #[error("cannot read password file {path}: {detail} (relay.password_file)")]
    FileUnreadable { path: String, detail: String },
    #[error(
        "password file {path} is readable by group or others (mode {mode:o}); run chmod 600 on it (relay.password_file)"
    )]
    FilePermissions { path: String, mode: u32 },
    #[error("password file {0} is empty (relay.password_file)")]
    FileEmpty(String),
    #[error("no password source: set relay.password_env or relay.password_file")]
    NoSource,
}

/// The relay password, from its configured source.
pub fn resolve(auth: &RelayAuth) -> Result<Secret, RelayPasswordError> {
    if auth.password == PasswordSource::Prompt {
        return Err(RelayPasswordError::NoSource);
    }
    password::resolve(&auth.password).map_err(|e| match e {
        PasswordError::EnvMissing => RelayPasswordError::EnvMissing,
        PasswordError::FileMissing { detail } => RelayPasswordError::FileMissing { detail },
        PasswordError::FileUnreadable { path, detail } => {
            RelayPasswordError::FileUnreadable { path, detail }
        }
        PasswordError::FilePermissions { path, mode } => {
            RelayPasswordError::FilePermissions { path, mode }
        }
        PasswordError::FileEmpty(path) => RelayPasswordError::FileEmpty(path),
        PasswordError::NeedsPrompt | PasswordError::NothingTyped => RelayPasswordError::NoSource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn auth(password: PasswordSource) -> RelayAuth {
        RelayAuth {
            user: "u".into(),
            password,
        }
    }

    #[test]
    fn file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let a = auth(PasswordSource::File(path.clone()));
        let e = resolve(&a).unwrap_err();
        assert!(matches!(
            e,
            RelayPasswordError::FilePermissions { mode: 0o640, .. }
        ));
        assert!(e.to_string().contains("relay.password_file"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(resolve(&a).unwrap().expose(), "s3cret");
    }

    #[test]
    fn names_nothing_shown() {
        let pasted = "pasted-relay-password";
        let e = resolve(&auth(PasswordSource::Env(pasted.into()))).unwrap_err();
        assert_eq!(e, RelayPasswordError::EnvMissing);
        let e2 = resolve(&auth(PasswordSource::File(pasted.into()))).unwrap_err();
        for shown in [e.to_string(), e2.to_string()] {
            assert!(!shown.contains(pasted), "{shown}");
            assert!(shown.contains("relay.password_"), "{shown}");
        }
        assert!(!format!("{e2:?}").contains(pasted));
    }
}
