//! Why a message did not become a ticket message: machine-readable reasons,
//! used as the `reason` of rejection records and as a metrics label.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No From header, or no parseable address in it.
    NoSender,
    /// Not an RFC 5322 message at all (no header block, empty).
    Unparseable,
    /// `Auto-Submitted` other than `no` (RFC 3834).
    AutoSubmitted,
    /// `Precedence: bulk | junk | list`.
    Bulk,
    /// Vendor auto-reply markers (X-Autoreply, X-Autorespond, X-Auto-Response-Suppress).
    AutoReply,
    /// Delivery status notification or bounce (null sender, multipart/report, MAILER-DAEMON).
    Bounce,
    /// Sent from one of our own mailbox addresses: answering it would loop.
    Loop,
    /// Over the configured maximum message size.
    Oversize,
    /// A mail rule with `reject = true` matched; the detail is `rule:<name>`.
    Rule,
    /// Internal mail (From in `server.internal_domains`) that continues no
    /// ticket, in a mailbox with `internal_unthreaded = "reject"`.
    InternalUnthreaded,
    /// Mail to a BCC importer from outside the internal domains.
    ImporterExternalSender,
    /// Acknowledged, then a crash before its checkpoint, and at the restart
    /// no configured mailbox takes it any more (kept, raw included).
    MailboxGone,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::NoSender,
        RejectReason::Unparseable,
        RejectReason::AutoSubmitted,
        RejectReason::Bulk,
        RejectReason::AutoReply,
        RejectReason::Bounce,
        RejectReason::Loop,
        RejectReason::Oversize,
        RejectReason::Rule,
        RejectReason::InternalUnthreaded,
        RejectReason::ImporterExternalSender,
        RejectReason::MailboxGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoSender => "no_sender",
            RejectReason::Unparseable => "unparseable",
            RejectReason::AutoSubmitted => "auto_submitted",
            RejectReason::Bulk => "bulk",
            RejectReason::AutoReply => "auto_reply",
            RejectReason::Bounce => "bounce",
            RejectReason::Loop => "loop",
            RejectReason::Oversize => "oversize",
            RejectReason::Rule => "rule",
            RejectReason::InternalUnthreaded => "internal_unthreaded",
            RejectReason::ImporterExternalSender => "importer_external_sender",
            RejectReason::MailboxGone => "mailbox_gone",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RejectReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RejectReason::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown rejection reason {s:?}")))
    }
}
