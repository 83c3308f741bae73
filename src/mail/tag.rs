//! The ticket tag in subjects (e.g. `[MG#1042]`): formatting and finding it.
//!
//! The tag is how replies from clients that drop In-Reply-To/References
//! still find their ticket, so matching is exact on the configured prefix
//! and suffix around the number.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFormat {
    prefix: String,
    suffix: String,
}

impl Default for TagFormat {
    fn default() -> Self {
        TagFormat {
            prefix: "[MG#".into(),
            suffix: "]".into(),
        }
    }
}

impl TagFormat {
    /// Parses a template holding `{number}` exactly once, e.g. `[MG#{number}]`.
    pub fn parse(template: &str) -> Result<TagFormat, String> {
        const HOLE: &str = "{number}";
        let Some((prefix, suffix)) = template.split_once(HOLE) else {
            return Err(format!("{template:?} must contain {HOLE}"));
        };
        if suffix.contains(HOLE) {
            return Err(format!("{template:?} must contain {HOLE} only once"));
        }
        if prefix.trim().is_empty() {
            return Err(format!(
                "{template:?} needs some text before {HOLE}, or any number in a subject would match"
            ));
        }
        if prefix
            .chars()
            .chain(suffix.chars())
            .any(|c| c.is_ascii_digit() || c.is_control())
        {
            return Err(format!(
                "{template:?}: text around {HOLE} must not hold digits or control characters"
            ));
        }
        Ok(TagFormat {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    pub fn format(&self, number: u64) -> String {
        format!("{}{}{}", self.prefix, number, self.suffix)
    }

    /// Ticket numbers tagged in a subject, first occurrence first.
    pub fn find_all(&self, subject: &str) -> Vec<u64> {
        let mut found = Vec::new();
        let mut rest = subject;
        while let Some(pos) = rest.find(&self.prefix) {
            let after = &rest[pos + self.prefix.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0
                && digits <= 19
                && after[digits..].starts_with(&self.suffix)
                && let Ok(n) = after[..digits].parse::<u64>()
            {
                found.push(n);
            }
            rest = after;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_finds() {
        let t = TagFormat::parse("[MG#{number}]").unwrap();
        assert_eq!(t.format(1042), "[MG#1042]");
        assert_eq!(t.find_all("Re: [MG#1042] printer"), vec![1042]);
        assert_eq!(t.find_all("Re: [MG#12x] [MG#] [MG#7]"), vec![7]);
        assert_eq!(t.find_all("no tag 1042"), Vec::<u64>::new());
        assert_eq!(
            t.find_all("[MG#99999999999999999999999]"),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(TagFormat::parse("MG").is_err());
        assert!(TagFormat::parse("{number}").is_err());
        assert!(TagFormat::parse("[{number}{number}]").is_err());
        assert!(TagFormat::parse("[T1#{number}]").is_err());
        assert!(TagFormat::parse("Ticket#{number}").is_ok());
    }
}
