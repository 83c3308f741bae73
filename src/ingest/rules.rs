//! The configured mail rules, ready to run on parsed mail: the global list,
//! each mailbox's own, and the internal domains that make a sender staff.
//! The pipeline and `mailgate rules test` both evaluate through here, so
//! what the test command prints is what ingest would decide.

use std::collections::HashMap;

use crate::config::Config;
use crate::mail::header_edit::Headers;
use crate::mail::{ParsedMail, Person};
use crate::rules::{self, Evaluation, Rule, RuleInput};

#[derive(Debug, Clone, Default)]
pub struct MailRules {
    global: Vec<Rule>,
    per_mailbox: HashMap<String, Vec<Rule>>,
    internal_domains: Vec<String>,
}

impl MailRules {
    pub fn new(config: &Config) -> MailRules {
        MailRules {
            global: config.rules.clone(),
            per_mailbox: (config.mailboxes.iter())
                .map(|m| (m.name.clone(), m.rules.clone()))
                .collect(),
            internal_domains: config.server.internal_domains.clone(),
        }
    }

    /// Whether an address is in one of `server.internal_domains` (exactly;
    /// a subdomain is listed on its own).
    pub fn is_internal(&self, address: &str) -> bool {
        address.rsplit_once('@').is_some_and(|(_, domain)| {
            let domain = domain.trim_end_matches('.');
            self.internal_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
        })
    }

    /// Whom a staff member wrote to: the first To, then Cc, address that
    /// is neither internal nor one of ours (`own` takes it lower-cased).
    pub fn counterpart(&self, mail: &ParsedMail, own: &dyn Fn(&str) -> bool) -> Option<Person> {
        (mail.to.iter().chain(mail.cc.iter()))
            .find(|p| !self.is_internal(&p.address) && !own(&p.address.to_lowercase()))
            .cloned()
    }

    /// Whether any rule could run for this mailbox (skips building the input).
    pub fn any_for(&self, mailbox: &str) -> bool {
        !self.global.is_empty() || self.per_mailbox.get(mailbox).is_some_and(|r| !r.is_empty())
    }

    /// Runs the global rules, then `mailbox`'s, on one message.
    pub fn evaluate(
        &self,
        mailbox: &str,
        mail: &ParsedMail,
        raw: &[u8],
        return_path: Option<&str>,
    ) -> Evaluation {
        let own = self
            .per_mailbox
            .get(mailbox)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if self.global.is_empty() && own.is_empty() {
            return Evaluation::default();
        }
        let headers = Headers::parse(raw);
        let input = RuleInput {
            envelope_from: return_path.or(mail.markers.return_path.as_deref()),
            from: &mail.from.address,
            to: mail.to.iter().map(|p| p.address.as_str()).collect(),
            cc: mail.cc.iter().map(|p| p.address.as_str()).collect(),
            subject: &mail.subject,
            headers: &headers,
            internal: self.is_internal(&mail.from.address),
            size: raw.len() as u64,
            has_attachments: !mail.attachments.is_empty(),
        };
        rules::evaluate(&self.global, own, &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_is_an_exact_domain_match_in_any_case() {
        let config = Config::parse(
            "[server]\ndomains=[\"example.test\"]\ninternal_domains=[\"corp.example\"]\n\
             [[mailbox]]\nname=\"s\"\naddresses=[\"s@example.test\"]\n",
        )
        .unwrap();
        let r = MailRules::new(&config);
        assert!(r.is_internal("ann@Corp.Example"));
        assert!(r.is_internal("ann@corp.example."));
        assert!(!r.is_internal("ann@sub.corp.example"));
        assert!(!r.is_internal("ann@notcorp.example"));
        assert!(!r.is_internal("corp.example"));
    }

    #[test]
    fn the_counterpart_is_the_first_outside_recipient_to_then_cc() {
        let config = Config::parse(
            "[server]\ndomains=[\"example.test\"]\ninternal_domains=[\"corp.example\"]\n\
             [[mailbox]]\nname=\"s\"\naddresses=[\"s@example.test\"]\n",
        )
        .unwrap();
        let r = MailRules::new(&config);
        let p = |a: &str| Person {
            address: a.into(),
            name: None,
        };
        let own = |a: &str| a == "s@example.test";
        let mut mail = ParsedMail {
            to: vec![p("bob@corp.example"), p("S@example.test")],
            cc: vec![p("ann@client.test"), p("eve@client.test")],
            ..ParsedMail::default()
        };
        assert_eq!(r.counterpart(&mail, &own), Some(p("ann@client.test")));
        mail.to.push(p("dave@client.test"));
        assert_eq!(r.counterpart(&mail, &own), Some(p("dave@client.test")));
        mail.to.clear();
        mail.cc.clear();
        assert_eq!(r.counterpart(&mail, &own), None);
    }
}
