//! `[[category]]`: the categories a ticket can be filed under, each a key
//! (what the API and filters use) with labels per language for people.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryConfig {
    pub key: String,
    /// Language code (`en`, `de`, `fr`, ...) -> label.
    pub labels: BTreeMap<String, String>,
}

impl CategoryConfig {
    /// The label in `lang`, else English, else the key.
    pub fn label(&self, lang: &str) -> &str {
        self.labels
            .get(lang)
            .or_else(|| self.labels.get("en"))
            .map(String::as_str)
            .unwrap_or(&self.key)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawCategory {
    key: String,
    labels: BTreeMap<String, String>,
}

pub(super) fn validate(
    raw: &[RawCategory],
    err: &mut impl FnMut(&str, String),
) -> Vec<CategoryConfig> {
    let mut out: Vec<CategoryConfig> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let key = c.key.trim();
        let at = format!("category[{i}]");
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
        {
            err(
                &format!("{at}.key"),
                format!("{key:?} is not a key (lower-case letters, digits, - and _)"),
            );
            continue;
        }
        if out.iter().any(|o| o.key == key) {
            err(
                &format!("{at}.key"),
                format!("duplicate category key {key:?}"),
            );
            continue;
        }
        for (lang, label) in &c.labels {
            if lang.len() < 2
                || lang.len() > 8
                || !lang.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            {
                err(
                    &format!("{at}.labels"),
                    format!("{lang:?} is not a language code (en, de, fr, pt-br ...)"),
                );
            }
            if label.trim().is_empty() || label.chars().any(char::is_control) {
                err(
                    &format!("{at}.labels.{lang}"),
                    "a label must be non-empty text on one line".into(),
                );
            }
        }
        out.push(CategoryConfig {
            key: key.to_string(),
            labels: c.labels.clone(),
        });
    }
    out
}
