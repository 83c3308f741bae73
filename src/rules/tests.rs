use super::*;
use crate::mail::header_edit::Headers;

const RAW: &[u8] = b"From: Ann <ann@vendor.example>\r\n\
To: support@example.test\r\n\
Cc: boss@example.test\r\n\
Subject: Invoice 4711 for Ticket #1234\r\n\
X-Priority: 1 (Highest)\r\n\
X-Mailer: Shop 2.0\r\n\
\r\n\
body\r\n";

fn input<'a>(headers: &'a Headers<'a>) -> RuleInput<'a> {
    RuleInput {
        envelope_from: Some("bounce+ann@vendor.example"),
        from: "ann@vendor.example",
        to: vec!["support@example.test"],
        cc: vec!["boss@example.test"],
        subject: "Invoice 4711 for Ticket #1234",
        headers,
        internal: false,
        size: 2048,
        has_attachments: false,
    }
}

fn cond(test: Test) -> Condition {
    Condition {
        test,
        negate: false,
    }
}

fn text(field: Field, test: TextTest) -> Condition {
    cond(Test::Text(field, test))
}

fn rule(name: &str, conditions: Vec<Condition>, actions: Vec<Action>) -> Rule {
    Rule {
        name: name.into(),
        matching: Match::All,
        conditions,
        actions,
    }
}

#[test]
fn every_condition_kind_matches_and_fails_as_written() {
    let headers = Headers::parse(RAW);
    let i = input(&headers);
    let holds = |c: Condition| c.holds(&i);
    // Text tests, case-insensitive except regex.
    assert!(holds(text(
        Field::From,
        TextTest::EndsWith("@VENDOR.example".into())
    )));
    assert!(!holds(text(
        Field::From,
        TextTest::EndsWith("@other.example".into())
    )));
    assert!(holds(text(
        Field::EnvelopeFrom,
        TextTest::StartsWith("bounce+".into())
    )));
    assert!(holds(text(
        Field::To,
        TextTest::Equals("Support@Example.Test".into())
    )));
    assert!(!holds(text(
        Field::To,
        TextTest::Equals("boss@example.test".into())
    )));
    assert!(holds(text(
        Field::Cc,
        TextTest::Equals("boss@example.test".into())
    )));
    assert!(holds(text(
        Field::Recipients,
        TextTest::Equals("boss@example.test".into())
    )));
    assert!(holds(text(
        Field::Subject,
        TextTest::regex(r"Invoice \d+").unwrap()
    )));
    assert!(!holds(text(
        Field::Subject,
        TextTest::regex(r"^invoice").unwrap()
    )));
    assert!(holds(text(
        Field::Subject,
        TextTest::regex(r"(?i)^invoice").unwrap()
    )));
    assert!(holds(text(
        Field::Header("x-priority".into()),
        TextTest::StartsWith("1".into())
    )));
    assert!(holds(text(
        Field::Header("X-Mailer".into()),
        TextTest::Present
    )));
    assert!(!holds(text(
        Field::Header("List-Id".into()),
        TextTest::Present
    )));
    // Facts.
    assert!(holds(cond(Test::Internal(false))));
    assert!(!holds(cond(Test::Internal(true))));
    assert!(holds(cond(Test::SizeOver(1024))));
    assert!(!holds(cond(Test::SizeOver(2048))));
    assert!(holds(cond(Test::SizeUnder(4096))));
    assert!(holds(cond(Test::HasAttachments(false))));
    // Negation.
    assert!(holds(Condition {
        test: Test::Internal(true),
        negate: true
    }));
    // No envelope sender known: an envelope_from test fails, negated holds.
    let mut pulled = input(&headers);
    pulled.envelope_from = None;
    let c = text(Field::EnvelopeFrom, TextTest::Present);
    assert!(!c.holds(&pulled));
}

#[test]
fn rules_run_in_order_later_settings_win_and_stop_ends_the_list() {
    let headers = Headers::parse(RAW);
    let i = input(&headers);
    let from_vendor = || text(Field::From, TextTest::Contains("vendor".into()));
    let global = vec![
        rule(
            "vendor",
            vec![from_vendor()],
            vec![
                Action::SetQueue("purchasing".into()),
                Action::AddCategory("vendor".into()),
            ],
        ),
        rule(
            "never",
            vec![text(Field::Subject, TextTest::Contains("nope".into()))],
            vec![Action::Reject],
        ),
    ];
    let mailbox = vec![
        rule(
            "invoices",
            vec![text(Field::Subject, TextTest::Contains("invoice".into()))],
            vec![
                Action::SetQueue("billing".into()),
                Action::AddCategory("invoice".into()),
                Action::AddCategory("vendor".into()),
                Action::SetStatus(TicketStatus::Pending),
                Action::Stop,
            ],
        ),
        rule("after stop", vec![], vec![Action::Reject]),
    ];
    let e = evaluate(&global, &mailbox, &i);
    let names: Vec<(&str, Scope, bool)> = e
        .trace
        .iter()
        .map(|t| (t.rule.as_str(), t.scope, t.matched))
        .collect();
    assert_eq!(
        names,
        [
            ("vendor", Scope::Global, true),
            ("never", Scope::Global, false),
            ("invoices", Scope::Mailbox, true),
        ]
    );
    let d = &e.decision;
    assert_eq!(d.queue.as_deref(), Some("billing"));
    assert_eq!(d.categories, ["vendor", "invoice"]);
    assert_eq!(d.status, Some(TicketStatus::Pending));
    assert_eq!(d.stopped_by.as_deref(), Some("invoices"));
    assert_eq!(d.rejected_by, None);
}

#[test]
fn reject_ends_evaluation_and_names_the_rule() {
    let headers = Headers::parse(RAW);
    let i = input(&headers);
    let rules = vec![
        rule(
            "spam",
            vec![text(
                Field::Header("X-Mailer".into()),
                TextTest::Contains("shop".into()),
            )],
            vec![Action::Reject],
        ),
        rule("later", vec![], vec![Action::SetQueue("x".into())]),
    ];
    let e = evaluate(&rules, &[], &i);
    assert_eq!(e.decision.rejected_by.as_deref(), Some("spam"));
    assert_eq!(e.decision.queue, None);
    assert_eq!(e.trace.len(), 1);
}

#[test]
fn any_matches_on_one_condition_and_all_needs_every_one() {
    let headers = Headers::parse(RAW);
    let i = input(&headers);
    let conditions = vec![
        text(Field::From, TextTest::Contains("vendor".into())),
        cond(Test::Internal(true)),
    ];
    let mut r = rule("r", conditions, vec![]);
    assert!(!r.matches(&i));
    r.matching = Match::Any;
    assert!(r.matches(&i));
    // An empty rule matches everything, either way.
    assert!(rule("all", vec![], vec![]).matches(&i));
}

#[test]
fn a_link_pattern_reads_the_ticket_number_from_its_first_group() {
    let p = regex::Regex::new(r"Ticket #(\d+)").unwrap();
    assert_eq!(
        ticket_number(&p, "Re: Invoice for Ticket #1234"),
        Some(1234)
    );
    assert_eq!(ticket_number(&p, "no number here"), None);
    let whole = regex::Regex::new(r"\d{4}").unwrap();
    assert_eq!(ticket_number(&whole, "case 0042 open"), Some(42));
    // A number too large for a ticket is no number, not a panic.
    assert_eq!(ticket_number(&p, "Ticket #99999999999999999999999"), None);
}

#[test]
fn regexes_over_the_size_cap_are_refused_and_huge_fields_are_cut() {
    assert!(TextTest::regex(r"(\w{100}){100}").is_err());
    let long = "a".repeat(condition::MATCH_INPUT_LIMIT * 2) + "needle";
    let t = TextTest::regex("needle").unwrap();
    assert!(!t.matches(&long), "beyond the cap is not read");
    assert!(TextTest::Contains("needle".into()).matches(&long));
    // Cut on a char boundary.
    let multi = "é".repeat(condition::MATCH_INPUT_LIMIT);
    assert!(condition::capped(&multi).len() <= condition::MATCH_INPUT_LIMIT);
}

/// Arbitrary header blocks (a seeded generator, like the fuzz target):
/// matching never panics, and `present` agrees with `has`.
#[test]
fn arbitrary_headers_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] = b"Xx-:: \t\r\n\xc3\xa9\xff=?aA1#";
    let re = TextTest::regex("(?i)x.*a").unwrap();
    for _ in 0..2000 {
        let len = (next() % 200) as usize;
        let raw: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let headers = Headers::parse(&raw);
        let i = input(&headers);
        for name in ["X", "x-", "Subject", ""] {
            let present = text(Field::Header(name.into()), TextTest::Present).holds(&i);
            assert_eq!(present, headers.has(name), "{name:?} in {raw:?}");
            text(Field::Header(name.into()), re.clone()).holds(&i);
            text(Field::Header(name.into()), TextTest::Contains("é".into())).holds(&i);
        }
    }
}
