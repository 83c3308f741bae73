//! Mail rules: ordered condition/action lists an admin configures (one
//! global list, one per mailbox) that run on each incoming message between
//! classification and threading.
//!
//! This module is the pure part: compiled rules, the message view they
//! test ([`RuleInput`]), and [`evaluate`], which says which rules matched
//! and what they decided, without doing any of it. It sits below the
//! config (which builds rules and reports bad ones) and reads no I/O, so
//! the pipeline, `mailgate rules test` and the fuzzer run exactly the same
//! code.

pub mod action;
pub mod condition;
pub mod input;

use serde::{Deserialize, Serialize};

pub use action::{Action, ForwardMode, ForwardTo};
pub use condition::{Condition, Field, Test, TextTest};
pub use input::RuleInput;

use crate::mail::TicketStatus;

/// Whether every condition must hold or one is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    All,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub matching: Match,
    /// Empty: the rule matches every message.
    pub conditions: Vec<Condition>,
    /// Applied in this order when the rule matches.
    pub actions: Vec<Action>,
}

impl Rule {
    pub fn matches(&self, input: &RuleInput<'_>) -> bool {
        match self.matching {
            Match::All => self.conditions.iter().all(|c| c.holds(input)),
            Match::Any => {
                self.conditions.is_empty() || self.conditions.iter().any(|c| c.holds(input))
            }
        }
    }
}

/// Where a rule was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Global,
    Mailbox,
}

/// One evaluated rule, for the decision trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTrace {
    pub rule: String,
    pub scope: Scope,
    pub matched: bool,
}

/// What the matching rules decided, in the order they decided it. Later
/// settings override earlier ones; categories add up.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub queue: Option<String>,
    pub categories: Vec<String>,
    pub assignee: Option<String>,
    pub status: Option<TicketStatus>,
    /// (rule, where to, how).
    pub forwards: Vec<(String, ForwardTo, ForwardMode)>,
    pub answers: Vec<Answer>,
    /// (rule, pattern): ticket-number patterns to link by, first first.
    pub links: Vec<(String, regex::Regex)>,
    /// The rule that rejected the message (reason `rule:<name>`).
    pub rejected_by: Option<String>,
    /// The rule whose `stop` ended the evaluation.
    pub stopped_by: Option<String>,
}

/// A preset answer a rule decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rule: String,
    pub template: String,
    /// At most one answer of this rule per sender per window.
    pub window: std::time::Duration,
}

/// Every rule evaluated, and what the matching ones decided.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub trace: Vec<RuleTrace>,
    pub decision: Decision,
}

/// Runs the global rules, then the mailbox's, in order, until a rule
/// rejects or stops. Changes nothing: the caller applies the decision.
pub fn evaluate(global: &[Rule], mailbox: &[Rule], input: &RuleInput<'_>) -> Evaluation {
    let mut out = Evaluation::default();
    let scoped = global
        .iter()
        .map(|r| (Scope::Global, r))
        .chain(mailbox.iter().map(|r| (Scope::Mailbox, r)));
    for (scope, rule) in scoped {
        let matched = rule.matches(input);
        out.trace.push(RuleTrace {
            rule: rule.name.clone(),
            scope,
            matched,
        });
        if !matched {
            continue;
        }
        let d = &mut out.decision;
        for action in &rule.actions {
            match action {
                Action::SetQueue(q) => d.queue = Some(q.clone()),
                Action::AddCategory(c) => {
                    if !d.categories.contains(c) {
                        d.categories.push(c.clone());
                    }
                }
                Action::SetAssignee(a) => d.assignee = Some(a.clone()),
                Action::SetStatus(s) => d.status = Some(*s),
                Action::Forward { to, mode } => {
                    d.forwards.push((rule.name.clone(), to.clone(), *mode))
                }
                Action::Answer { template, window } => d.answers.push(Answer {
                    rule: rule.name.clone(),
                    template: template.clone(),
                    window: *window,
                }),
                Action::Link(r) => d.links.push((rule.name.clone(), r.clone())),
                Action::Reject => d.rejected_by = Some(rule.name.clone()),
                Action::Stop => d.stopped_by = Some(rule.name.clone()),
            }
        }
        if d.rejected_by.is_some() || d.stopped_by.is_some() {
            break;
        }
    }
    out
}

/// The ticket number a link pattern finds in `text`: its first capture
/// group (or the whole match), as digits.
pub fn ticket_number(pattern: &regex::Regex, text: &str) -> Option<u64> {
    let caps = pattern.captures(condition::capped(text))?;
    let m = caps.get(1).or_else(|| caps.get(0))?;
    m.as_str().trim().parse().ok()
}

#[cfg(test)]
mod tests;
