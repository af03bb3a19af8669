//! Dates written over several tokens (`Fri Jun 17 07:07:00 2005`, `2017-05-16 05:00:00`):
//! which raw tokens can be part of one, and which runs of them are one.

/// The token ranges `(start, end)` of `parts` that spell a date: two or more date parts in a
/// row, with a month name or a time, and a number or a time.
pub(super) fn date_runs(parts: &[DatePart]) -> impl Iterator<Item = (usize, usize)> + Clone + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < parts.len() {
            let start = i;
            let end = start
                + parts[start..]
                    .iter()
                    .take_while(|&&part| part != DatePart::None)
                    .count();
            i = end.max(start + 1);
            let run = &parts[start..end];
            let has = |wanted: DatePart| run.contains(&wanted);
            if run.len() >= 2
                && (has(DatePart::Month) || has(DatePart::Clock))
                && (has(DatePart::Number) || has(DatePart::Clock))
            {
                return Some((start, end));
            }
        }
        None
    })
}

/// What a raw token can be in a written date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DatePart {
    None,
    /// A weekday name.
    Weekday,
    /// A bare number of up to four digits (day or year).
    Number,
    /// A month name.
    Month,
    /// A time (`07:07:00`, `05:00:00.123`) or an ISO date (`2017-05-16`).
    Clock,
}

pub(super) fn date_part(token: &str) -> DatePart {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let token = token.trim_end_matches([',', '.']);
    let bytes = token.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_digit() => {
            if bytes.iter().all(u8::is_ascii_digit) {
                return if bytes.len() <= 4 {
                    DatePart::Number
                } else {
                    DatePart::None
                };
            }
            let time = bytes.len() >= 4
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_digit() || matches!(b, b':' | b'.'))
                && bytes.contains(&b':');
            let iso = bytes.len() >= 8
                && bytes.len() <= 10
                && bytes.iter().all(|&b| b.is_ascii_digit() || b == b'-')
                && bytes.iter().filter(|&&b| b == b'-').count() == 2;
            if time || iso {
                DatePart::Clock
            } else {
                DatePart::None
            }
        }
        Some(b) if b.is_ascii_alphabetic() && bytes.len() == 3 => {
            let is = |names: &[&str]| {
                names
                    .iter()
                    .any(|name| bytes.eq_ignore_ascii_case(name.as_bytes()))
            };
            if is(&MONTHS) {
                DatePart::Month
            } else if is(&DAYS) {
                DatePart::Weekday
            } else {
                DatePart::None
            }
        }
        _ => DatePart::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The date runs of a line, as the tokens they cover.
    fn check(line: &str, expected: &[&str]) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let parts: Vec<DatePart> = tokens.iter().map(|token| date_part(token)).collect();
        let runs: Vec<String> = date_runs(&parts)
            .map(|(start, end)| tokens[start..end].join(" "))
            .collect();
        assert_eq!(runs, expected, "{line:?}");
    }

    #[test]
    fn runs() {
        check(
            "at Fri Jun 17 07:07:00 2005 done",
            &["Fri Jun 17 07:07:00 2005"],
        );
        check(
            "from 2017-05-16 05:00:00 to 2017-05-16 06:00:00.",
            &["2017-05-16 05:00:00", "2017-05-16 06:00:00."],
        );
        check("on Jun 3", &["Jun 3"]);
        check("took 12:00", &[]);
        check("REPORT 14 0 4", &[]);
        check("Mon Tue", &[]);
        check("may 1", &["may 1"]);
    }
}
