//! The redb tables. Records are JSON, stored compressed (`store::codec`;
//! plain JSON from older versions still reads); raw mail is in the
//! `*_raw_packed` tables behind a format marker, attachments are bytes.

use redb::TableDefinition;

/// Facts about the store itself: "schema" -> its layout version
/// (`store::index::SCHEMA_VERSION`; missing before versions existed).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Id and number sequences: "ticket", "number", "message", "rejection".
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Ticket id -> Ticket JSON.
pub const TICKETS: TableDefinition<u64, &[u8]> = TableDefinition::new("tickets");
/// Ticket number -> ticket id (the subject tag names numbers).
pub const TICKET_NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("ticket_numbers");
/// (mailbox, ticket id): lists a mailbox's tickets without a scan.
pub const TICKETS_BY_MAILBOX: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("tickets_by_mailbox");
/// (mailbox | "", status | "", category | "", ticket id): every filter
/// combination naming a status or a category that a ticket matches, so each
/// filtered list is one prefix seek (see `store::index`).
pub const TICKET_FILTERS: TableDefinition<(&str, &str, &str, u64), ()> =
    TableDefinition::new("ticket_filters");
/// Message id -> StoredMessage JSON.
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// Message id -> the original bytes, unmarked: what versions before
/// `message_raw_packed` wrote, and mail above `store::codec::PACK_MAX`.
pub const MESSAGE_RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("message_raw");
/// Message id -> the original bytes behind a format marker, usually
/// compressed (`store::codec::pack_raw`).
pub const MESSAGE_RAW_PACKED: TableDefinition<u64, &[u8]> =
    TableDefinition::new("message_raw_packed");
/// (message id, attachment index) -> decoded attachment bytes.
pub const ATTACHMENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("attachments");
/// (ticket id, message id): a ticket's messages in order.
pub const TICKET_MESSAGES: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("ticket_messages");
/// (mailbox, Message-ID) -> (message id, ticket id): threading by
/// In-Reply-To / References, inbound and outbound alike.
pub const MESSAGE_IDS: TableDefinition<(&str, &str), (u64, u64)> =
    TableDefinition::new("message_ids");
/// (mailbox, dedup key) -> earlier record: "m:ID" or "r:ID". The key is
/// "id:<Message-ID>" or "sha256:<hex of the raw bytes>".
pub const DEDUP: TableDefinition<(&str, &str), &str> = TableDefinition::new("dedup");
/// Rejection id -> Rejection JSON.
pub const REJECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("rejections");
/// (reason, rejection id): rejections of one reason without a scan.
pub const REJECTIONS_BY_REASON: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("rejections_by_reason");
/// Rejection id -> the original bytes, when kept, unmarked: what versions
/// before `rejection_raw_packed` wrote, and mail above `store::codec::PACK_MAX`.
pub const REJECTION_RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("rejection_raw");
/// Rejection id -> the original bytes, when kept, behind a format marker
/// (`store::codec::pack_raw`).
pub const REJECTION_RAW_PACKED: TableDefinition<u64, &[u8]> =
    TableDefinition::new("rejection_raw_packed");
/// (mailbox, upstream identity) -> the record it became ("m:ID" / "r:ID"):
/// what was already committed from an upstream mailbox, so a crash between
/// commit and the upstream flag never imports a message twice.
/// Identity: `imap:<UIDVALIDITY>:<UID>` or `pop3:<UIDL>`.
pub const UPSTREAM_SEEN: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("upstream_seen");
/// Mailbox name -> MailboxState JSON (sync status shown by the API).
pub const MAILBOX_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("mailbox_state");
/// (ticket id, event seq) -> TicketEvent JSON: the ticket's history.
pub const TICKET_EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("ticket_events");
/// Outbound message id -> OutboxEntry JSON (its delivery state).
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// (account | "", state | "", outbox id): the outbox by `?account=` and
/// `?state=` without a scan.
pub const OUTBOX_FILTERS: TableDefinition<(&str, &str, u64), ()> =
    TableDefinition::new("outbox_filters");
/// Ids of outbox entries still to send (queued or deferred), oldest first.
pub const OUTBOX_PENDING: TableDefinition<u64, ()> = TableDefinition::new("outbox_pending");
/// (mailbox, sent at ms, outbox id) -> (bytes, recipients): what each
/// mailbox handed to the relay, for send limits that survive a restart.
pub const SEND_LOG: TableDefinition<(&str, i64, u64), (u64, u64)> =
    TableDefinition::new("send_log");
/// (recipient address, at ms, message id): automatic messages sent to each
/// address, for `notify.per_recipient_limit` across restarts.
pub const NOTIFY_BY_RECIPIENT: TableDefinition<(&str, i64, u64), ()> =
    TableDefinition::new("notify_by_recipient");
/// (ticket id, at ms, message id): automatic messages sent on each ticket,
/// for `notify.per_ticket_limit`.
pub const NOTIFY_BY_TICKET: TableDefinition<(u64, i64, u64), ()> =
    TableDefinition::new("notify_by_ticket");
/// Mailbox name -> StoredTokens JSON: OAuth2 token health in clear, the
/// tokens themselves sealed (AES-256-GCM, see `oauth::vault`).
pub const OAUTH_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("oauth_tokens");
