//! What the read endpoints (`/api/v1/logs/search`, `/api/v1/metrics/query_range`,
//! `/api/v1/traces/{id}`, `/api/v1/patterns`) share: query-string parsing, times, SQL literals, and running one
//! query over the caller's tenant.
//!
//! Times in parameters are either RFC 3339 (`2026-11-23T15:00:00Z`,
//! `2026-11-23T16:00:00.5+01:00`) or an integer count since the Unix epoch whose unit is
//! decided by its magnitude: below 10^11 seconds, below 10^14 milliseconds, otherwise
//! nanoseconds. Every value that reaches SQL is a literal built here: strings with their single
//! quotes doubled, integers formatted by Rust. No identifier is ever taken from a request.

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use sextant_model::{Table, time};
use sextant_query::QueryOutput;

use crate::{ApiError, AppState, Principal};

/// A request's query-string parameters, checked against the names an endpoint knows.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// The parameters of `query`; any name outside `known` is refused.
    pub(crate) fn new(
        query: Result<Query<HashMap<String, String>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(map) = query.map_err(|e| {
            ApiError::BadRequest(format!("the query string is not well formed: {e}"))
        })?;
        if let Some(name) = map.keys().find(|name| !known.contains(&name.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{name}`; known: {}",
                known.join(", ")
            )));
        }
        Ok(Params(map))
    }

    /// The parameter's value; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A time parameter (see the module doc) as nanoseconds since the epoch.
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|value| {
                parse_time(value).ok_or_else(|| {
                    bad(
                        name,
                        "must be RFC 3339 or integer Unix seconds, milliseconds or nanoseconds",
                    )
                })
            })
            .transpose()
    }

    /// A whole-number parameter from 1 to `max`, `default` when absent.
    pub(crate) fn count(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| bad(name, &format!("must be 1 to {max}"))),
        }
    }

    /// `from` and `to` with their defaults (the last hour), checked to be in order.
    pub(crate) fn time_range(&self) -> Result<(i64, i64), ApiError> {
        let to = self.time("to")?.unwrap_or_else(now_ns);
        let from = self
            .time("from")?
            .unwrap_or_else(|| to.saturating_sub(3_600 * NANOS_PER_SECOND));
        if from >= to {
            return Err(bad("from", "must be before `to`"));
        }
        Ok((from, to))
    }
}

pub(crate) use sextant_model::time::NANOS_PER_SECOND;

/// How a series answer writes its points' times: RFC 3339 strings, as every other time in the
/// API, or (`time_format=unix`, for clients that draw charts) whole Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    Rfc3339,
    UnixSeconds,
}

impl TimeFormat {
    /// The `time_format` parameter: `rfc3339` (the default) or `unix`.
    pub(crate) fn from_params(params: &Params) -> Result<TimeFormat, ApiError> {
        match params.get("time_format") {
            None | Some("rfc3339") => Ok(TimeFormat::Rfc3339),
            Some("unix") => Ok(TimeFormat::UnixSeconds),
            Some(_) => Err(bad("time_format", "must be `rfc3339` or `unix`")),
        }
    }

    /// `seconds` since the epoch as a JSON value.
    pub(crate) fn value(self, seconds: i64) -> serde_json::Value {
        match self {
            TimeFormat::Rfc3339 => {
                serde_json::Value::String(format_time(seconds.saturating_mul(NANOS_PER_SECOND)))
            }
            TimeFormat::UnixSeconds => serde_json::Value::from(seconds),
        }
    }

    /// `seconds` since the epoch written as JSON onto `out`.
    pub(crate) fn write(self, out: &mut String, seconds: i64) {
        use std::fmt::Write;
        let _ = match self {
            TimeFormat::Rfc3339 => write!(
                out,
                "\"{}\"",
                format_time(seconds.saturating_mul(NANOS_PER_SECOND))
            ),
            TimeFormat::UnixSeconds => write!(out, "{seconds}"),
        };
    }
}

/// `unix_nanos` as RFC 3339 in UTC with millisecond precision (`2026-11-23T15:00:00.000Z`).
pub(crate) use sextant_model::time::format_rfc3339 as format_time;

/// A 400 naming the parameter.
pub(crate) fn bad(name: &str, problem: &str) -> ApiError {
    ApiError::BadRequest(format!("parameter `{name}` {problem}"))
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A SQL string literal: single quotes doubled. DataFusion's default (generic) dialect gives a
/// backslash no meaning inside quotes, so nothing else needs escaping.
pub(crate) fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A SQL timestamp literal for nanoseconds since the epoch; folded to a constant before scans
/// are planned, so it prunes segment files by time.
pub(crate) fn sql_time(unix_nanos: i64) -> String {
    format!("to_timestamp_nanos({unix_nanos})")
}

/// Runs `sql` over the principal's tenant's `table`, the only table the query can see.
pub(crate) async fn run_query(
    state: &AppState,
    principal: &Principal,
    table: Table,
    sql: &str,
) -> Result<QueryOutput, ApiError> {
    run_query_over(state, principal, &[table], sql).await
}

/// Runs `sql` over the principal's tenant's `tables`, the only tables the query can see.
pub(crate) async fn run_query_over(
    state: &AppState,
    principal: &Principal,
    tables: &[Table],
    sql: &str,
) -> Result<QueryOutput, ApiError> {
    let services = state.services()?;
    let snapshots = tables
        .iter()
        .map(|&table| services.tables.snapshot(&principal.tenant, table))
        .collect();
    Ok(services
        .query
        .sql_for(principal.tenant.as_str(), snapshots, sql)
        .await?)
}

/// `30s`, `5m`, `1h`, `1d` (or bare seconds) as seconds, from 1 s to a year.
pub(crate) fn parse_step(text: &str) -> Option<i64> {
    let (number, unit) = match text.char_indices().last()? {
        (i, 's') => (&text[..i], 1),
        (i, 'm') => (&text[..i], 60),
        (i, 'h') => (&text[..i], 3_600),
        (i, 'd') => (&text[..i], 86_400),
        _ => (text, 1),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number
        .parse::<i64>()
        .ok()?
        .checked_mul(unit)
        .filter(|s| (1..=365 * 86_400).contains(s))
}

/// The rows of `output` as JSON objects.
pub(crate) fn json_rows(output: &QueryOutput) -> Vec<serde_json::Map<String, serde_json::Value>> {
    match output.to_json_rows() {
        serde_json::Value::Array(rows) => rows
            .into_iter()
            .filter_map(|row| match row {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A time parameter as nanoseconds since the epoch, `None` if it is neither form.
pub(crate) fn parse_time(value: &str) -> Option<i64> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = value.parse().ok()?;
        return if n < 100_000_000_000 {
            n.checked_mul(NANOS_PER_SECOND)
        } else if n < 100_000_000_000_000 {
            n.checked_mul(1_000_000)
        } else {
            Some(n)
        };
    }
    time::parse_rfc3339(value)
}

/// Whether `id` is `len` hex digits.
pub(crate) fn is_hex(id: &str, len: usize) -> bool {
    id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<i64>) {
        assert_eq!(parse_time(input), expected, "{input}");
    }

    #[test]
    fn times_in_every_accepted_form() {
        let ns = 1_700_000_000 * NANOS_PER_SECOND;
        check("1700000000", Some(ns));
        check("1700000000000", Some(ns));
        check("1700000000000000000", Some(ns));
        // RFC 3339 is `sextant_model::time::parse_rfc3339`, tested there.
        check("2023-11-14T23:13:20+01:00", Some(ns));
        check("2023-11-14T22:13:20.5Z", Some(ns + 500_000_000));
    }

    #[test]
    fn malformed_times_are_refused() {
        for input in [
            "",
            "-5",
            "1.5",
            "now",
            "2023-11-14",
            "2023-02-29T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
        ] {
            check(input, None);
        }
    }

    #[test]
    fn times_format_as_rfc3339_and_parse_back() {
        for ns in [
            0,
            1_700_000_000_123_000_000,
            1_709_164_800 * NANOS_PER_SECOND,
            4_102_444_799 * NANOS_PER_SECOND,
        ] {
            let text = format_time(ns);
            assert_eq!(parse_time(&text), Some(ns), "{text}");
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_time(1_709_164_800 * NANOS_PER_SECOND),
            "2024-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn string_literals_double_single_quotes() {
        assert_eq!(sql_string("it's"), "'it''s'");
        assert_eq!(sql_string("a\\'; DROP"), "'a\\''; DROP'");
    }
}
