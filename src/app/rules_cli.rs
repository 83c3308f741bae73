//! `mailgate rules test FILE.eml [--mailbox M]`: what the configured mail
//! rules would do with one message, step by step (routing, classification,
//! each rule evaluated, the decision), without changing anything: no
//! store is opened, nothing is sent.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::config::role::{InternalUnthreaded, MailboxRole};
use crate::ingest::route::Router;
use crate::ingest::rules::MailRules;
use crate::ingest::{classify, parse};
use crate::rules::Scope;

/// Most bytes read from the file (the biggest message the gateway takes).
fn read_capped(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.len() > limit {
        bail!(
            "{} is {} bytes, over limits.max_message_size ({limit}): the gateway would reject it as oversize before any rule runs",
            path.display(),
            raw.len()
        );
    }
    Ok(raw)
}

/// What the mailbox's role and the internal domains make of the message
/// (the store is not opened, so threading is described, not looked up).
fn staff_mail(
    config: &Config,
    mailbox: &str,
    rules: &MailRules,
    mail: &crate::mail::ParsedMail,
    own: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let m = config.mailboxes.iter().find(|m| m.name == mailbox)?;
    let internal = rules.is_internal(&mail.from.address);
    let counterpart = rules.counterpart(mail, &|a| own(a));
    if let MailboxRole::Importer(imp) = &m.role {
        if !internal {
            return Some(
                "importer: the sender is not in server.internal_domains: rejection importer_external_sender"
                    .into(),
            );
        }
        let number = (imp.ticket_number_pattern.as_ref())
            .and_then(|p| crate::rules::ticket_number(p, &mail.subject))
            .map(|n| format!(", ticket number {n} in the subject"))
            .unwrap_or_default();
        let to = counterpart.map_or("no external To/Cc address".into(), |p| p.address);
        return Some(format!(
            "importer: filed onto a ticket of {} by subject tag, reply token, References{number}, else an open ticket of {to}, else a new done ticket for {to}; stored as outbound (source bcc_import), nothing sent",
            imp.into
        ));
    }
    if !internal {
        return None;
    }
    let unthreaded = match m.internal_unthreaded {
        InternalUnthreaded::Reject => "rejection internal_unthreaded".to_string(),
        InternalUnthreaded::Ticket => match counterpart {
            Some(p) => format!("a ticket for {} (never acknowledged)", p.address),
            None => "rejection internal_unthreaded (no external recipient)".to_string(),
        },
    };
    Some(format!(
        "internal mail: on a ticket it threads onto, an agent message (direction internal); threading nowhere: {unthreaded}"
    ))
}

/// Prints the evaluation; returns the report (also for tests).
pub fn test(
    config: &Config,
    file: &Path,
    mailbox: Option<&str>,
    envelope_from: Option<&str>,
) -> Result<String> {
    let raw = read_capped(file, config.limits.max_message_size)?;
    let mut out = String::new();
    let mail = match parse::parse(&raw) {
        Ok(mail) => mail,
        Err(u) => {
            writeln!(
                out,
                "not a usable message: {} ({}); it would be a rejection record, no rule runs",
                u.reason, u.detail
            )?;
            return Ok(out);
        }
    };
    let router = Router::new(config);
    let name = match mailbox {
        Some(m) => {
            if !config.mailboxes.iter().any(|b| b.name == m) {
                bail!("no mailbox named {m:?}");
            }
            writeln!(out, "mailbox: {m} (given with --mailbox)")?;
            m.to_string()
        }
        None => {
            let routed = (mail.to.iter().chain(&mail.cc)).find_map(|p| {
                router
                    .route(&p.address)
                    .ok()
                    .map(|m| (m, p.address.clone()))
            });
            match routed {
                Some((m, via)) => {
                    writeln!(out, "mailbox: {m} (routed by the recipient {via})")?;
                    m.to_string()
                }
                None => bail!(
                    "no To/Cc address routes to a mailbox and there is no default mailbox: give --mailbox"
                ),
            }
        }
    };
    let rules = MailRules::new(config);
    let internal = rules.is_internal(&mail.from.address);
    writeln!(
        out,
        "from: {} ({})",
        mail.from.address,
        if internal { "internal" } else { "external" }
    )?;
    writeln!(out, "subject: {:?}", mail.subject)?;
    let automatic = classify::classify(&mail, envelope_from, &|a| router.is_own_address(a));
    match &automatic {
        Some((reason, detail)) => writeln!(out, "classification: automatic: {reason} ({detail})")?,
        None => writeln!(out, "classification: written by a person")?,
    }
    // What stops a forward or an answer before any cap is counted.
    let unsent = match (&automatic, internal) {
        (Some(_), _) => Some("not sent: automatic mail"),
        (None, true) => Some("not sent: internal mail"),
        (None, false) => None,
    };
    let own = |a: &str| router.is_own_address(a);
    if let Some(line) = staff_mail(config, &name, &rules, &mail, &own) {
        writeln!(out, "{line}")?;
    }
    let evaluation = rules.evaluate(&name, &mail, &raw, envelope_from);
    if evaluation.trace.is_empty() {
        writeln!(out, "rules: none configured for this mailbox")?;
    } else {
        writeln!(out, "rules:")?;
        for t in &evaluation.trace {
            let scope = match t.scope {
                Scope::Global => "global",
                Scope::Mailbox => "mailbox",
            };
            let result = if t.matched { "matched" } else { "no match" };
            writeln!(out, "  [{scope}] {}: {result}", t.rule)?;
        }
    }
    let d = &evaluation.decision;
    let mut lines = Vec::new();
    if let Some(rule) = &d.rejected_by {
        lines.push(format!("reject with reason rule:{rule}"));
    }
    if let Some(q) = &d.queue {
        lines.push(format!("queue {q}"));
    }
    for c in &d.categories {
        lines.push(format!("category {c}"));
    }
    if let Some(a) = &d.assignee {
        lines.push(format!("assignee {a}"));
    }
    if let Some(s) = d.status {
        lines.push(format!("status {}", s.as_str()));
    }
    for (rule, to, mode) in &d.forwards {
        let unsent = match &automatic {
            Some(_) => "; not sent: automatic mail",
            None => "",
        };
        lines.push(format!(
            "forward to {to}, original {} (rule {rule}{unsent})",
            mode.as_str()
        ));
    }
    for a in &d.answers {
        let note = match unsent {
            Some(why) => format!("; {why}"),
            None => format!(
                "; once per sender per {}",
                humantime::format_duration(a.window)
            ),
        };
        lines.push(format!(
            "answer {} with template {} (rule {}{note})",
            mail.from.address, a.template, a.rule
        ));
    }
    for (rule, pattern) in &d.links {
        match crate::rules::ticket_number(pattern, &mail.subject) {
            Some(n) => lines.push(format!("link to ticket number {n} (rule {rule})")),
            None => lines.push(format!(
                "link: /{}/ finds no ticket number in the subject (rule {rule})",
                pattern.as_str()
            )),
        }
    }
    if let Some(rule) = &d.stopped_by {
        lines.push(format!("stop: later rules skipped (rule {rule})"));
    }
    if lines.is_empty() {
        writeln!(out, "decision: nothing changes")?;
    } else {
        writeln!(out, "decision:")?;
        for l in lines {
            writeln!(out, "  {l}")?;
        }
    }
    writeln!(out, "(nothing was changed or sent)")?;
    Ok(out)
}
