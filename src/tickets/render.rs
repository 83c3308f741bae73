//! Turning a notification or a rule's preset answer into text: what a template is given, and the
//! trait the outbound layer implements (templates on disk or embedded),
//! called by the ticket rules inside the writer's transaction, as the
//! [`super::outgoing::Composer`] is.

use crate::config::notify::Notification;

/// Everything a notification template may show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateData {
    pub number: u64,
    pub tag: String,
    pub subject: String,
    pub requester_name: Option<String>,
    pub requester_address: String,
    pub status: String,
    pub assignee: Option<String>,
    /// `notify.link` with the ticket filled in; empty when unset.
    pub link: String,
    /// The inbound message or note that caused it (empty for a change).
    pub message: String,
    pub categories: Vec<String>,
    pub mailbox: String,
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// From a first line `Subject: ...` of the text template, if any.
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// Why a template did not render: which file, what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}: {detail}")]
pub struct RenderError {
    pub template: String,
    pub detail: String,
}

/// Renders notifications; must be cheap and never panic.
pub trait Renderer: Send + Sync {
    fn render(
        &self,
        notification: Notification,
        data: &TemplateData,
    ) -> Result<Rendered, RenderError>;

    /// Renders the preset answer a mail rule names (`answers/<name>`).
    fn render_answer(&self, name: &str, data: &TemplateData) -> Result<Rendered, RenderError>;
}
