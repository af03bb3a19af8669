//! Token masking: which parts of a whitespace-separated token are variables, by generic rules.
//!
//! A token is cut at delimiter characters (`=`, `:`, `,`, brackets, quotes, …) into units; a
//! unit that looks like a value becomes [`WILDCARD`] and delimiters stay. Values are numbers
//! and anything starting with a digit (addresses, versions, sizes such as `41C`), hex strings
//! and ids (`0x1f`, `ffffffff`, UUIDs, `blk_-42`, `rdd_4_2`), paths and URLs (a path runs on
//! through its query string), MAC and IPv6 addresses, `host.name:port`, lower-case dotted
//! names with three or more parts (`com.example.app`), and `true`/`false`/`null`. A leading
//! word stays (`core.2275` is `core.<*>`), and so does a trailing full stop (`port 80.` is
//! `port <*>.`). Wildcards joined by nothing or by `:` then collapse into one (`<*>:<*>`,
//! times, `ip:port`). No rule knows any particular log source.

/// The text that stands for a variable in a template.
pub const WILDCARD: &str = "<*>";

/// Characters that end a unit and are kept as they are. All ASCII, so cutting a `&str` at
/// one of them always lands on a character boundary.
fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b'=' | b':'
            | b','
            | b';'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b'<'
            | b'>'
            | b'|'
            | b'@'
            | b'#'
            | b'&'
            | b'!'
            | b'?'
    )
}

/// Characters that end a path.
fn is_path_end(byte: u8) -> bool {
    matches!(
        byte,
        b'"' | b'\''
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'<'
            | b'>'
            | b','
            | b';'
            | b':'
            | b'|'
    )
}

/// Appends the masked form of `token` (which holds no whitespace) to `out`.
pub fn mask_token(token: &str, out: &mut String) {
    let start = out.len();
    let wildcards = match find_url(token) {
        Some((url_start, url_end)) => {
            let mut count = mask_units(&token[..url_start], out);
            out.push_str(WILDCARD);
            count += 1 + mask_units(&token[url_end..], out);
            count
        }
        None => mask_units(token, out),
    };
    if wildcards >= 2 {
        collapse_wildcards(out, start);
    }
}

/// The byte range of a `scheme://rest` URL inside `token`, if there is one.
fn find_url(token: &str) -> Option<(usize, usize)> {
    let bytes = token.as_bytes();
    if !bytes.contains(&b':') {
        return None;
    }
    let marker = bytes.windows(3).position(|window| window == b"://")?;
    let mut start = marker;
    while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'+') {
        start -= 1;
    }
    if start == marker {
        return None;
    }
    let mut end = marker + 3;
    while end < bytes.len() && !matches!(bytes[end], b'"' | b'\'' | b')' | b']' | b'>' | b',') {
        end += 1;
    }
    Some((start, end))
}

/// Masks the units of `text`, returns how many wildcards it wrote.
fn mask_units(text: &str, out: &mut String) -> usize {
    let bytes = text.as_bytes();
    let mut wildcards = 0;
    let mut i = 0;
    while i < bytes.len() {
        if is_delimiter(bytes[i]) {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        if let Some(end) = hex_colon_run(bytes, i) {
            out.push_str(WILDCARD);
            wildcards += 1;
            i = end;
            continue;
        }
        let start = i;
        // An absolute path runs on through `?`, `=`, `&` and `#` of its query string.
        if bytes[i] == b'/'
            && bytes
                .get(i + 1)
                .is_some_and(|&b| b != b'/' && !is_delimiter(b))
        {
            while i < bytes.len() && !is_path_end(bytes[i]) {
                i += 1;
            }
            out.push_str(WILDCARD);
            wildcards += 1;
            continue;
        }
        while i < bytes.len() && !is_delimiter(bytes[i]) {
            i += 1;
        }
        // A drive letter: `C:\Windows\…` is one path, not `C` and `\Windows\…`.
        if i - start == 1
            && bytes[start].is_ascii_alphabetic()
            && bytes.get(i) == Some(&b':')
            && bytes.get(i + 1) == Some(&b'\\')
        {
            i += 1;
            while i < bytes.len() && !is_delimiter(bytes[i]) {
                i += 1;
            }
            out.push_str(WILDCARD);
            wildcards += 1;
            continue;
        }
        let unit = &text[start..i];
        let before_port =
            bytes.get(i) == Some(&b':') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        if before_port && is_host_name(unit.as_bytes()) {
            out.push_str(WILDCARD);
            wildcards += 1;
        } else if unit.len() > 1
            && unit.ends_with('.')
            && is_variable_unit(unit.trim_end_matches('.').as_bytes())
        {
            // A value at the end of a sentence: `port 40984.` is `port <*>.`.
            let dots = unit.len() - unit.trim_end_matches('.').len();
            out.push_str(WILDCARD);
            out.push_str(&unit[unit.len() - dots..]);
            wildcards += 1;
        } else if is_variable_unit(unit.as_bytes()) {
            // Keep a leading dotted word: `core.2275` is `core.<*>`, `check......0` is
            // `check......<*>`.
            let keep = word_prefix(unit.as_bytes());
            out.push_str(&unit[..keep]);
            out.push_str(WILDCARD);
            wildcards += 1;
        } else {
            out.push_str(unit);
        }
    }
    wildcards
}

/// The end of a MAC or IPv6 address starting at `start`: three or more groups of one to four
/// hex digits joined by `:` (`::` allowed), at least one digit, ending at a delimiter.
fn hex_colon_run(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let mut groups = 0;
    let mut has_digit = false;
    loop {
        let group_start = i;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() && i - group_start < 5 {
            has_digit |= bytes[i].is_ascii_digit();
            i += 1;
        }
        let group_len = i - group_start;
        if group_len > 4 {
            return None;
        }
        if group_len > 0 {
            groups += 1;
        }
        if i < bytes.len() && bytes[i] == b':' {
            i += 1;
            continue;
        }
        if i < bytes.len() && !is_delimiter(bytes[i]) {
            return None;
        }
        break;
    }
    // A trailing `:` belongs to the text after the address (`fe80::1:` is rare).
    if i > start && bytes[i - 1] == b':' && bytes.get(i.wrapping_sub(2)) != Some(&b':') {
        i -= 1;
    }
    (groups >= 3 && has_digit).then_some(i)
}

/// Whether a unit (no delimiters, no whitespace) is a value rather than a word of the message.
pub fn is_variable_unit(unit: &[u8]) -> bool {
    let len = unit.len();
    let Some(&first) = unit.first() else {
        return false;
    };
    // Numbers and everything starting like one: counts, addresses, versions, `0x…`, `41C`.
    if first.is_ascii_digit() {
        return true;
    }
    // Paths: absolute, home-relative, Windows-style, or with two or more separators.
    if len > 1 && (first == b'/' || first == b'\\') {
        return true;
    }
    let (mut digits, mut slashes, mut dots) = (0, 0, 0);
    for &byte in unit {
        match byte {
            b'0'..=b'9' => digits += 1,
            b'/' => slashes += 1,
            b'.' => dots += 1,
            _ => {}
        }
    }
    if slashes >= 2 || (len > 2 && (unit.starts_with(b"~/") || unit.starts_with(b"./"))) {
        return true;
    }
    if digits == 0 {
        return is_literal_value(unit)
            || (len >= 8 && unit.iter().all(u8::is_ascii_hexdigit))
            || (dots >= 2 && is_dotted_name(unit));
    }
    if matches!(first, b'-' | b'+' | b'.') && len > 1 && unit[1].is_ascii_digit() {
        return true;
    }
    if len >= 6 && unit.iter().all(|&b| b.is_ascii_hexdigit() || b == b'-') {
        return true;
    }
    let numeric_segment = unit
        .split(|&b| matches!(b, b'_' | b'-' | b'.' | b'/' | b'\\' | b'+' | b'$'))
        .any(|segment| {
            !segment.is_empty()
                && (segment.iter().all(u8::is_ascii_digit)
                    || (segment.len() >= 2
                        && segment.iter().all(u8::is_ascii_hexdigit)
                        && segment.iter().any(u8::is_ascii_digit)))
        });
    numeric_segment || longest_digit_run(unit) >= 3
}

/// The length of a leading `word.` (letters, `_`, `-`, then dots) whose remainder is a value
/// on its own, or 0.
fn word_prefix(unit: &[u8]) -> usize {
    let letters = unit
        .iter()
        .take_while(|&&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
        .count();
    if letters == 0 || unit.get(letters) != Some(&b'.') {
        return 0;
    }
    let dots = unit[letters..].iter().take_while(|&&b| b == b'.').count();
    let keep = letters + dots;
    let rest = &unit[keep..];
    if rest.first().is_some_and(u8::is_ascii_digit) && is_variable_unit(rest) {
        keep
    } else {
        0
    }
}

/// A dotted host name such as `mail.example.org` (before a `:port`).
fn is_host_name(unit: &[u8]) -> bool {
    unit.contains(&b'.')
        && !unit.starts_with(b".")
        && !unit.ends_with(b".")
        && unit
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A dotted name with three or more parts and a lower-case first part (`www.example.com`,
/// `com.example.App`): a host or package name, a value rather than a word.
fn is_dotted_name(unit: &[u8]) -> bool {
    unit.iter().filter(|&&b| b == b'.').count() >= 2
        && is_host_name(unit)
        && !unit
            .iter()
            .take_while(|&&b| b != b'.')
            .any(u8::is_ascii_uppercase)
        && !unit.windows(2).any(|w| w == b"..")
}

/// `true`, `false` and `null` in any case: values, not words.
fn is_literal_value(unit: &[u8]) -> bool {
    unit.eq_ignore_ascii_case(b"true")
        || unit.eq_ignore_ascii_case(b"false")
        || unit.eq_ignore_ascii_case(b"null")
}

fn longest_digit_run(unit: &[u8]) -> usize {
    let mut best = 0;
    let mut run = 0;
    for byte in unit {
        if byte.is_ascii_digit() {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// Collapses wildcard runs in `out[start..]`, in place: wildcards joined by nothing or by `:`
/// become one (`<*><*>`, `<*>:<*>`, times, MAC and IPv6 addresses, `host:port`).
fn collapse_wildcards(out: &mut String, start: usize) {
    let mut from = start;
    while let Some(pos) = out[from..].find(WILDCARD) {
        let run_start = from + pos;
        let mut run_end = run_start + WILDCARD.len();
        loop {
            let rest = &out[run_end..];
            if rest.starts_with(WILDCARD) {
                run_end += WILDCARD.len();
            } else if rest.starts_with(":<*>") {
                run_end += 1 + WILDCARD.len();
            } else {
                break;
            }
        }
        if run_end > run_start + WILDCARD.len() {
            out.replace_range(run_start..run_end, WILDCARD);
        }
        from = run_start + WILDCARD.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let mut out = String::new();
        mask_token(input, &mut out);
        assert_eq!(out, expected, "masking {input:?}");
    }

    #[test]
    fn numbers_addresses_and_ids() {
        check("1234", "<*>");
        check("-42", "<*>");
        check("0.2477829", "<*>");
        check("10.10.34.11", "<*>");
        check("/10.10.34.11:45307", "<*>");
        check("0x14ed93111f20005", "<*>");
        check("blk_-6952295868487656571", "<*>");
        check("rdd_42_20", "<*>");
        check("b9000564-fe1a-409b-b8cc-1e88b294cd1d", "<*>");
        check("ffffffff", "<*>");
        check("00:11:43:e3:ba:c3", "<*>");
        check("00:00:01", "<*>");
        check("41C", "<*>");
        check("core.2275", "core.<*>");
        check("40984.", "<*>.");
        check("host:8030.", "host:<*>.");
        check("instruction......0", "instruction......<*>");
        check("v6.1.7601.23505", "<*>");
        check("proxy.example.org:5070", "<*>");
    }

    #[test]
    fn key_values_and_brackets() {
        check("uid=0", "uid=<*>");
        check("ws=null", "ws=<*>");
        check("(TID", "(TID");
        check("12)", "<*>)");
        check("[ib_sm_sweep.c:1831]:", "[ib_sm_sweep.c:<*>]:");
        check("taskID[2019352994]", "taskID[<*>]");
        check("sessionid:0x14ede63a5a70002", "sessionid:<*>");
        check("time=25233975,0,93,0,20002", "time=<*>,<*>,<*>,<*>,<*>");
    }

    #[test]
    fn words_with_digits_stay() {
        check("ssh2", "ssh2");
        check("SOCKS5", "SOCKS5");
        check("jk2_init()", "jk2_init()");
        check("Slf4jLogger", "Slf4jLogger");
        check("wl0:", "wl0:");
        check("BLOCK*", "BLOCK*");
        check("none", "none");
    }

    #[test]
    fn paths_and_urls() {
        check("/var/lib/nova/instances", "<*>");
        check("/v2/servers?all=1&since=2017-05-16\"", "<*>\"");
        check("[hdfs://msra-sa-41:9000]", "[<*>]");
        check("C:\\Windows\\servicing\\sqm\\*_std.sqm,", "<*>,");
        check("(/var/lib/x):", "(<*>):");
    }

    #[test]
    fn names_and_literals() {
        check("www.example.com", "<*>");
        check("name=com.android.systemui,", "name=<*>,");
        check("com.apple.Safari.Update:", "<*>:");
        check("NameSystem.addStoredBlock:", "NameSystem.addStoredBlock:");
        check("org.Example", "org.Example");
        check("isScreenOn=TRUE", "isScreenOn=<*>");
        check("fe80::1:ff:2", "<*>");
        check("[2017-07-03_13,48,39.362]", "[<*>,<*>,<*>]");
    }

    #[test]
    fn non_ascii_is_kept() {
        check("héllo", "héllo");
        check("é=1", "é=<*>");
    }
}
