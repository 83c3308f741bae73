//! Tests of what mail rules send (forwards, preset answers) on the
//! in-memory backend: who gets them, what stops them, the events.

use std::sync::Arc;
use std::time::Duration;

use super::apply::apply;
use super::memory::MemoryTxn;
use super::model::{Change, Outcome, RuleMailAction, SuppressReason};
use super::request::{CommitRequest, Item, TicketSettings};
use super::suite::{Mail, mail, notify_settings, request_for};
use super::txn::TicketTxn;
use crate::rules::{Answer, Decision, ForwardMode, ForwardTo};

fn one(txn: &mut MemoryTxn, s: &TicketSettings, r: CommitRequest) -> Outcome {
    match apply(txn, s, &r) {
        Ok(mut o) => o.remove(0),
        Err(never) => match never {},
    }
}

fn ticket_of(o: &Outcome) -> u64 {
    match o {
        Outcome::Stored { ticket_id, .. } => *ticket_id,
        other => panic!("expected a stored message, got {other:?}"),
    }
}

/// `m` for support with `decision` from its rules; automatic when `auto`.
fn ruled(m: &Mail, decision: Decision, auto: bool) -> CommitRequest {
    let mut r = request_for(m, &["support"], auto);
    let decision = Arc::new(decision);
    for item in &mut r.items {
        if let Item::Message { rules, .. } = item {
            *rules = Some(decision.clone());
        }
    }
    r
}

fn at(mut r: CommitRequest, when: &str) -> CommitRequest {
    r.origin.received_at = when.into();
    r
}

fn forwarding(to: ForwardTo, mode: ForwardMode) -> Decision {
    Decision {
        forwards: vec![("vendors".into(), to, mode)],
        ..Decision::default()
    }
}

fn answering(template: &str, window: Duration) -> Decision {
    Decision {
        answers: vec![Answer {
            rule: "welcome".into(),
            template: template.into(),
            window,
        }],
        ..Decision::default()
    }
}

/// (source, recipients, raw) of every queued message made by a rule.
fn rule_sent(txn: &MemoryTxn) -> Vec<(String, Vec<String>, String)> {
    txn.pending_outbox()
        .into_iter()
        .filter_map(|id| {
            let m = txn.message(id)?;
            let source = m.source.strip_prefix("rule:")?.to_string();
            let to = txn.outbox(id).unwrap().unwrap().rcpt_to;
            let raw = String::from_utf8(txn.raw(id).unwrap()).unwrap();
            Some((source, to, raw))
        })
        .collect()
}

/// The suppressions of what rules send (`forward:<rule>`, `answer:<rule>`).
fn suppressed(txn: &MemoryTxn, ticket: u64) -> Vec<(String, Option<String>, SuppressReason)> {
    let mut all = txn.suppressions(ticket);
    all.retain(|(what, _, _)| what.contains(':'));
    all
}

/// (rule, action, recipients) of the RuleMail events on a ticket.
fn rule_events(txn: &MemoryTxn, ticket: u64) -> Vec<(String, RuleMailAction, Vec<String>)> {
    txn.events(ticket)
        .into_iter()
        .filter_map(|e| match e.change {
            Change::RuleMail {
                rule, action, to, ..
            } => {
                assert_eq!(e.by.as_deref(), Some("mail rules"));
                Some((rule, action, to))
            }
            _ => None,
        })
        .collect()
}

fn no_caps() -> TicketSettings {
    notify_settings(|ns| {
        ns.config.per_recipient_limit = 0;
        ns.config.per_ticket_limit = 0;
    })
}

#[test]
fn a_forward_goes_to_its_addresses_with_the_original_attached() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    let to = ForwardTo::Addresses(vec!["Team@Vendor.test".into(), "team@vendor.test".into()]);
    let m = mail("ann@customer.test", Some("f1@customer.test"), "Invoice 7");
    let t = ticket_of(&one(
        &mut txn,
        &s,
        ruled(&m, forwarding(to, ForwardMode::Attached), false),
    ));
    let sent = rule_sent(&txn);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (source, rcpt, raw) = &sent[0];
    assert_eq!(source, "vendors");
    assert_eq!(rcpt, &vec!["team@vendor.test".to_string()]);
    // Automatic, on the ticket's thread, from the mailbox, the original
    // (the whole received message) carried along.
    assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");
    assert!(raw.contains("From: support@gw.test"), "{raw}");
    assert!(raw.contains("In-Reply-To: <f1@customer.test>"), "{raw}");
    assert!(raw.contains("Subject: [MG#1000] Fwd: Invoice 7"), "{raw}");
    let original = request_for(&m, &["support"], false).raw.len();
    assert!(
        raw.contains(&format!(
            "X-Test-Original: attached {original} bytes, 0 attachments"
        )),
        "{raw}"
    );
    assert!(raw.contains("Forwarded by the mail rule \"vendors\" (ticket [MG#1000])"));
    assert!(
        raw.contains("From: ann@customer.test\nSubject: Invoice 7\n"),
        "{raw}"
    );
    assert_eq!(
        rule_events(&txn, t),
        vec![(
            "vendors".to_string(),
            RuleMailAction::Forward,
            vec!["team@vendor.test".to_string()]
        )]
    );
}

#[test]
fn an_inline_forward_to_the_team_quotes_the_text_and_skips_the_sender() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    // The team of support is desk@staff.test; the sender is on it too.
    let m = mail("desk@staff.test", Some("f2@staff.test"), "Note").text("the original words");
    let r = ruled(&m, forwarding(ForwardTo::Team, ForwardMode::Inline), false);
    let t = ticket_of(&one(&mut txn, &s, r));
    assert_eq!(rule_sent(&txn), vec![]);
    assert_eq!(
        suppressed(&txn, t),
        vec![(
            "forward:vendors".to_string(),
            None,
            SuppressReason::NoRecipient
        )]
    );
    let m = mail("ann@customer.test", Some("f3@customer.test"), "Help").text("the original words");
    let r = ruled(&m, forwarding(ForwardTo::Team, ForwardMode::Inline), false);
    one(&mut txn, &s, r);
    let sent = rule_sent(&txn);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, vec!["desk@staff.test".to_string()]);
    assert!(
        sent[0].2.contains("X-Test-Original: inline"),
        "{}",
        sent[0].2
    );
    assert!(sent[0].2.contains("\nthe original words"), "{}", sent[0].2);
}

#[test]
fn automatic_mail_is_not_forwarded_and_own_addresses_never_get_one() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    let first = mail("ann@customer.test", Some("a1@customer.test"), "Printer");
    let t = ticket_of(&one(
        &mut txn,
        &s,
        ruled(&first, Decision::default(), false),
    ));
    // An auto-reply threading onto the ticket (e.g. our own forward coming
    // back): stored, not forwarded.
    let auto = mail(
        "ann@customer.test",
        Some("a2@customer.test"),
        "Out of office",
    )
    .replying("a1@customer.test");
    let to = ForwardTo::Addresses(vec!["team@vendor.test".into()]);
    let r = ruled(&auto, forwarding(to, ForwardMode::Attached), true);
    assert_eq!(ticket_of(&one(&mut txn, &s, r)), t);
    // A forward to the gateway's own address would feed it back.
    let again =
        mail("ann@customer.test", Some("a3@customer.test"), "More").replying("a1@customer.test");
    let to = ForwardTo::Addresses(vec!["sales@gw.test".into(), "team@vendor.test".into()]);
    one(
        &mut txn,
        &s,
        ruled(&again, forwarding(to, ForwardMode::Attached), false),
    );
    assert_eq!(
        suppressed(&txn, t),
        vec![
            (
                "forward:vendors".to_string(),
                None,
                SuppressReason::AutomaticMail
            ),
            (
                "forward:vendors".to_string(),
                Some("sales@gw.test".to_string()),
                SuppressReason::OwnAddress
            ),
        ]
    );
    let sent = rule_sent(&txn);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, vec!["team@vendor.test".to_string()]);
}

#[test]
fn forwards_count_in_the_per_recipient_cap() {
    // 3 automatic messages per recipient an hour.
    let s = notify_settings(|ns| ns.config.per_ticket_limit = 0);
    let mut txn = MemoryTxn::default();
    let ids = ["c1@c.test", "c2@c.test", "c3@c.test", "c4@c.test"];
    for id in ids {
        let m = mail("ann@customer.test", Some(id), "Again");
        let to = ForwardTo::Addresses(vec!["team@vendor.test".into()]);
        one(
            &mut txn,
            &s,
            ruled(&m, forwarding(to, ForwardMode::Attached), false),
        );
    }
    assert_eq!(rule_sent(&txn).len(), 3);
}

#[test]
fn a_preset_answer_goes_once_per_sender_per_window() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    let day = Duration::from_secs(24 * 3600);
    let send = |txn: &mut MemoryTxn, from: &'static str, id: &'static str, when: &str| {
        let m = mail(from, Some(id), "Question");
        ticket_of(&one(
            txn,
            &s,
            at(ruled(&m, answering("faq", day), false), when),
        ))
    };
    let t1 = send(
        &mut txn,
        "ann@customer.test",
        "q1@c.test",
        "2026-01-01T00:00:00Z",
    );
    let sent = rule_sent(&txn);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "welcome");
    assert_eq!(sent[0].1, vec!["ann@customer.test".to_string()]);
    // An answer is an automatic reply to the message, with the template.
    assert!(
        sent[0].2.contains("Auto-Submitted: auto-replied"),
        "{}",
        sent[0].2
    );
    assert!(
        sent[0].2.contains("In-Reply-To: <q1@c.test>"),
        "{}",
        sent[0].2
    );
    assert!(sent[0].2.contains("Subject: [MG#1000] answer faq Question"));
    assert!(
        sent[0]
            .2
            .contains("answer faq: [MG#1000] ann@customer.test")
    );
    assert_eq!(
        rule_events(&txn, t1),
        vec![(
            "welcome".to_string(),
            RuleMailAction::Answer,
            vec!["ann@customer.test".to_string()]
        )]
    );
    // The same sender within the day: a new ticket, no second answer.
    let t2 = send(
        &mut txn,
        "Ann@Customer.test",
        "q2@c.test",
        "2026-01-01T20:00:00Z",
    );
    assert_eq!(rule_sent(&txn).len(), 1);
    assert_eq!(
        suppressed(&txn, t2),
        vec![(
            "answer:welcome".to_string(),
            Some("ann@customer.test".to_string()),
            SuppressReason::AlreadyAnswered
        )]
    );
    // Another sender gets one; the first again once the day is over.
    send(
        &mut txn,
        "bob@customer.test",
        "q3@c.test",
        "2026-01-01T21:00:00Z",
    );
    send(
        &mut txn,
        "ann@customer.test",
        "q4@c.test",
        "2026-01-02T00:00:01Z",
    );
    let to: Vec<Vec<String>> = rule_sent(&txn).into_iter().map(|s| s.1).collect();
    assert_eq!(
        to,
        vec![
            vec!["ann@customer.test".to_string()],
            vec!["bob@customer.test".to_string()],
            vec!["ann@customer.test".to_string()],
        ]
    );
}

#[test]
fn automatic_and_internal_mail_is_never_answered() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    let first = mail("ann@customer.test", Some("b1@customer.test"), "Printer");
    let t = ticket_of(&one(
        &mut txn,
        &s,
        ruled(&first, Decision::default(), false),
    ));
    let week = Duration::from_secs(7 * 24 * 3600);
    let auto = mail("ann@customer.test", Some("b2@customer.test"), "Auto: away")
        .replying("b1@customer.test");
    one(&mut txn, &s, ruled(&auto, answering("faq", week), true));
    let staff =
        mail("desk@staff.test", Some("b3@staff.test"), "Re: Printer").replying("b1@customer.test");
    let mut r = ruled(&staff, answering("faq", week), false);
    for item in &mut r.items {
        if let Item::Message { internal, .. } = item {
            *internal = true;
        }
    }
    one(&mut txn, &s, r);
    // A template that fails: recorded, nothing sent, the message kept.
    let third = mail("ann@customer.test", Some("b4@customer.test"), "Re: Printer")
        .replying("b1@customer.test");
    one(
        &mut txn,
        &s,
        ruled(&third, answering("broken", week), false),
    );
    assert_eq!(rule_sent(&txn), vec![]);
    assert_eq!(
        suppressed(&txn, t),
        vec![
            (
                "answer:welcome".to_string(),
                Some("ann@customer.test".to_string()),
                SuppressReason::AutomaticMail
            ),
            (
                "answer:welcome".to_string(),
                Some("desk@staff.test".to_string()),
                SuppressReason::InternalMail
            ),
            (
                "answer:welcome".to_string(),
                None,
                SuppressReason::TemplateError
            ),
        ]
    );
    assert_eq!(txn.ticket(t).unwrap().unwrap().message_count, 4);
}

#[test]
fn a_template_without_a_subject_line_answers_with_re_subject() {
    let s = no_caps();
    let mut txn = MemoryTxn::default();
    let m = mail("ann@customer.test", Some("p1@customer.test"), "Order 5");
    one(
        &mut txn,
        &s,
        ruled(&m, answering("plain", Duration::from_secs(60)), false),
    );
    let sent = rule_sent(&txn);
    assert!(
        sent[0].2.contains("Subject: [MG#1000] Re: Order 5"),
        "{}",
        sent[0].2
    );
}
