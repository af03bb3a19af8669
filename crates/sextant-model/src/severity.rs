//! Log levels as OpenTelemetry severity numbers: a level's name, and the level a raw line
//! states.
//!
//! ```
//! use sextant_model::severity::{ERROR, of_line, of_name};
//!
//! assert_eq!(of_name("Warning"), Some(13));
//! assert_eq!(sextant_model::severity::name(13), "WARN");
//! assert_eq!(of_line("19:50:59.971 ERROR t.s.TravelServiceImpl#457 no route"), Some(ERROR));
//! assert_eq!(of_line("all quiet"), None);
//! ```

/// The severity numbers of the usual levels (each the first of its range of four).
pub const TRACE: i32 = 1;
pub const DEBUG: i32 = 5;
pub const INFO: i32 = 9;
pub const WARN: i32 = 13;
pub const ERROR: i32 = 17;
pub const FATAL: i32 = 21;

/// The severity number of a level's name, in any case (`warn`, `WARNING`, `err`, `crit`, ...).
pub fn of_name(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" | "verbose" => TRACE,
        "debug" => DEBUG,
        "info" | "information" | "notice" => INFO,
        "warn" | "warning" => WARN,
        "error" | "err" | "severe" | "failure" => ERROR,
        "fatal" | "critical" | "crit" | "emergency" | "emerg" | "alert" => FATAL,
        _ => return None,
    })
}

/// The short name OpenTelemetry gives a severity number's range (`WARN` for 13 to 16), the one
/// spelling Sextant stores for levels it was given by name or number.
pub fn name(number: i32) -> &'static str {
    match number {
        ..=0 => "UNSPECIFIED",
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        _ => "FATAL",
    }
}

/// The level a raw line states: the first level word among its first dozen words of four
/// letters or more, written in capitals or in lower case (a word like `Error` in running text
/// is not a level).
pub fn of_line(line: &str) -> Option<i32> {
    line.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 4)
        .take(12)
        .filter(|w| {
            w.bytes().all(|b| b.is_ascii_uppercase()) || w.bytes().all(|b| b.is_ascii_lowercase())
        })
        .find_map(of_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_found_by_name_and_in_lines() {
        for (name, number) in [
            ("TRACE", Some(TRACE)),
            ("Information", Some(INFO)),
            ("err", Some(ERROR)),
            ("CRIT", Some(FATAL)),
            ("loud", None),
        ] {
            assert_eq!(of_name(name), number, "{name}");
        }
        for (line, number) in [
            ("2023-01-30 WARN  order 7 late", Some(WARN)),
            ("{\"severity\": \"error\", \"message\": \"x\"}", Some(ERROR)),
            ("level=info msg=\"started\"", Some(INFO)),
            ("Error handling is fine here", None),
            (
                "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima ERROR",
                None,
            ),
        ] {
            assert_eq!(of_line(line), number, "{line}");
        }
    }
}
