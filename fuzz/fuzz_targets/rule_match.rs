//! Mail rules on arbitrary header blocks: the first line of the input is a
//! pattern (compiled as a rule regex when the size-capped engine takes it),
//! the rest is a message's header block. Matching every field with every
//! comparison and a whole rule evaluation must never panic, and `present`
//! must agree with the header reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate::mail::header_edit::Headers;
use mailgate::rules::{
    Action, Condition, Field, Match, Rule, RuleInput, Test, TextTest, evaluate, ticket_number,
};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let pattern = String::from_utf8_lossy(&data[..split]).into_owned();
    let raw = &data[(split + 1).min(data.len())..];
    let headers = Headers::parse(raw);
    let name: String = pattern.chars().filter(|c| c.is_ascii_graphic() && *c != ':').take(40).collect();
    let subject = String::from_utf8_lossy(raw).into_owned();
    let input = RuleInput {
        envelope_from: Some(&pattern),
        from: &pattern,
        to: vec![&pattern],
        cc: vec![],
        subject: &subject,
        headers: &headers,
        internal: raw.len() % 2 == 0,
        size: raw.len() as u64,
        has_attachments: false,
    };
    let mut tests = vec![
        TextTest::Equals(pattern.clone()),
        TextTest::Contains(pattern.clone()),
        TextTest::StartsWith(pattern.clone()),
        TextTest::EndsWith(pattern.clone()),
        TextTest::Present,
    ];
    if let Ok(re) = TextTest::regex(&pattern) {
        if let TextTest::Regex(r) = &re {
            let _ = ticket_number(r, &subject);
        }
        tests.push(re);
    }
    let fields = [
        Field::EnvelopeFrom,
        Field::From,
        Field::To,
        Field::Cc,
        Field::Recipients,
        Field::Subject,
        Field::Header(name.clone()),
    ];
    let mut conditions = Vec::new();
    for f in &fields {
        for t in &tests {
            let c = Condition { test: Test::Text(f.clone(), t.clone()), negate: false };
            c.holds(&input);
            conditions.push(c);
        }
    }
    let present = Condition { test: Test::Text(Field::Header(name.clone()), TextTest::Present), negate: false };
    assert_eq!(present.holds(&input), headers.has(&name));
    let rules = [
        Rule { name: "all".into(), matching: Match::All, conditions: conditions.clone(), actions: vec![Action::Stop] },
        Rule { name: "any".into(), matching: Match::Any, conditions, actions: vec![Action::Reject] },
    ];
    let e = evaluate(&rules, &rules, &input);
    assert!(!e.trace.is_empty() && e.trace.len() <= 4);
});
