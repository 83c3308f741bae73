//! What a mailbox is for: `role` (a helpdesk mailbox that opens and answers
//! tickets, or a BCC importer that only files staff mail), and what its
//! internal mail that threads nowhere becomes (`internal_unthreaded`).
//! Kept apart from `mod.rs` so the importer's keys are checked in one place.

use crate::rules::TextTest;

/// `role` of a `[[mailbox]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum MailboxRole {
    /// Opens tickets, threads replies, sends acknowledgements (the default).
    #[default]
    Helpdesk,
    /// Files mail staff put it in BCC of onto tickets of another mailbox;
    /// never answers.
    Importer(ImporterConfig),
}

/// The settings of a `role = "importer"` mailbox.
#[derive(Debug, Clone)]
pub struct ImporterConfig {
    /// `import_into`: the mailbox whose tickets it files onto (and opens).
    pub into: String,
    /// `ticket_number_pattern`: finds a ticket number in the subject or text.
    pub ticket_number_pattern: Option<regex::Regex>,
}

impl PartialEq for ImporterConfig {
    fn eq(&self, other: &ImporterConfig) -> bool {
        self.into == other.into
            && self
                .ticket_number_pattern
                .as_ref()
                .map(regex::Regex::as_str)
                == other
                    .ticket_number_pattern
                    .as_ref()
                    .map(regex::Regex::as_str)
    }
}

/// `internal_unthreaded`: internal mail that continues no ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InternalUnthreaded {
    /// Recorded as a rejection with reason `internal_unthreaded`.
    #[default]
    Reject,
    /// Opens a ticket (for the external recipient; never acknowledged).
    Ticket,
}

/// The keys as written on one `[[mailbox]]`.
pub(super) struct RawRole<'a> {
    pub role: Option<&'a str>,
    pub import_into: Option<&'a str>,
    pub ticket_number_pattern: Option<&'a str>,
    pub internal_unthreaded: Option<&'a str>,
}

/// Checks one mailbox's role keys (`import_into` is checked against the
/// other mailboxes by [`check_targets`]).
pub(super) fn validate(
    key: &str,
    raw: &RawRole<'_>,
    default_mailbox: Option<&str>,
    err: &mut impl FnMut(&str, String),
) -> (MailboxRole, InternalUnthreaded) {
    let unthreaded = match raw.internal_unthreaded.map(str::trim) {
        None | Some("reject") => InternalUnthreaded::Reject,
        Some("ticket") => InternalUnthreaded::Ticket,
        Some(other) => {
            err(
                &format!("{key}.internal_unthreaded"),
                format!("unknown value {other:?} (reject or ticket)"),
            );
            InternalUnthreaded::Reject
        }
    };
    let role = match raw.role.map(str::trim) {
        None | Some("helpdesk") => {
            for (name, set) in [
                ("import_into", raw.import_into.is_some()),
                ("ticket_number_pattern", raw.ticket_number_pattern.is_some()),
            ] {
                if set {
                    err(
                        &format!("{key}.{name}"),
                        "only for a mailbox with role = \"importer\"".into(),
                    );
                }
            }
            MailboxRole::Helpdesk
        }
        Some("importer") => {
            let pattern = raw
                .ticket_number_pattern
                .and_then(|p| match TextTest::regex(p) {
                    Ok(TextTest::Regex(re)) => Some(re),
                    Ok(_) => None,
                    Err(e) => {
                        err(
                            &format!("{key}.ticket_number_pattern"),
                            format!("invalid regex: {}", super::rules::one_line(&e)),
                        );
                        None
                    }
                });
            let into = match raw.import_into.map(str::trim) {
                Some(i) if !i.is_empty() => i.to_string(),
                _ => match default_mailbox {
                    Some(d) => d.to_string(),
                    None => {
                        err(
                            &format!("{key}.import_into"),
                            "required: the mailbox whose tickets the importer files onto (there is no default mailbox)".into(),
                        );
                        String::new()
                    }
                },
            };
            MailboxRole::Importer(ImporterConfig {
                into,
                ticket_number_pattern: pattern,
            })
        }
        Some(other) => {
            err(
                &format!("{key}.role"),
                format!("unknown role {other:?} (helpdesk or importer)"),
            );
            MailboxRole::Helpdesk
        }
    };
    (role, unthreaded)
}

/// Every importer's `import_into` names a helpdesk mailbox.
pub(super) fn check_targets(
    mailboxes: &[super::MailboxConfig],
    err: &mut impl FnMut(&str, String),
) {
    for (i, m) in mailboxes.iter().enumerate() {
        let MailboxRole::Importer(imp) = &m.role else {
            continue;
        };
        if imp.into.is_empty() {
            continue;
        }
        let key = format!("mailbox[{i}].import_into");
        match mailboxes.iter().find(|t| t.name == imp.into) {
            None => err(&key, format!("no mailbox is named {:?}", imp.into)),
            Some(t) if t.role != MailboxRole::Helpdesk => err(
                &key,
                format!("{:?} is not a helpdesk mailbox (role)", imp.into),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[server]\ndomains=[\"gw.test\"]\ninternal_domains=[\"corp.test\"]\n\
        [[mailbox]]\nname=\"support\"\naddresses=[\"support@gw.test\"]\ndefault=true\n";

    fn problems(extra: &str) -> Vec<String> {
        match Config::parse(&format!("{BASE}{extra}")) {
            Ok(_) => vec![],
            Err(e) => e.problems(),
        }
    }

    #[test]
    fn an_importer_files_into_the_default_mailbox_unless_told() {
        let c = Config::parse(&format!(
            "{BASE}[[mailbox]]\nname=\"crm\"\naddresses=[\"crm@gw.test\"]\nrole=\"importer\"\n\
             ticket_number_pattern='Ticket #(\\d+)'\ninternal_unthreaded=\"ticket\"\n"
        ))
        .unwrap();
        let crm = &c.mailboxes[1];
        let MailboxRole::Importer(imp) = &crm.role else {
            panic!("{:?}", crm.role)
        };
        assert_eq!(imp.into, "support");
        assert_eq!(
            imp.ticket_number_pattern.as_ref().map(regex::Regex::as_str),
            Some("Ticket #(\\d+)")
        );
        assert_eq!(crm.internal_unthreaded, InternalUnthreaded::Ticket);
        assert_eq!(c.mailboxes[0].role, MailboxRole::Helpdesk);
        assert_eq!(
            c.mailboxes[0].internal_unthreaded,
            InternalUnthreaded::Reject
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let p = problems(
            "[[mailbox]]\nname=\"crm\"\naddresses=[\"crm@gw.test\"]\nrole=\"importer\"\n\
             ticket_number_pattern=\"Ticket #(\"\nimport_into=\"nowhere\"\n\
             [[mailbox]]\nname=\"x\"\naddresses=[\"x@gw.test\"]\nrole=\"archive\"\n\
             internal_unthreaded=\"drop\"\n\
             [[mailbox]]\nname=\"y\"\naddresses=[\"y@gw.test\"]\nimport_into=\"support\"\n",
        );
        let has = |prefix: &str| p.iter().any(|l| l.starts_with(prefix));
        assert!(
            has("mailbox[1].ticket_number_pattern: invalid regex"),
            "{p:?}"
        );
        assert!(
            has("mailbox[1].import_into: no mailbox is named \"nowhere\""),
            "{p:?}"
        );
        assert!(has("mailbox[2].role: unknown role \"archive\""), "{p:?}");
        assert!(
            has("mailbox[2].internal_unthreaded: unknown value \"drop\""),
            "{p:?}"
        );
        assert!(
            has("mailbox[3].import_into: only for a mailbox with role"),
            "{p:?}"
        );
        // Into another importer, or into itself: not a helpdesk mailbox.
        let p = problems(
            "[[mailbox]]\nname=\"crm\"\naddresses=[\"crm@gw.test\"]\nrole=\"importer\"\nimport_into=\"crm\"\n",
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("mailbox[1].import_into: \"crm\" is not a helpdesk")),
            "{p:?}"
        );
    }
}
