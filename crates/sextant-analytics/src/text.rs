//! Numbers and durations written for people, for the sentences explanations are rendered into.

/// Up to four significant digits, no exponent for everyday sizes: `812`, `1.23`, `0.0123`,
/// `12346`; NaN and infinities read `unknown`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "unknown".to_owned();
    }
    let magnitude = value.abs();
    if magnitude >= 1e15 || (magnitude > 0.0 && magnitude < 1e-4) {
        return format!("{value:.3e}");
    }
    if magnitude >= 1000.0 {
        return format!("{value:.0}");
    }
    let decimals = if magnitude >= 100.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{value:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A whole number of seconds as its two largest units: `45s`, `10m`, `3h 20m`, `2d 4h`.
pub fn duration(seconds: i64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_people_write_them() {
        for (value, text) in [
            (0.0, "0"),
            (1.0, "1"),
            (1.23456, "1.23"),
            (812.345, "812.3"),
            (12_345.6, "12346"),
            (0.012_345, "0.0123"),
            (-3.5, "-3.5"),
            (-0.000_01, "-1.000e-5"),
            (f64::NAN, "unknown"),
            (2e20, "2.000e20"),
        ] {
            assert_eq!(number(value), text, "{value}");
        }
    }

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(600), "10m");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 59), "2d 4h");
        assert_eq!(duration(86_400), "1d");
    }
}
