//! Calendar arithmetic and RFC 3339 timestamps as Unix nanoseconds (UTC, proleptic Gregorian).
//!
//! ```
//! use sextant_model::time::{civil_from_days, days_from_civil, format_rfc3339, parse_rfc3339};
//!
//! assert_eq!(parse_rfc3339("1970-01-02T00:00:01.5Z"), Some(86_401_500_000_000));
//! assert_eq!(format_rfc3339(86_401_500_000_000), "1970-01-02T00:00:01.500Z");
//! assert_eq!(days_from_civil(2024, 2, 29), 19_782);
//! assert_eq!(civil_from_days(19_782), (2024, 2, 29));
//! ```

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as nanoseconds since the epoch; `t` and a space
/// are accepted for `T`, `z` for `Z`, a leap second (`:60`) is taken as the next second, and
/// fraction digits past the ninth are dropped. `None` if the text is anything else, names a
/// date that does not exist, or falls before 1970.
pub fn parse_rfc3339(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut fraction = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Nanosecond precision; further digits are dropped.
        for (k, digit) in b[start..i].iter().take(9).enumerate() {
            fraction += i64::from(digit - b'0') * 10i64.pow(8 - k as u32);
        }
    }
    let offset_seconds = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3_600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_seconds;
    seconds
        .checked_mul(NANOS_PER_SECOND)?
        .checked_add(fraction)
        .filter(|n| *n >= 0)
}

/// The number of days in `month` (1 to 12) of `year`.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (month 1 to 12), by Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `unix_nanos` as RFC 3339 in UTC with millisecond precision (`2026-11-23T15:00:00.000Z`).
pub fn format_rfc3339(unix_nanos: i64) -> String {
    let millis = unix_nanos.div_euclid(1_000_000);
    let seconds = millis.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        millis.rem_euclid(1000)
    )
}

/// `(year, month, day)` of a day number since 1970-01-01, the inverse of [`days_from_civil`]
/// (Howard Hinnant's `civil_from_days`, by 400-year eras).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<i64>) {
        assert_eq!(parse_rfc3339(input), expected, "{input}");
    }

    #[test]
    fn rfc3339_in_every_accepted_form() {
        // 2023-11-14T22:13:20Z.
        let ns = 1_700_000_000 * NANOS_PER_SECOND;
        check("2023-11-14T22:13:20Z", Some(ns));
        check("2023-11-14t22:13:20z", Some(ns));
        check("2023-11-14 22:13:20Z", Some(ns));
        check("2023-11-14T23:13:20+01:00", Some(ns));
        check("2023-11-14T21:43:20-00:30", Some(ns));
        check("2023-11-14T22:13:20.5Z", Some(ns + 500_000_000));
        check("2023-11-14T22:13:20.000003-00:00", Some(ns + 3_000));
        check("2023-11-14T22:13:20.123456789999Z", Some(ns + 123_456_789));
        check("2023-11-14T22:13:60Z", Some(ns + 40 * NANOS_PER_SECOND));
        check("1970-01-01T00:00:00Z", Some(0));
        check(
            "2024-02-29T00:00:00Z",
            Some(1_709_164_800 * NANOS_PER_SECOND),
        );
    }

    #[test]
    fn malformed_rfc3339_is_refused() {
        for input in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-00-14T22:13:20Z",
            "2023-02-29T00:00:00Z",
            "2023-11-31T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "2023-11-14T22:13:20 Z",
            "+023-11-14T22:13:20Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
        ] {
            check(input, None);
        }
    }

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        for days in (-800_000..800_000).step_by(97) {
            let (year, month, day) = civil_from_days(days);
            assert!((1..=days_in_month(year, month)).contains(&day), "{days}");
            assert_eq!(days_from_civil(year, month, day), days, "{days}");
        }
    }

    #[test]
    fn month_lengths_follow_gregorian_leap_years() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
    }
}
