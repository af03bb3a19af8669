//! Comparing masked tokens: whether one fits a template token, how two merge, and which
//! differences look like values rather than different words.

use super::mask::WILDCARD;

/// An upper-case name such as `RUNNING` or `CONTAINER_REMOTE_LAUNCH`: an enum constant, which
/// names a state rather than holding a value.
pub(super) fn is_constant_name(token: &str) -> bool {
    let core = token.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
    core.len() >= 2
        && core
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        && core.bytes().any(|b| b.is_ascii_uppercase())
}

/// A token that may come and go within one event: a variable, or a unit of measure.
pub(super) fn is_value_like(token: &str) -> bool {
    const UNITS: [&str; 24] = [
        "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "bytes", "ms", "us", "ns", "s", "sec",
        "secs", "second", "seconds", "min", "mins", "minutes", "h", "hr", "hours", "%",
    ];
    if token.contains(WILDCARD) {
        return true;
    }
    let core = token.trim_matches(['(', ')', '[', ']', '{', '}', ',', '.', ';', ':']);
    core.len() <= 7 && UNITS.iter().any(|unit| core.eq_ignore_ascii_case(unit))
}

/// A short unit such as `B`, `KB`, `ms` (one or two letters, maybe with trailing punctuation).
pub(super) fn is_unit(token: &str) -> bool {
    let core = token.trim_end_matches([',', '.', ';', ')', ']']);
    (1..=2).contains(&core.len()) && core.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Whether two differing tokens need more evidence before they become a variable: all but a
/// `key=value` or `key:value` pair whose key is shared (`user=root`, `user=admin`).
pub(super) fn is_soft_difference(pattern: &str, token: &str) -> bool {
    let merged = merge_tokens(pattern, token);
    let empty_brackets = |t: &str| matches!(t, "()" | "[]" | "{}" | "\"\"" | "''");
    !(merged.contains("=<*>")
        || merged.contains(":<*>")
        || empty_brackets(pattern)
        || empty_brackets(token))
}

/// Whether `token` starts with a lower-case ASCII letter.
pub(super) fn starts_lowercase(token: &str) -> bool {
    token.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// Whether masked `token` fits template token `pattern` (`<*>` matches any non-empty text).
pub(super) fn token_matches(pattern: &str, token: &str) -> bool {
    if pattern == token || pattern == WILDCARD {
        return true;
    }
    if !pattern.contains(WILDCARD) {
        return false;
    }
    glob_matches(pattern.as_bytes(), token.as_bytes())
}

/// Glob matching where `<*>` stands for one or more bytes. Greedy leftmost placement of the
/// literal pieces between wildcards, so linear in the text for each piece.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let wildcard = WILDCARD.as_bytes();
    let mut pieces = Vec::new();
    let mut rest = pattern;
    while let Some(pos) = find(rest, wildcard, 0) {
        pieces.push(&rest[..pos]);
        rest = &rest[pos + wildcard.len()..];
    }
    pieces.push(rest);
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !text.starts_with(first) {
        return false;
    }
    let mut at = first.len();
    for piece in &pieces[1..pieces.len() - 1] {
        match find(text, piece, at + 1) {
            Some(pos) => at = pos + piece.len(),
            None => return false,
        }
    }
    text.len() >= at + 1 + last.len() && text.ends_with(last)
}

/// The first position at or after `from` where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    if needle.is_empty() {
        return Some(from);
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|pos| pos + from)
}

/// The narrowest token covering both `a` and `b`: a shared prefix up to and including a
/// delimiter, `<*>`, and a shared suffix from a delimiter on (`user=root`, `user=admin` give
/// `user=<*>`); `<*>` if they share neither.
pub(super) fn merge_tokens(a: &str, b: &str) -> String {
    let is_boundary = |c: u8| matches!(c, b'=' | b':' | b'(' | b'[' | b'{' | b'"' | b'\'');
    let (a_bytes, b_bytes) = (a.as_bytes(), b.as_bytes());
    let common_prefix = a_bytes
        .iter()
        .zip(b_bytes)
        .take_while(|(x, y)| x == y)
        .count();
    let prefix = a_bytes[..common_prefix]
        .iter()
        .rposition(|&c| is_boundary(c))
        .map_or(0, |pos| pos + 1);
    let is_closing = |c: u8| matches!(c, b')' | b']' | b'}' | b'"' | b'\'' | b',' | b':' | b';');
    let max_suffix = a.len().min(b.len()) - prefix;
    let common_suffix = a_bytes
        .iter()
        .rev()
        .zip(b_bytes.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let suffix_bytes = &a_bytes[a.len() - common_suffix..];
    let suffix = suffix_bytes
        .iter()
        .position(|&c| is_closing(c))
        .map_or(0, |pos| common_suffix - pos);
    let mut merged = String::with_capacity(prefix + WILDCARD.len() + suffix);
    merged.push_str(&a[..prefix]);
    merged.push_str(WILDCARD);
    merged.push_str(&a[a.len() - suffix..]);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_tokens_keeps_key_prefixes() {
        for (a, b, expected) in [
            ("user=root", "user=admin", "user=<*>"),
            ("root", "admin", "<*>"),
            ("(root)", "(admin)", "(<*>)"),
            ("abc:", "xyz:", "<*>:"),
            ("[a]", "[<*>]", "[<*>]"),
        ] {
            assert_eq!(merge_tokens(a, b), expected, "{a} {b}");
        }
    }

    #[test]
    fn glob_matching() {
        for (pattern, text, expected) in [
            ("user=<*>", "user=root", true),
            ("user=<*>", "user=", false),
            ("<*>:<*>", "<*>:<*>", true),
            ("(<*>)", "(a b)", true),
            ("(<*>)", "[a]", false),
        ] {
            assert_eq!(token_matches(pattern, text), expected, "{pattern} {text}");
        }
    }
}
