//! Upstream-mailbox vocabulary shared by the config and the puller: how a
//! connection is secured, what happens to a message after import, and what a
//! valid IMAP keyword is.

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, POP3S 995).
    Tls,
    /// Plain connect, then STARTTLS (IMAP) / STLS (POP3); refusal is an error.
    StartTls,
    /// No TLS at all. Only when explicitly allowed in the config.
    None,
}

/// What the after-import step does upstream (from the mailbox config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterImport {
    /// IMAP: set \Seen and the keyword(s); the message stays.
    Label { processed: String, rejected: String },
    /// IMAP: move to a folder (processed and rejected may differ).
    Move { processed: String, rejected: String },
    /// IMAP: \Deleted + expunge; POP3: DELE.
    Delete,
    /// POP3 only: leave the message; UIDL memory decides what is new.
    Keep,
}

/// IMAP keywords are atoms: printable ASCII without spaces, parentheses,
/// wildcards, quotes, backslash or `]`.
pub fn valid_keyword(keyword: &str) -> bool {
    !keyword.is_empty()
        && keyword
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert!(valid_keyword("Mailgate"));
        assert!(valid_keyword("$Processed"));
        for bad in ["", "a b", "(x", "x*", "\\Seen", "a\"", "ü", "x]"] {
            assert!(!valid_keyword(bad), "{bad}");
        }
    }
}
