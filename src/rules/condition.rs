//! One test a rule makes on a message: a field, how it is compared, and
//! whether the answer is negated. Text comparisons other than `regex`
//! ignore ASCII case (addresses and header values are case-insensitive in
//! practice); a regex is compiled once, at config time, with a size cap so
//! a pathological pattern is a config error, not a slow gateway.

use std::fmt;

use super::input::RuleInput;

/// Compiled-program and DFA caps of a rule regex (the regex crate
/// guarantees linear-time matching; these bound its memory).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Longest text a regex is run on: longer fields are cut (on a char
/// boundary), so one huge header cannot cost more than this.
pub const MATCH_INPUT_LIMIT: usize = 64 * 1024;

/// Where the compared text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    EnvelopeFrom,
    From,
    /// Any To address.
    To,
    /// Any Cc address.
    Cc,
    /// Any To or Cc address.
    Recipients,
    Subject,
    /// Every value of the named header field (any case).
    Header(String),
}

impl Field {
    pub fn name(&self) -> String {
        match self {
            Field::EnvelopeFrom => "envelope_from".into(),
            Field::From => "from".into(),
            Field::To => "to".into(),
            Field::Cc => "cc".into(),
            Field::Recipients => "recipients".into(),
            Field::Subject => "subject".into(),
            Field::Header(h) => format!("header {h}"),
        }
    }
}

/// How text is compared.
#[derive(Debug, Clone)]
pub enum TextTest {
    Equals(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Regex(regex::Regex),
    /// The field exists (for `header`; an address field with any address).
    Present,
}

impl TextTest {
    /// Whether `value` passes; text tests other than regex are ASCII-case-insensitive.
    pub fn matches(&self, value: &str) -> bool {
        let lower = || value.to_ascii_lowercase();
        match self {
            TextTest::Equals(s) => value.eq_ignore_ascii_case(s),
            TextTest::Contains(s) => lower().contains(&s.to_ascii_lowercase()),
            TextTest::StartsWith(s) => lower().starts_with(&s.to_ascii_lowercase()),
            TextTest::EndsWith(s) => lower().ends_with(&s.to_ascii_lowercase()),
            TextTest::Regex(r) => r.is_match(capped(value)),
            TextTest::Present => true,
        }
    }

    /// Compiles a rule regex within the size caps.
    pub fn regex(pattern: &str) -> Result<TextTest, regex::Error> {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(TextTest::Regex)
    }
}

impl PartialEq for TextTest {
    fn eq(&self, other: &TextTest) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for TextTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextTest::Equals(s) => write!(f, "equals {s:?}"),
            TextTest::Contains(s) => write!(f, "contains {s:?}"),
            TextTest::StartsWith(s) => write!(f, "starts with {s:?}"),
            TextTest::EndsWith(s) => write!(f, "ends with {s:?}"),
            TextTest::Regex(r) => write!(f, "matches /{}/", r.as_str()),
            TextTest::Present => f.write_str("is present"),
        }
    }
}

/// The longest prefix of `value` within [`MATCH_INPUT_LIMIT`], on a char boundary.
pub fn capped(value: &str) -> &str {
    if value.len() <= MATCH_INPUT_LIMIT {
        return value;
    }
    let mut end = MATCH_INPUT_LIMIT;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Text(Field, TextTest),
    /// From is (true) or is not (false) in an internal domain.
    Internal(bool),
    /// The raw message is larger than this many bytes.
    SizeOver(u64),
    /// The raw message is smaller than this many bytes.
    SizeUnder(u64),
    /// Has (true) or has no (false) attachments.
    HasAttachments(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub test: Test,
    /// `not = true`: the condition holds when the test fails.
    pub negate: bool,
}

impl Condition {
    pub fn holds(&self, input: &RuleInput<'_>) -> bool {
        self.test.passes(input) != self.negate
    }
}

impl Test {
    fn passes(&self, input: &RuleInput<'_>) -> bool {
        match self {
            Test::Text(field, test) => {
                let any = |mut values: std::slice::Iter<'_, &str>| values.any(|v| test.matches(v));
                match field {
                    Field::EnvelopeFrom => input.envelope_from.is_some_and(|v| test.matches(v)),
                    Field::From => !input.from.is_empty() && test.matches(input.from),
                    Field::To => any(input.to.iter()),
                    Field::Cc => any(input.cc.iter()),
                    Field::Recipients => any(input.to.iter()) || any(input.cc.iter()),
                    Field::Subject => test.matches(input.subject),
                    Field::Header(name) => input.headers.values(name).any(|v| test.matches(&v)),
                }
            }
            Test::Internal(want) => input.internal == *want,
            Test::SizeOver(n) => input.size > *n,
            Test::SizeUnder(n) => input.size < *n,
            Test::HasAttachments(want) => input.has_attachments == *want,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negate {
            f.write_str("not ")?;
        }
        match &self.test {
            Test::Text(field, test) => write!(f, "{} {test}", field.name()),
            Test::Internal(true) => f.write_str("from an internal domain"),
            Test::Internal(false) => f.write_str("from an external domain"),
            Test::SizeOver(n) => write!(f, "size over {n} bytes"),
            Test::SizeUnder(n) => write!(f, "size under {n} bytes"),
            Test::HasAttachments(true) => f.write_str("has attachments"),
            Test::HasAttachments(false) => f.write_str("has no attachments"),
        }
    }
}
