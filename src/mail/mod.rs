//! The shared vocabulary every layer may use: where mail came from, a parsed
//! message, why a message was refused, the ticket tag format, secrets and
//! credentials, upstream and SMTP policy enums. It depends on nothing else in
//! the crate, so config, protocol cores, tickets and the I/O layers can all
//! speak it without importing each other.

pub mod access_token;
pub mod bare_lf;
pub mod credential;
pub mod header_edit;
pub mod origin;
pub mod parsed;
pub mod printable;
pub mod reason;
pub mod reply_to;
pub mod secret;
pub mod status;
pub mod tag;
pub mod upstream;
pub mod xoauth2;

pub use access_token::{AccessTokens, TokenError};
pub use bare_lf::BareLf;
pub use credential::Credential;
pub use origin::{EnvelopeInfo, Origin};
pub use parsed::{AttachmentMeta, Markers, ParsedMail, Person};
pub use reason::RejectReason;
pub use reply_to::ReplyToPolicy;
pub use secret::Secret;
pub use status::TicketStatus;
pub use tag::TagFormat;
pub use upstream::{AfterImport, Security, valid_keyword};
