//! What the gateway does with the Reply-To of mail submitted through the
//! relay endpoint: customers must answer the support mailbox, not the CRM
//! that sent the message, unless the submitter chose otherwise.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyToPolicy {
    /// Add the mailbox's address when the message has no Reply-To.
    #[default]
    SetWhenAbsent,
    /// Replace any Reply-To with the mailbox's address.
    Force,
    /// Leave Reply-To as submitted (absent stays absent).
    Keep,
}

impl ReplyToPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyToPolicy::SetWhenAbsent => "set_when_absent",
            ReplyToPolicy::Force => "force",
            ReplyToPolicy::Keep => "keep",
        }
    }
}
