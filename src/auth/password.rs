//! Upstream passwords: from an environment variable, a private file, or
//! typed at a prompt. Never from the config, never stored, never logged.
//!
//! Errors show the variable name or the file path only once it is proven
//! to be one (the variable is set, the file exists): a value that names
//! nothing may be the password itself, pasted into the wrong key.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use crate::config::upstream::PasswordSource;
use crate::mail::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error(
        "the environment variable named by upstream.password_env is not set or empty (its name is not shown, in case the password itself was put there)"
    )]
    EnvMissing,
    #[error(
        "no password file at the path given in upstream.password_file: {detail} (the path is not shown, in case the password itself was put there)"
    )]
    FileMissing { detail: String },
    #[error("cannot read password file {path}: {detail} (upstream.password_file)")]
    FileUnreadable { path: String, detail: String },
    #[error(
        "password file {path} is readable by group or others (mode {mode:o}); run chmod 600 on it (upstream.password_file)"
    )]
    FilePermissions { path: String, mode: u32 },
    #[error("password file {0} is empty (upstream.password_file)")]
    FileEmpty(String),
    #[error(
        "no password configured: set upstream.password_env or upstream.password_file, or type it with `mailgate sync`"
    )]
    NeedsPrompt,
    #[error("no password typed")]
    NothingTyped,
}

/// The password for `serve`: env or file; a prompt is not possible there.
pub fn resolve(source: &PasswordSource) -> Result<Secret, PasswordError> {
    match source {
        PasswordSource::Env(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(PasswordError::EnvMissing),
        },
        PasswordSource::File(path) => read_file(path),
        PasswordSource::Prompt => Err(PasswordError::NeedsPrompt),
    }
}

/// The password for `sync` / `test-connection`: like [`resolve`], but asks
/// when none is configured — without echo on a terminal, or one line from
/// standard input when that is a pipe.
pub fn resolve_or_prompt(
    source: &PasswordSource,
    mailbox: &str,
    user: &str,
) -> Result<Secret, PasswordError> {
    if *source != PasswordSource::Prompt {
        return resolve(source);
    }
    let typed = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {user} (mailbox {mailbox}): "))
            .unwrap_or_default()
    } else {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line
    };
    let typed = typed.trim_end_matches(['\r', '\n']).to_string();
    if typed.is_empty() {
        return Err(PasswordError::NothingTyped);
    }
    Ok(Secret::new(typed))
}

fn read_file(path: &Path) -> Result<Secret, PasswordError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| PasswordError::FileMissing {
        detail: e.to_string(),
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PasswordError::FilePermissions { path: shown, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|e| PasswordError::FileUnreadable {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(PasswordError::FileEmpty(shown));
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let source = PasswordSource::File(path.clone());
        assert!(matches!(
            resolve(&source),
            Err(PasswordError::FilePermissions { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(resolve(&source).unwrap().expose(), "hunter2");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(resolve(&source), Err(PasswordError::FileEmpty(_))));
    }

    #[test]
    fn env_and_prompt() {
        let name = "MAILGATE_TEST_PASSWORD_ENV_UNIT";
        let err = resolve(&PasswordSource::Env(name.into())).unwrap_err();
        assert_eq!(err, PasswordError::EnvMissing);
        assert!(!err.to_string().contains(name), "{err}");
        let pasted = "hunter2-pasted";
        let err = resolve(&PasswordSource::File(pasted.into())).unwrap_err();
        assert!(matches!(err, PasswordError::FileMissing { .. }), "{err:?}");
        assert!(!format!("{err}{err:?}").contains(pasted), "{err}");
        assert_eq!(
            format!("{:?}", PasswordSource::Env(pasted.into())),
            "Env(<not shown>)"
        );
        assert_eq!(
            resolve(&PasswordSource::Prompt).unwrap_err(),
            PasswordError::NeedsPrompt
        );
        let secret = Secret::new("x");
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }
}
