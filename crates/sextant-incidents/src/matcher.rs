//! [`Matcher`]: a condition on one label, as silences and inhibition rules write them
//! (`name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`, Alertmanager's forms).

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// Longest matcher text accepted, in bytes.
pub const MAX_MATCHER_BYTES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }
}

/// One label condition. A missing label matches as the empty string (so `team!="db"` matches
/// an alert without `team`, and `team=""` matches only those).
#[derive(Clone, Debug)]
pub struct Matcher {
    name: String,
    op: Op,
    value: String,
    /// For `=~` and `!~`: the value anchored at both ends.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    /// Parses `name OP value`, the value bare or in double quotes (`\"` and `\\` escaped).
    pub fn parse(text: &str) -> Result<Matcher> {
        let bad = |reason: &str| Error::BadMatcher {
            matcher: text.chars().take(80).collect(),
            reason: reason.into(),
        };
        if text.len() > MAX_MATCHER_BYTES {
            return Err(bad("longer than 1024 bytes"));
        }
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| bad("expected `=`, `!=`, `=~` or `!~`"))?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Matches, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotMatches, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Equal, v)
        } else {
            return Err(bad("expected `=`, `!=`, `=~` or `!~`"));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
        {
            return Err(bad(
                "the label name must be letters, digits, `_`, `.`, `-` or `/`",
            ));
        }
        let value = unquote(value.trim()).ok_or_else(|| bad("unterminated quoted value"))?;
        Matcher::new(name, op, value).map_err(|reason| bad(&reason))
    }

    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Matcher {
        Matcher::new(name, Op::Equal, value.to_owned()).expect("an equality needs no regex")
    }

    fn new(name: &str, op: Op, value: String) -> Result<Matcher, String> {
        let regex = match op {
            Op::Matches | Op::NotMatches => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("bad regular expression: {e}"))?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `labels` satisfy this condition.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => value == self.value,
            (Op::NotEqual, _) => value != self.value,
            (Op::Matches, Some(regex)) => regex.is_match(value),
            (Op::NotMatches, Some(regex)) => !regex.is_match(value),
            (Op::Matches | Op::NotMatches, None) => unreachable!("regex matchers carry a regex"),
        }
    }
}

/// Whether every matcher of `matchers` holds for `labels` (an empty list holds for all).
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn unquote(text: &str) -> Option<String> {
    let Some(inner) = text.strip_prefix('"') else {
        return Some(text.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Matcher, D::Error> {
        let text = String::deserialize(deserializer)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_match_and_print_back() {
        let alert = labels(&[("alertname", "HighLatency"), ("service", "checkout")]);
        let check = |text: &str, expected: bool| {
            let matcher = Matcher::parse(text).unwrap();
            assert_eq!(matcher.matches(&alert), expected, "{text}");
            assert_eq!(Matcher::parse(&matcher.to_string()).unwrap(), matcher);
        };
        check("service=checkout", true);
        check("service=\"checkout\"", true);
        check(" service = \"check\" ", false);
        check("service!=payment", true);
        check("service=~\"check.*\"", true);
        check("service=~check", false);
        check("service!~\"pay|ship\"", true);
        check("team=\"\"", true);
        check("team!=db", true);
        check("alertname=\"High\\\"Latency\"", false);
    }

    #[test]
    fn bad_matchers_say_why() {
        let check = |text: &str, reason: &str| {
            let error = Matcher::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        };
        check("service", "expected `=`");
        check("=x", "label name");
        check("a b=x", "label name");
        check("service=\"open", "unterminated");
        check("service=\"a\" tail", "unterminated");
        check("service=~\"(\"", "regular expression");
        check(&format!("a={}", "x".repeat(2000)), "1024 bytes");
    }
}
