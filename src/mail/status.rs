//! Where a ticket stands in its life: shared vocabulary, because mail
//! rules (configured, so below the ticket layer) can set it too.

use serde::{Deserialize, Serialize};

/// Where a ticket stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    New,
    Open,
    Pending,
    Done,
    Rejected,
    Accepted,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 6] = [
        TicketStatus::New,
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::Done,
        TicketStatus::Rejected,
        TicketStatus::Accepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::New => "new",
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Done => "done",
            TicketStatus::Rejected => "rejected",
            TicketStatus::Accepted => "accepted",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStatus> {
        TicketStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }
}
