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

/// Whether `pattern` and `token` differ only in runs of digits (`dn228` and `dn731`, `R02-M1`
/// and `R27-M0`, `tbird-admin1` and `tbird-admin7`; a `<*>` in the pattern stands for a run):
/// the numbers inside a word are its values, so such tokens differ as values do, not as
/// words. Except where only single digits differ in a word that starts upper-case (`IPV4`
/// and `IPV6`, `EXT3-fs`): as the miner takes capitalised words for kinds and lower-case ones
/// for names, a single digit there may name a kind, and that difference stays a word's.
pub(super) fn differs_in_numbers_only(pattern: &str, token: &str) -> bool {
    walk_numbers(pattern, token, None).is_some_and(|long| long || starts_lowercase(token))
}

/// Whether `pattern` and `token` differ only in runs of digits, however short and whatever the
/// word's case (`PSR2` and `PSR5`, `SOCKS4` and `SOCKS5`): where [`differs_in_numbers_only`]
/// says no, such a difference may still name kinds, and is a word's until enough variants
/// turn up in its place.
pub(super) fn differs_in_digits_only(pattern: &str, token: &str) -> bool {
    walk_numbers(pattern, token, None).is_some()
}

/// Whether `token` holds a `<*>` inside a word (`root<*>_tmp`, `dn<*>`): a token already seen
/// to vary there, so a further difference in it is a value's too.
pub(super) fn varies_inside(token: &str) -> bool {
    let bytes = token.as_bytes();
    token.match_indices(WILDCARD).any(|(at, _)| {
        let end = at + WILDCARD.len();
        (at > 0 && bytes[at - 1].is_ascii_alphanumeric())
            || bytes.get(end).is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// The token covering both when they differ only in runs of digits: each differing run as
/// `<*>` (`dn228`, `dn731` give `dn<*>`; `PSR2=<*>`, `PSR5=<*>` give `PSR<*>=<*>`); `None`
/// when they differ otherwise.
pub(super) fn merge_numbers(pattern: &str, token: &str) -> Option<String> {
    let mut out = Vec::with_capacity(pattern.len());
    walk_numbers(pattern, token, Some(&mut out))?;
    String::from_utf8(out).ok()
}

/// Walks `pattern` and `token` side by side, a run of digits (or a `<*>` of the pattern)
/// against a run of digits. When they differ only there, whether a differing run has two or
/// more digits (or is against a `<*>`); `None` when they are equal or differ elsewhere.
/// Writes the merged token to `out` if given.
fn walk_numbers(pattern: &str, token: &str, mut out: Option<&mut Vec<u8>>) -> Option<bool> {
    let (p, t) = (pattern.as_bytes(), token.as_bytes());
    let digits = |bytes: &[u8], at: usize| {
        bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let (mut i, mut j, mut differed, mut long) = (0, 0, false, false);
    while i < p.len() && j < t.len() {
        let run = |bytes: &[u8], at: usize| {
            if bytes[at..].starts_with(WILDCARD.as_bytes()) {
                WILDCARD.len()
            } else {
                digits(bytes, at)
            }
        };
        let (p_run, t_run) = (run(p, i), run(t, j));
        match (p_run, t_run) {
            (0, 0) if p[i] == t[j] => {
                if let Some(out) = out.as_deref_mut() {
                    out.push(p[i]);
                }
                i += 1;
                j += 1;
            }
            (0, _) | (_, 0) => return None,
            _ => {
                let same = p[i..i + p_run] == t[j..j + t_run];
                differed |= !same;
                long |= !same && (p_run > 1 || t_run > 1);
                if let Some(out) = out.as_deref_mut() {
                    out.extend_from_slice(if same {
                        &p[i..i + p_run]
                    } else {
                        WILDCARD.as_bytes()
                    });
                }
                i += p_run;
                j += t_run;
            }
        }
    }
    (differed && i == p.len() && j == t.len()).then_some(long)
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
    fn tokens_that_differ_in_numbers_only_merge_there() {
        // (a, b, the token covering both, whether the difference is a value's outright)
        for (a, b, merged, value) in [
            ("dn228", "dn731", Some("dn<*>"), true),
            ("dn228/dn228", "dn731/dn731", Some("dn<*>/dn<*>"), true),
            (
                "Interconnect-2N96",
                "Interconnect-3N41",
                Some("Interconnect-<*>N<*>"),
                true,
            ),
            // Single digits in a capitalised word may name kinds: a word's difference.
            (
                "Interconnect-2N96",
                "Interconnect-3N96",
                Some("Interconnect-<*>N96"),
                false,
            ),
            (
                "Interconnect-<*>N96",
                "Interconnect-5N41",
                Some("Interconnect-<*>N<*>"),
                true,
            ),
            ("gige5", "gige5", None, false),
            ("IPV4", "IPV6", Some("IPV<*>"), false),
            ("gige<*>", "gige7", Some("gige<*>"), true),
            ("gige5", "gige7", Some("gige<*>"), true),
            ("EXT3-fs:", "EXT4-fs:", Some("EXT<*>-fs:"), false),
            ("gige5", "gige", None, false),
            ("gige5", "eth5", None, false),
            ("ext3", "ext3x", None, false),
            ("<*>", "abc", None, false),
            ("PSR2=<*>", "PSR5=<*>", Some("PSR<*>=<*>"), false),
            ("r58=<*>", "r91=<*>", Some("r<*>=<*>"), true),
        ] {
            assert_eq!(merge_numbers(a, b).as_deref(), merged, "{a} {b}");
            assert_eq!(differs_in_digits_only(a, b), merged.is_some(), "{a} {b}");
            assert_eq!(differs_in_numbers_only(a, b), value, "{a} {b}");
        }
    }

    #[test]
    fn a_wildcard_inside_a_word_says_the_token_varies() {
        for (token, expected) in [
            ("root<*>_tmp", true),
            ("dn<*>", true),
            ("<*>ms", true),
            ("user=<*>", false),
            ("<*>", false),
            ("(<*>)", false),
        ] {
            assert_eq!(varies_inside(token), expected, "{token}");
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
