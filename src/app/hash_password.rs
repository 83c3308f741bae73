//! `mailgate hash-password`: turns a typed password into the argon2id PHC
//! string a `[[submission.account]]` holds, so no password ever goes into
//! the config. Asks twice without echo on the terminal, or reads one line
//! from standard input with `--stdin` (for scripts). Prints only the hash.

use std::io::BufRead;

use anyhow::{Result, bail};

use crate::auth::submission::hash_password;

/// The PHC string for a password typed twice, or read from stdin.
pub fn run(from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_string()
    } else {
        let first = prompt("Password: ")?;
        if first.is_empty() {
            bail!("no password typed");
        }
        let second = prompt("Same password again: ")?;
        if first != second {
            bail!("the two passwords differ; nothing printed");
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(hash_password(password.as_bytes())?)
}

/// Reads a password from the terminal without echo.
fn prompt(text: &str) -> Result<String> {
    match rpassword::prompt_password(text) {
        Ok(p) => Ok(p),
        Err(e) => bail!(
            "cannot read the password from the terminal ({e}); use --stdin to read it from standard input"
        ),
    }
}
