//! The bare-LF policy, after Postfix's `smtpd_forbid_bare_newline`: set in
//! the config, enforced by the SMTP data decoder.

/// How a bare `<LF>` (not preceded by `<CR>`) is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BareLf {
    /// Treat as a line end (stored as CRLF), but never as part of the terminator.
    Normalize,
    /// Refuse: the session answers 521 and closes.
    Reject,
}
