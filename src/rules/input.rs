//! What a rule looks at: one message as routing and classification saw
//! it. Built by the pipeline (or `mailgate rules test`) from the parsed
//! mail and the raw header block, so the matcher itself reads no bytes
//! it was not given and never fails.

use crate::mail::header_edit::Headers;

pub struct RuleInput<'a> {
    /// MAIL FROM (SMTP) or Return-Path (pulled mail); `Some("")` is the
    /// null sender, `None` unknown.
    pub envelope_from: Option<&'a str>,
    /// The From address.
    pub from: &'a str,
    /// To and Cc addresses.
    pub to: Vec<&'a str>,
    pub cc: Vec<&'a str>,
    /// Decoded subject.
    pub subject: &'a str,
    /// The top-level header fields, for `header` conditions.
    pub headers: &'a Headers<'a>,
    /// From is in one of `server.internal_domains`.
    pub internal: bool,
    /// Size of the raw message in bytes.
    pub size: u64,
    pub has_attachments: bool,
}
