//! A message as parsed once by ingest: the owned fields every later step
//! (classify, threading, the stored record) reads, so no layer has to parse
//! again or import the parser's layer.

use serde::{Deserialize, Serialize};

/// A mail address with its display name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub address: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub index: u32,
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
}

/// The fields of one message, parsed once and owned, ready to commit.
#[derive(Debug, Clone, Default)]
pub struct ParsedMail {
    /// Message-ID without angle brackets; None when the header is absent.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Person,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub date: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// What the attachments are; their bytes stay in the raw message (the
    /// API decodes them from there), so a large one is not held twice.
    pub attachments: Vec<AttachmentMeta>,
    /// Headers the classifier looks at, lower-cased names, raw values.
    pub markers: Markers,
    /// The content fingerprint dedup compares (`tickets::dedup`), computed
    /// by the parser while the decoded attachments were at hand; None for a
    /// message built by hand, which is fingerprinted from its fields.
    pub fingerprint: Option<String>,
}

/// Header facts that decide whether a message is automatic.
#[derive(Debug, Clone, Default)]
pub struct Markers {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub x_autoreply: Option<String>,
    pub x_autorespond: Option<String>,
    pub x_auto_response_suppress: Option<String>,
    /// Top-level Content-Type is multipart/report (RFC 6522: DSN, MDN).
    pub is_report: bool,
    /// The Return-Path header ("" for `<>`), as the final MTA wrote it:
    /// the envelope sender of pulled mail, which has no SMTP envelope here.
    pub return_path: Option<String>,
    /// Message-IDs of the messages a report or bounce carries back (its
    /// `message/rfc822` or `text/rfc822-headers` parts): which of our
    /// messages did not arrive.
    pub reported_ids: Vec<String>,
    /// The first `Diagnostic-Code` (else `Status`) of a delivery report.
    pub reported_status: Option<String>,
}
