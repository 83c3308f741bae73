//! `[[rule]]` (global) and `[[mailbox.rule]]`: mail rules as written in
//! TOML, checked and compiled into [`crate::rules::Rule`]s. Every problem
//! names its key (`rule[2].when[0].regex`, `mailbox[1].rule[0].answer`);
//! unknown header names are fine (any header may be tested), bad regexes,
//! unknown categories, templates that do not exist and conditions with no
//! or two comparisons are errors.
//!
//! ```toml
//! [[rule]]
//! name = "invoices"
//! match = "all"                # or "any"
//! when = [
//!   { field = "subject", regex = "(?i)\\binvoice\\b" },
//!   { field = "from", ends_with = "@vendor.example" },
//!   { field = "header", name = "X-Priority", starts_with = "1" },
//!   { field = "internal", is = false },
//!   { field = "size", over = "5MB" },
//! ]
//! queue = "billing"
//! stop = true
//! ```

use std::path::Path;

use serde::Deserialize;

use super::{Quantity, notify};
use crate::mail::TicketStatus;
use crate::rules::{Action, Condition, Field, ForwardMode, ForwardTo, Match, Rule, Test, TextTest};

/// Where preset answers live: `<notify.templates_dir>/answers/<name>.txt`.
pub const ANSWERS_DIR: &str = "answers";

/// How long a sender answered by a rule gets no second answer from it.
pub const DEFAULT_ANSWER_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A preset answer's name: letters, digits, `_` and `-`.
pub fn answer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawRule {
    name: String,
    #[serde(rename = "match")]
    matching: Option<String>,
    when: Vec<RawCondition>,
    queue: Option<String>,
    categories: Vec<String>,
    assignee: Option<String>,
    status: Option<String>,
    forward: Option<RawForward>,
    forward_mode: Option<String>,
    answer: Option<String>,
    answer_window: Option<Quantity>,
    link: Option<String>,
    reject: bool,
    stop: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawForward {
    /// `"team"`.
    Word(String),
    Addresses(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawCondition {
    field: String,
    name: Option<String>,
    equals: Option<String>,
    contains: Option<String>,
    starts_with: Option<String>,
    ends_with: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
    is: Option<bool>,
    over: Option<Quantity>,
    under: Option<Quantity>,
    not: bool,
}

/// What a rule may refer to, checked while it is compiled.
pub(super) struct Known<'a> {
    pub categories: &'a [String],
    pub templates_dir: &'a Path,
}

/// Compiles one rule list (`key` is `rule` or `mailbox[i].rule`); rule
/// names must be unique within it.
pub(super) fn validate(
    key: &str,
    raw: &[RawRule],
    known: &Known<'_>,
    err: &mut impl FnMut(&str, String),
) -> Vec<Rule> {
    let mut names: Vec<&str> = Vec::new();
    let mut rules = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let name = r.name.trim();
        if name.is_empty() || name.chars().any(|c| c.is_control()) || name.len() > 100 {
            err(
                &format!("{key}.name"),
                "missing or invalid: a short name, used in the reason `rule:<name>` and the decision trace".into(),
            );
        } else if names.contains(&name) {
            err(
                &format!("{key}.name"),
                format!("{name:?} is used by an earlier rule"),
            );
        } else {
            names.push(name);
        }
        rules.push(rule(&key, name, r, known, err));
    }
    rules
}

fn rule(
    key: &str,
    name: &str,
    r: &RawRule,
    known: &Known<'_>,
    err: &mut impl FnMut(&str, String),
) -> Rule {
    let k = |field: &str| format!("{key}.{field}");
    let matching = match r.matching.as_deref().map(str::trim) {
        None | Some("all") => Match::All,
        Some("any") => Match::Any,
        Some(other) => {
            err(
                &k("match"),
                format!("must be \"all\" or \"any\", not {other:?}"),
            );
            Match::All
        }
    };
    let conditions = (r.when.iter().enumerate())
        .filter_map(|(j, c)| condition(&format!("{key}.when[{j}]"), c, err))
        .collect();
    let mut actions = Vec::new();
    if let Some(q) = &r.queue {
        if q.trim().is_empty() {
            err(&k("queue"), "must not be empty".into());
        }
        actions.push(Action::SetQueue(q.trim().to_string()));
    }
    for (j, c) in r.categories.iter().enumerate() {
        if known.categories.iter().any(|known| known == c) {
            actions.push(Action::AddCategory(c.clone()));
        } else {
            err(
                &format!("{key}.categories[{j}]"),
                format!("unknown category {c:?} (not a [[category]] key)"),
            );
        }
    }
    if let Some(a) = &r.assignee {
        match notify::address(a) {
            Some(a) => actions.push(Action::SetAssignee(a)),
            None => err(&k("assignee"), format!("invalid address {a:?}")),
        }
    }
    if let Some(s) = &r.status {
        match TicketStatus::parse(s.trim()) {
            Some(
                s @ (TicketStatus::New
                | TicketStatus::Open
                | TicketStatus::Pending
                | TicketStatus::Done),
            ) => actions.push(Action::SetStatus(s)),
            _ => err(
                &k("status"),
                format!("must be \"new\", \"open\", \"pending\" or \"done\", not {s:?}"),
            ),
        }
    }
    let mode = match r.forward_mode.as_deref().map(str::trim) {
        None | Some("attached") => ForwardMode::Attached,
        Some("inline") => ForwardMode::Inline,
        Some(other) => {
            err(
                &k("forward_mode"),
                format!("must be \"attached\" or \"inline\", not {other:?}"),
            );
            ForwardMode::Attached
        }
    };
    match &r.forward {
        None if r.forward_mode.is_some() => err(&k("forward_mode"), "set without forward".into()),
        None => {}
        Some(RawForward::Word(w)) if w.trim() == "team" => actions.push(Action::Forward {
            to: ForwardTo::Team,
            mode,
        }),
        Some(RawForward::Word(w)) => err(
            &k("forward"),
            format!("must be \"team\" or a list of addresses, not {w:?}"),
        ),
        Some(RawForward::Addresses(list)) => {
            let to = notify::addresses(&k("forward"), list, err);
            if list.is_empty() {
                err(&k("forward"), "the list of addresses is empty".into());
            }
            actions.push(Action::Forward {
                to: ForwardTo::Addresses(to),
                mode,
            });
        }
    }
    if let Some(t) = &r.answer {
        let window = match &r.answer_window {
            Some(q) => super::duration(&k("answer_window"), q, err),
            None => DEFAULT_ANSWER_WINDOW,
        };
        let t = t.trim();
        let valid = answer_name(t);
        let path = known
            .templates_dir
            .join(ANSWERS_DIR)
            .join(format!("{t}.txt"));
        if !valid {
            err(
                &k("answer"),
                format!("{t:?} is not a template name (letters, digits, _ and - only)"),
            );
        } else if !path.is_file() {
            err(
                &k("answer"),
                format!("unknown template {t:?}: no file {}", path.display()),
            );
        } else {
            actions.push(Action::Answer {
                template: t.to_string(),
                window,
            });
        }
    }
    if r.answer.is_none() && r.answer_window.is_some() {
        err(&k("answer_window"), "set without answer".into());
    }
    if let Some(p) = &r.link {
        match TextTest::regex(p) {
            Ok(TextTest::Regex(re)) => actions.push(Action::Link(re)),
            Ok(_) => {}
            Err(e) => err(&k("link"), format!("invalid regex: {}", one_line(&e))),
        }
    }
    if r.reject {
        actions.push(Action::Reject);
        if r.answer.is_some() || r.forward.is_some() {
            // A rejected message opens nothing and is never answered.
            err(
                &k("reject"),
                "a rejecting rule cannot also answer or forward".into(),
            );
        }
    }
    if r.stop {
        actions.push(Action::Stop);
    }
    if actions.is_empty() {
        err(key, "the rule has no action (queue, categories, assignee, status, forward, answer, link, reject or stop)".into());
    }
    Rule {
        name: name.to_string(),
        matching,
        conditions,
        actions,
    }
}

fn condition(key: &str, c: &RawCondition, err: &mut impl FnMut(&str, String)) -> Option<Condition> {
    let k = |field: &str| format!("{key}.{field}");
    let text_ops: Vec<(&str, &String)> = [
        ("equals", &c.equals),
        ("contains", &c.contains),
        ("starts_with", &c.starts_with),
        ("ends_with", &c.ends_with),
        ("regex", &c.regex),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
    .collect();
    let text = |err: &mut dyn FnMut(&str, String), allow_present: bool| -> Option<TextTest> {
        let present = c.present == Some(true) && allow_present;
        match (text_ops.as_slice(), present) {
            ([], true) => Some(TextTest::Present),
            ([(op, value)], false) => match *op {
                "equals" => Some(TextTest::Equals((*value).clone())),
                "contains" => Some(TextTest::Contains((*value).clone())),
                "starts_with" => Some(TextTest::StartsWith((*value).clone())),
                "ends_with" => Some(TextTest::EndsWith((*value).clone())),
                _ => match TextTest::regex(value) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        err(&k("regex"), format!("invalid regex: {}", one_line(&e)));
                        None
                    }
                },
            },
            _ => {
                err(
                    key,
                    format!(
                        "give exactly one of equals, contains, starts_with, ends_with, regex{}",
                        if allow_present {
                            ", present = true"
                        } else {
                            ""
                        }
                    ),
                );
                None
            }
        }
    };
    let field = c.field.trim();
    let test = match field {
        "envelope_from" | "from" | "to" | "cc" | "recipients" | "subject" => {
            let f = match field {
                "envelope_from" => Field::EnvelopeFrom,
                "from" => Field::From,
                "to" => Field::To,
                "cc" => Field::Cc,
                "recipients" => Field::Recipients,
                _ => Field::Subject,
            };
            Test::Text(f, text(err, false)?)
        }
        "header" => {
            let name = c.name.as_deref().map(str::trim).unwrap_or_default();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                err(
                    &k("name"),
                    format!("missing or invalid header name {name:?}"),
                );
                return None;
            }
            Test::Text(Field::Header(name.to_string()), text(err, true)?)
        }
        "internal" | "attachments" => {
            let Some(is) = c.is else {
                err(
                    &k("is"),
                    format!("missing: field = {field:?} needs is = true or false"),
                );
                return None;
            };
            if field == "internal" {
                Test::Internal(is)
            } else {
                Test::HasAttachments(is)
            }
        }
        "size" => match (&c.over, &c.under) {
            (Some(q), None) => Test::SizeOver(super::size(&k("over"), q, err) as u64),
            (None, Some(q)) => Test::SizeUnder(super::size(&k("under"), q, err) as u64),
            _ => {
                err(
                    key,
                    "field = \"size\" needs exactly one of over, under".into(),
                );
                return None;
            }
        },
        other => {
            err(
                &k("field"),
                format!(
                    "{other:?} is not one of envelope_from, from, to, cc, recipients, subject, header, internal, attachments, size"
                ),
            );
            return None;
        }
    };
    Some(Condition {
        test,
        negate: c.not,
    })
}

/// A regex error on one line (the crate's message spans several).
pub(super) fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::rules::{Action, ForwardTo, Match, Test};

    const BASE: &str = "[server]\ndomains=[\"example.test\"]\ninternal_domains=[\"Example.TEST\", \"@corp.example\"]\n\
        [[category]]\nkey=\"invoice\"\n\
        [[mailbox]]\nname=\"support\"\naddresses=[\"support@example.test\"]\ndefault=true\n";

    fn problems(text: &str) -> String {
        Config::parse(&format!("{BASE}{text}"))
            .unwrap_err()
            .problems()
            .join("\n")
    }

    #[test]
    fn rules_compile_in_order_with_their_actions() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("answers")).unwrap();
        std::fs::write(dir.join("answers/vendor_ack.txt"), "Thanks").unwrap();
        let c = Config::parse(&format!(
            "[notify]\ntemplates_dir={:?}\n{BASE}\
             [[mailbox.rule]]\nname=\"vip\"\nmatch=\"any\"\n\
             when=[{{field=\"from\", ends_with=\"@vip.example\"}}, {{field=\"header\", name=\"X-Priority\", present=true, not=true}}]\n\
             assignee=\"Boss@Example.test\"\nstatus=\"open\"\nforward=\"team\"\nforward_mode=\"inline\"\n\
             [[rule]]\nname=\"invoices\"\n\
             when=[{{field=\"subject\", regex=\"(?i)invoice\"}}, {{field=\"size\", over=\"5MB\"}}, {{field=\"internal\", is=false}}]\n\
             queue=\"billing\"\ncategories=[\"invoice\"]\nanswer=\"vendor_ack\"\nanswer_window=\"2h\"\nlink=\"Ticket #(\\\\d+)\"\nstop=true\n",
            dir.display().to_string()
        ))
        .unwrap();
        assert_eq!(c.server.internal_domains, ["example.test", "corp.example"]);
        assert_eq!(c.rules.len(), 1);
        let g = &c.rules[0];
        assert_eq!(g.name, "invoices");
        assert_eq!(g.matching, Match::All);
        assert_eq!(g.conditions.len(), 3);
        assert_eq!(g.conditions[1].test, Test::SizeOver(5_000_000));
        let actions: Vec<String> = g.actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            actions,
            [
                "set queue \"billing\"",
                "add category \"invoice\"",
                "answer with template \"vendor_ack\" (once per sender per 2h)",
                "link by ticket number /Ticket #(\\d+)/",
                "stop"
            ]
        );
        let m = &c.mailboxes[0].rules[0];
        assert_eq!(m.matching, Match::Any);
        assert!(m.conditions[1].negate);
        assert!(
            m.actions
                .iter()
                .any(|a| matches!(a, Action::SetAssignee(a) if a == "boss@example.test"))
        );
        assert!(m.actions.iter().any(|a| matches!(
            a,
            Action::Forward {
                to: ForwardTo::Team,
                ..
            }
        )));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn every_bad_rule_is_named_by_its_key() {
        let p = problems(
            "[[rule]]\nname=\"a\"\nwhen=[{field=\"subject\", regex=\"(unclosed\"}, {field=\"colour\", equals=\"red\"}, \
             {field=\"from\"}, {field=\"to\", equals=\"x\", contains=\"y\"}, {field=\"header\", equals=\"1\"}, \
             {field=\"internal\"}, {field=\"size\"}]\nqueue=\"q\"\n\
             [[rule]]\nname=\"a\"\nstatus=\"rejected\"\ncategories=[\"nope\"]\nanswer=\"missing_template\"\n\
             link=\"(\"\nforward=[\"not an address\"]\nmatch=\"some\"\n\
             [[rule]]\nname=\"\"\n\
             [[rule]]\nname=\"r\"\nreject=true\nanswer=\"x\"\n\
             [[rule]]\nname=\"w\"\nstop=true\nanswer_window=\"1h\"\n\
             [[mailbox.rule]]\nname=\"m\"\nforward_mode=\"attached\"\n\
             [[mailbox.rule]]\nname=\"n\"\nanswer=\"missing\"\nanswer_window=\"soon\"\n",
        );
        for expected in [
            "rule[0].when[0].regex: invalid regex:",
            "rule[0].when[1].field: \"colour\" is not one of",
            "rule[0].when[2]: give exactly one of equals, contains, starts_with, ends_with, regex",
            "rule[0].when[3]: give exactly one of",
            "rule[0].when[4].name: missing or invalid header name",
            "rule[0].when[5].is: missing",
            "rule[0].when[6]: field = \"size\" needs exactly one of over, under",
            "rule[1].name: \"a\" is used by an earlier rule",
            "rule[1].status: must be \"new\", \"open\", \"pending\" or \"done\", not \"rejected\"",
            "rule[1].categories[0]: unknown category \"nope\"",
            "rule[1].answer: unknown template \"missing_template\": no file",
            "rule[1].link: invalid regex:",
            "rule[1].forward[0]: invalid address",
            "rule[1].match: must be \"all\" or \"any\"",
            "rule[2].name: missing or invalid",
            "rule[2]: the rule has no action",
            "rule[3].reject: a rejecting rule cannot also answer or forward",
            "rule[4].answer_window: set without answer",
            "mailbox[0].rule[0].forward_mode: set without forward",
            "mailbox[0].rule[1].answer: unknown template",
            "mailbox[0].rule[1].answer_window: invalid duration \"soon\"",
        ] {
            assert!(p.contains(expected), "missing {expected:?} in:\n{p}");
        }
        // Regex errors stay on one line each.
        assert!(p.lines().all(|l| !l.trim().is_empty()));
    }

    #[test]
    fn unknown_header_names_are_fine_and_bad_internal_domains_are_not() {
        let c = Config::parse(&format!(
            "{BASE}[[rule]]\nname=\"x\"\nwhen=[{{field=\"header\", name=\"X-Totally-Custom\", contains=\"yes\"}}]\nstop=true\n"
        ))
        .unwrap();
        assert_eq!(c.rules.len(), 1);
        let p = Config::parse(
            "[server]\ndomains=[\"example.test\"]\ninternal_domains=[\"not a domain\"]\n[[mailbox]]\nname=\"s\"\naddresses=[\"s@example.test\"]\n",
        )
        .unwrap_err()
        .problems()
        .join("\n");
        assert!(
            p.contains("server.internal_domains[0]: invalid domain"),
            "{p}"
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mailgate-rules-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
