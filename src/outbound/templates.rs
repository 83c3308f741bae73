//! Notification templates: `<notify.templates_dir>/<name>.txt` (and an
//! optional `<name>.html`, HTML-escaped), else the defaults compiled into
//! the binary, and the rules' preset answers in `answers/` (no defaults), rendered with minijinja. Loading parses every template once;
//! rendering runs inside the writer's transaction, so it is bounded (fuel,
//! output size) and never panics: an error is returned and the ticket
//! rules skip the notification and record it.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Value, context};

use crate::config::notify::{Notification, NotifyConfig};
use crate::config::rules::ANSWERS_DIR;
use crate::tickets::render::{RenderError, Rendered, Renderer, TemplateData};

/// Instructions a template may run per rendering (loops, filters).
const FUEL: u64 = 200_000;
/// The longest rendered text accepted.
const MAX_OUTPUT: usize = 256 * 1024;

/// The shipped defaults (also in config/templates/).
fn embedded(n: Notification) -> &'static str {
    match n {
        Notification::Acknowledgement => {
            include_str!("../../config/templates/acknowledgement.txt")
        }
        Notification::NewTicket => include_str!("../../config/templates/new_ticket.txt"),
        Notification::NewMessage => include_str!("../../config/templates/new_message.txt"),
        Notification::InternalNote => include_str!("../../config/templates/internal_note.txt"),
        Notification::AssigneeChanged => {
            include_str!("../../config/templates/assignee_changed.txt")
        }
        Notification::TicketDone => include_str!("../../config/templates/ticket_done.txt"),
        Notification::TicketRejected => {
            include_str!("../../config/templates/ticket_rejected.txt")
        }
        Notification::TicketAccepted => {
            include_str!("../../config/templates/ticket_accepted.txt")
        }
    }
}

/// The parsed templates, and where each came from (for messages).
pub struct TemplateRenderer {
    env: Environment<'static>,
    /// Template name (`ticket_done.txt`) -> the file, or "embedded ...".
    origin: BTreeMap<String, String>,
}

impl std::fmt::Debug for TemplateRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateRenderer")
            .field("templates", &self.origin)
            .finish()
    }
}

impl TemplateRenderer {
    /// Reads `dir` (a missing directory: the embedded defaults only) and
    /// parses every template; each problem names its file.
    pub fn load(dir: &Path) -> Result<TemplateRenderer, Vec<String>> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build();
        if let Ok(syntax) = syntax {
            env.set_syntax(syntax);
        }
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(50);
        let mut origin = BTreeMap::new();
        let mut problems = Vec::new();
        for n in Notification::ALL {
            for ext in ["txt", "html"] {
                let name = format!("{}.{ext}", n.as_str());
                let path = dir.join(&name);
                let (source, from) = match std::fs::read_to_string(&path) {
                    Ok(s) => (s, path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if ext == "html" {
                            continue;
                        }
                        (embedded(n).to_string(), format!("embedded {name}"))
                    }
                    Err(e) => {
                        problems.push(format!("{}: cannot read: {e}", path.display()));
                        continue;
                    }
                };
                if let Err(e) = env.add_template_owned(name.clone(), source) {
                    problems.push(format!("{from}: does not parse: {}", describe(&e)));
                    continue;
                }
                origin.insert(name, from);
            }
        }
        load_answers(&mut env, &mut origin, &mut problems, &dir.join(ANSWERS_DIR));
        if problems.is_empty() {
            Ok(TemplateRenderer { env, origin })
        } else {
            Err(problems)
        }
    }

    fn render_one(&self, name: &str, ctx: &Value) -> Result<Option<String>, RenderError> {
        let Some(from) = self.origin.get(name) else {
            return Ok(None);
        };
        let fail = |detail: String| RenderError {
            template: from.clone(),
            detail,
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| fail(describe(&e)))?;
        let out = template.render(ctx).map_err(|e| fail(describe(&e)))?;
        if out.len() > MAX_OUTPUT {
            return Err(fail(format!(
                "rendered {} bytes, more than {MAX_OUTPUT}",
                out.len()
            )));
        }
        Ok(Some(out))
    }

    /// Renders every template with sample data: one line per failure.
    pub fn check(&self) -> Vec<String> {
        let data = sample();
        let answers = (self.origin.keys())
            .filter_map(|k| k.strip_prefix("answers/")?.strip_suffix(".txt"))
            .filter_map(|name| self.render_answer(name, &data).err());
        Notification::ALL
            .into_iter()
            .filter_map(|n| self.render(n, &data).err())
            .chain(answers)
            .map(|e| e.to_string())
            .collect()
    }

    fn render_pair(&self, base: &str, ctx: &Value) -> Result<Rendered, RenderError> {
        let text = self
            .render_one(&format!("{base}.txt"), ctx)?
            .unwrap_or_default();
        let (subject, text) = split_subject(&text);
        let html = self.render_one(&format!("{base}.html"), ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// A minijinja error with its line, without the source dump.
fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

/// The preset answers a rule may name: every `<name>.txt` (and optional
/// `<name>.html`) in `<templates_dir>/answers/` with a valid name; none
/// when the directory is missing (`check-config` reports a rule naming
/// one that is not there).
fn load_answers(
    env: &mut Environment<'static>,
    origin: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
    dir: &Path,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files {
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some((stem, ext)) = file.rsplit_once('.') else {
            continue;
        };
        if !matches!(ext, "txt" | "html") || !crate::config::rules::answer_name(stem) {
            continue;
        }
        let name = format!("{ANSWERS_DIR}/{file}");
        let from = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(source) => match env.add_template_owned(name.clone(), source) {
                Ok(()) => {
                    origin.insert(name, from);
                }
                Err(e) => problems.push(format!("{from}: does not parse: {}", describe(&e))),
            },
            Err(e) => problems.push(format!("{from}: cannot read: {e}")),
        }
    }
}

fn context_of(what: &str, d: &TemplateData) -> Value {
    context! {
        notification => what,
        message => d.message.as_str(),
        ticket => context! {
            number => d.number,
            tag => d.tag.as_str(),
            subject => d.subject.as_str(),
            status => d.status.as_str(),
            assignee => d.assignee.clone().unwrap_or_default(),
            link => d.link.as_str(),
            categories => d.categories.clone(),
            mailbox => d.mailbox.as_str(),
        },
        requester => context! {
            name => d.requester_name.clone().unwrap_or_default(),
            address => d.requester_address.as_str(),
        },
    }
}

/// Splits a first line `Subject: ...` (and the blank line after it) off.
fn split_subject(text: &str) -> (Option<String>, String) {
    let Some(rest) = text.strip_prefix("Subject:") else {
        return (None, text.to_string());
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'))
        .unwrap_or(body);
    let subject = line.trim();
    (
        (!subject.is_empty()).then(|| subject.to_string()),
        body.to_string(),
    )
}

impl Renderer for TemplateRenderer {
    fn render(&self, n: Notification, data: &TemplateData) -> Result<Rendered, RenderError> {
        self.render_pair(n.as_str(), &context_of(n.as_str(), data))
    }

    fn render_answer(&self, name: &str, data: &TemplateData) -> Result<Rendered, RenderError> {
        let base = format!("{ANSWERS_DIR}/{name}");
        if !self.origin.contains_key(&format!("{base}.txt")) {
            return Err(RenderError {
                template: format!("{base}.txt"),
                detail: "no such preset answer (was the file removed?)".into(),
            });
        }
        self.render_pair(&base, &context_of("answer", data))
    }
}

/// What `check-config` renders every template with.
fn sample() -> TemplateData {
    TemplateData {
        number: 1000,
        tag: "[MG#1000]".into(),
        subject: "Printer on fire".into(),
        requester_name: Some("Ann Customer".into()),
        requester_address: "ann@customer.example".into(),
        status: "open".into(),
        assignee: Some("bob@example.test".into()),
        link: "https://helpdesk.example/tickets/1".into(),
        message: "It started smoking <b>after</b> the update.".into(),
        categories: vec!["hardware".into()],
        mailbox: "support".into(),
    }
}

/// `check-config`: every template of the config loads and renders.
pub fn check(config: &NotifyConfig) -> Vec<String> {
    match TemplateRenderer::load(&config.templates_dir) {
        Ok(r) => r.check(),
        Err(problems) => problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_default_renders_with_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let r = TemplateRenderer::load(&dir.path().join("missing")).unwrap();
        assert!(r.check().is_empty(), "{:?}", r.check());
        let data = sample();
        for n in Notification::ALL {
            let out = r.render(n, &data).unwrap();
            let subject = out.subject.unwrap_or_default();
            assert!(subject.contains("Printer on fire"), "{n:?}: {subject:?}");
            assert!(!out.text.starts_with("Subject:"), "{n:?}");
            assert!(out.html.is_none());
        }
        let ack = r.render(Notification::Acknowledgement, &data).unwrap();
        assert!(ack.text.contains("Hello Ann Customer,"), "{}", ack.text);
        assert!(ack.text.contains("[MG#1000]"));
        assert!(ack.text.contains("https://helpdesk.example/tickets/1"));
        let new = r.render(Notification::NewTicket, &data).unwrap();
        assert!(
            new.text
                .contains("It started smoking <b>after</b> the update.")
        );
    }

    #[test]
    fn a_file_overrides_the_default_and_html_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ticket_done.txt"),
            "Subject: closed {{ ticket.tag }}\n\n{{ message }} / {{ ticket.categories | join(',') }}",
        )
        .unwrap();
        std::fs::write(dir.path().join("ticket_done.html"), "<p>{{ message }}</p>").unwrap();
        let r = TemplateRenderer::load(dir.path()).unwrap();
        let out = r.render(Notification::TicketDone, &sample()).unwrap();
        assert_eq!(out.subject.as_deref(), Some("closed [MG#1000]"));
        assert_eq!(
            out.text,
            "It started smoking <b>after</b> the update. / hardware"
        );
        assert_eq!(
            out.html.as_deref(),
            Some("<p>It started smoking &lt;b&gt;after&lt;&#x2f;b&gt; the update.</p>")
        );
    }

    #[test]
    fn preset_answers_load_from_the_answers_directory() {
        let dir = tempfile::tempdir().unwrap();
        let answers = dir.path().join("answers");
        std::fs::create_dir_all(&answers).unwrap();
        std::fs::write(
            answers.join("vendor_ack.txt"),
            "Subject: Thanks, {{ requester.name }}\n\nWe got {{ ticket.tag }}.",
        )
        .unwrap();
        std::fs::write(answers.join("vendor_ack.html"), "<p>{{ message }}</p>").unwrap();
        std::fs::write(answers.join("bad name.txt"), "ignored").unwrap();
        std::fs::write(answers.join("plain.txt"), "Hello").unwrap();
        let r = TemplateRenderer::load(dir.path()).unwrap();
        assert!(r.check().is_empty(), "{:?}", r.check());
        let out = r.render_answer("vendor_ack", &sample()).unwrap();
        assert_eq!(out.subject.as_deref(), Some("Thanks, Ann Customer"));
        assert_eq!(out.text, "We got [MG#1000].");
        assert!(out.html.unwrap().contains("&lt;b&gt;after"));
        let plain = r.render_answer("plain", &sample()).unwrap();
        assert_eq!((plain.subject, plain.text.as_str()), (None, "Hello"));
        let missing = r.render_answer("gone", &sample()).unwrap_err();
        assert_eq!(missing.template, "answers/gone.txt");
        // A broken answer is named by check-config like any template.
        std::fs::write(answers.join("broken.txt"), "{{ 1 / 0 }}").unwrap();
        let r = TemplateRenderer::load(dir.path()).unwrap();
        let problems = r.check();
        let file = answers.join("broken.txt").display().to_string();
        assert!(
            problems.len() == 1 && problems[0].starts_with(&file),
            "{problems:?}"
        );
        std::fs::write(answers.join("broken.txt"), "{% if %}").unwrap();
        let problems = TemplateRenderer::load(dir.path()).unwrap_err();
        assert!(problems[0].starts_with(&file), "{problems:?}");
    }

    #[test]
    fn broken_templates_name_their_file_and_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("new_ticket.txt"), "{% if %}").unwrap();
        let problems = TemplateRenderer::load(dir.path()).unwrap_err();
        let file = dir.path().join("new_ticket.txt").display().to_string();
        assert!(
            problems.len() == 1
                && problems[0].starts_with(&format!("{file}: does not parse: line 1")),
            "{problems:?}"
        );
        // Parses, fails when rendered: an endless loop runs out of fuel, a
        // bad filter argument is an error.
        std::fs::write(
            dir.path().join("new_ticket.txt"),
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("ticket_done.txt"), "{{ 1 / 0 }}").unwrap();
        let r = TemplateRenderer::load(dir.path()).unwrap();
        let problems = r.check();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with(&file)),
            "{problems:?}"
        );
        let done = dir.path().join("ticket_done.txt").display().to_string();
        assert!(
            problems.iter().any(|p| p.starts_with(&done)),
            "{problems:?}"
        );
    }
}
