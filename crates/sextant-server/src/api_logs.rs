//! `GET /api/v1/logs/search`: the caller's tenant's log records that match a search, newest
//! first, a page at a time.
//!
//! Parameters (times as in [`crate::read_params`]):
//! - `q`: terms separated by spaces, all of which must hold:
//!   - `word`: the body contains it as a whole word (`error` does not match `errors`;
//!     `blk_-1608` matches `Receiving blk_-1608 src`), ignoring ASCII case;
//!   - `"a phrase"`: the body contains the phrase, starting and ending at word boundaries,
//!     ignoring ASCII case;
//!   - `field:value` (or `field:"a value"`): `service`, `trace_id` and `span_id` compare with
//!     those columns, `severity` and `level` with `severity_text` ignoring case, `template`
//!     with the log template id (`template:17`), any other field with the attribute of that
//!     key;
//!   - a leading `-` turns any of these into an exclusion.
//! - `from`, `to`: the time range, `from` inclusive, `to` exclusive; by default the last hour.
//! - `service`, `severity`: shorthands for `service:VALUE` and `severity:VALUE`.
//! - `limit`: records per page, 100 by default, at most 1000.
//! - `cursor`: the `next_cursor` of the previous page.
//!
//! Records are ordered by `time` descending, then by observed time, service, severity, body
//! and ids. The cursor names the last record's time and how many records at that exact time
//! were already returned; records that differ only in attributes or resource may come back in
//! either order between pages, and records arriving at that exact time in the meantime shift
//! the page by as many.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use sextant_model::Table;

use crate::read_params::{Params, bad, json_rows, run_query_over, sql_string, sql_time};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Longest accepted `q`, in bytes, and most terms in it.
const MAX_QUERY_BYTES: usize = 4096;
const MAX_TERMS: usize = 64;

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    run(&state, &headers, query).await.map(axum::Json)
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Value, ApiError> {
    // Authenticate before looking at parameters: a stranger learns nothing from a 400.
    let principal = crate::api_sql::query_principal(state, headers)?;
    let params = Params::new(
        query,
        &["q", "from", "to", "service", "severity", "limit", "cursor"],
    )?;
    let search = LogSearch::from_params(&params)?;
    // The templates table (built from the miner) only when a `template:` term needs it.
    let tables: &[Table] = if search.uses_templates() {
        &[Table::Logs, Table::Templates]
    } else {
        &[Table::Logs]
    };
    let output = run_query_over(state, &principal, tables, &search.sql()).await?;
    Ok(search.page(json_rows(&output), output.truncated))
}

/// One term of `q`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    /// Words and phrases: whole words of the body, ignoring ASCII case (SQL `word_match`).
    Text { text: String, negated: bool },
    /// `field:value`.
    Field {
        field: String,
        value: String,
        negated: bool,
    },
}

/// Parses `q` into terms. Fails with what is wrong, without the parameter name.
fn parse_query(q: &str) -> Result<Vec<Term>, String> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(format!("is longer than {MAX_QUERY_BYTES} bytes"));
    }
    let mut terms = Vec::new();
    let mut chars = q.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        // A field name, a word, or nothing before a quote.
        let mut word = String::new();
        let mut value: Option<String> = None;
        let mut field: Option<String> = None;
        loop {
            match chars.peek() {
                None => break,
                Some(c) if c.is_whitespace() => break,
                Some('"') => {
                    chars.next();
                    let mut quoted = String::new();
                    loop {
                        match chars.next() {
                            None => return Err("has an unterminated quote".to_owned()),
                            Some('"') => break,
                            Some(c) => quoted.push(c),
                        }
                    }
                    if !word.is_empty() && field.is_none() {
                        return Err(format!("has a quote inside the word `{word}`"));
                    }
                    value = Some(quoted);
                    break;
                }
                Some(':') if field.is_none() && is_field_name(&word) => {
                    chars.next();
                    field = Some(std::mem::take(&mut word));
                }
                Some(&c) => {
                    chars.next();
                    word.push(c);
                }
            }
        }
        // After a closing quote the term must end.
        if chars.peek().is_some_and(|c| !c.is_whitespace()) {
            return Err("needs a space after a closing quote".to_owned());
        }
        let term = match (field, value) {
            (Some(field), Some(value)) => Term::Field {
                field,
                value,
                negated,
            },
            (Some(field), None) if !word.is_empty() => Term::Field {
                field,
                value: word,
                negated,
            },
            (Some(field), None) => return Err(format!("has no value after `{field}:`")),
            (None, Some(text)) => Term::Text { text, negated },
            (None, None) if !word.is_empty() => Term::Text {
                text: word,
                negated,
            },
            (None, None) => return Err("has a `-` with nothing after it".to_owned()),
        };
        if matches!(&term, Term::Text { text, .. } if text.is_empty()) {
            return Err("has an empty phrase".to_owned());
        }
        if let Term::Field { field, value, .. } = &term
            && field == "template"
            && value.parse::<u64>().is_err()
        {
            return Err(format!("has `template:{value}`; a template id is a number"));
        }
        terms.push(term);
        if terms.len() > MAX_TERMS {
            return Err(format!("has more than {MAX_TERMS} terms"));
        }
    }
    Ok(terms)
}

/// A field is letters, digits, `_`, `.`, `-` and `/`, and does not start with a digit (so a
/// time like `12:30` stays a word).
fn is_field_name(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
}

impl Term {
    /// The SQL condition of the term; true, false or null (null counts as not matching, and
    /// an exclusion of a null is a match).
    fn condition(&self) -> String {
        let (condition, negated) = match self {
            Term::Text { text, negated } => {
                (format!("word_match(body, {})", sql_string(text)), *negated)
            }
            Term::Field {
                field,
                value,
                negated,
            } => {
                let condition = match field.as_str() {
                    "service" => format!("service = {}", sql_string(value)),
                    "severity" | "level" => format!(
                        "lower(severity_text) = {}",
                        sql_string(&value.to_lowercase())
                    ),
                    "trace_id" | "span_id" => {
                        format!("{field} = {}", sql_string(&value.to_lowercase()))
                    }
                    // Checked to be a number when parsed. Ids merged into the same template
                    // since count as that template.
                    "template" => format!(
                        "template_id IN (SELECT unnest(ids) FROM templates \
                         WHERE array_has(ids, CAST({value} AS BIGINT UNSIGNED)))"
                    ),
                    _ => format!("attributes[{}] = {}", sql_string(field), sql_string(value)),
                };
                (condition, *negated)
            }
        };
        if negated {
            format!("NOT coalesce({condition}, false)")
        } else {
            condition
        }
    }
}

/// Where the previous page stopped: the last record's time, and how many records at exactly
/// that time were returned so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    time_ns: i64,
    seen_at_time: u64,
}

impl Cursor {
    /// 32 hex digits: the time and the count, big-endian.
    fn encode(self) -> String {
        format!("{:016x}{:016x}", self.time_ns as u64, self.seen_at_time)
    }

    fn decode(text: &str) -> Option<Cursor> {
        if !crate::read_params::is_hex(text, 32) {
            return None;
        }
        let time_ns = i64::try_from(u64::from_str_radix(&text[..16], 16).ok()?).ok()?;
        let seen_at_time = u64::from_str_radix(&text[16..], 16).ok()?;
        (seen_at_time <= MAX_SEEN_AT_TIME).then_some(Cursor {
            time_ns,
            seen_at_time,
        })
    }
}

/// Records at one exact time that paging steps over; more than this at one nanosecond is not
/// paged through.
const MAX_SEEN_AT_TIME: u64 = 50_000;

/// A checked search request.
#[derive(Debug, PartialEq, Eq)]
struct LogSearch {
    terms: Vec<Term>,
    from: i64,
    to: i64,
    limit: usize,
    cursor: Option<Cursor>,
}

impl LogSearch {
    fn from_params(params: &Params) -> Result<LogSearch, ApiError> {
        let mut terms = match params.get("q") {
            Some(q) => parse_query(q).map_err(|problem| bad("q", &problem))?,
            None => Vec::new(),
        };
        for name in ["service", "severity"] {
            if let Some(value) = params.get(name) {
                terms.push(Term::Field {
                    field: name.to_owned(),
                    value: value.to_owned(),
                    negated: false,
                });
            }
        }
        let (from, to) = params.time_range()?;
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad("limit", &format!("must be an integer 1 to {MAX_LIMIT}")))?,
        };
        let cursor = params
            .get("cursor")
            .map(|text| {
                Cursor::decode(text)
                    .ok_or_else(|| bad("cursor", "is not a cursor this endpoint returned"))
            })
            .transpose()?;
        Ok(LogSearch {
            terms,
            from,
            to,
            limit,
            cursor,
        })
    }

    /// Whether a `template:` term needs the `templates` table.
    fn uses_templates(&self) -> bool {
        self.terms
            .iter()
            .any(|term| matches!(term, Term::Field { field, .. } if field == "template"))
    }

    fn sql(&self) -> String {
        let mut conditions = vec![
            format!("time >= {}", sql_time(self.from)),
            format!("time < {}", sql_time(self.to)),
        ];
        if let Some(cursor) = self.cursor {
            conditions.push(format!("time <= {}", sql_time(cursor.time_ns)));
        }
        conditions.extend(self.terms.iter().map(Term::condition));
        let rows = self.limit as u64 + 1 + self.cursor.map_or(0, |c| c.seen_at_time);
        format!(
            "SELECT time, CAST(time AS BIGINT) AS time_ns, service, severity_text, \
             severity_number, body, trace_id, span_id, attributes FROM logs WHERE {} \
             ORDER BY time DESC, observed_time DESC, service, severity_number, severity_text, \
             body, trace_id, span_id LIMIT {rows}",
            conditions.join(" AND ")
        )
    }

    /// The answer from the rows of [`LogSearch::sql`]; `truncated` when the query's row limit
    /// (set lower than a page, say) cut them, so that more may follow.
    fn page(&self, rows: Vec<serde_json::Map<String, Value>>, truncated: bool) -> Value {
        let time_of =
            |row: &serde_json::Map<String, Value>| row.get("time_ns").and_then(Value::as_i64);
        let mut rows = rows.into_iter().peekable();
        // Step over the records at the cursor's time that earlier pages returned.
        let mut seen_at_time = 0;
        if let Some(cursor) = self.cursor {
            while seen_at_time < cursor.seen_at_time
                && rows
                    .next_if(|row| time_of(row) == Some(cursor.time_ns))
                    .is_some()
            {
                seen_at_time += 1;
            }
        }
        let mut logs: Vec<serde_json::Map<String, Value>> =
            rows.by_ref().take(self.limit).collect();
        let more = rows.peek().is_some() || truncated;
        let next_cursor = match logs.last() {
            Some(last) if more => {
                let time_ns = time_of(last).unwrap_or(0);
                let at_time = logs
                    .iter()
                    .filter(|row| time_of(row) == Some(time_ns))
                    .count() as u64;
                let earlier = match self.cursor {
                    Some(cursor) if cursor.time_ns == time_ns => seen_at_time,
                    _ => 0,
                };
                Value::String(
                    Cursor {
                        time_ns,
                        seen_at_time: earlier + at_time,
                    }
                    .encode(),
                )
            }
            _ => Value::Null,
        };
        for row in &mut logs {
            row.remove("time_ns");
        }
        json!({"logs": logs, "next_cursor": next_cursor})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` as `q` and renders the terms as the SQL conditions they become, one per
    /// line, or the error.
    fn check(input: &str, expected: &str) {
        let actual = match parse_query(input) {
            Ok(terms) => terms
                .iter()
                .map(Term::condition)
                .collect::<Vec<_>>()
                .join("\n"),
            Err(problem) => format!("error: {problem}"),
        };
        assert_eq!(actual, expected, "q = {input:?}");
    }

    #[test]
    fn words_and_phrases_match_the_body_ignoring_case() {
        check("", "");
        check("   ", "");
        check(
            "Timeout  DB",
            "word_match(body, 'Timeout')\nword_match(body, 'DB')",
        );
        check(
            r#""connection Reset" peer"#,
            "word_match(body, 'connection Reset')\nword_match(body, 'peer')",
        );
        check("12:30", "word_match(body, '12:30')");
        check("http://x", "attributes['http'] = '//x'");
    }

    #[test]
    fn fields_become_columns_or_attribute_lookups() {
        check("service:checkout", "service = 'checkout'");
        check("level:ERROR", "lower(severity_text) = 'error'");
        check(
            "template:17",
            "template_id IN (SELECT unnest(ids) FROM templates \
             WHERE array_has(ids, CAST(17 AS BIGINT UNSIGNED)))",
        );
        check("severity:warn", "lower(severity_text) = 'warn'");
        check(
            "trace_id:5B8EFFF798038103D269B633813FC60C",
            "trace_id = '5b8efff798038103d269b633813fc60c'",
        );
        check("span_id:abc", "span_id = 'abc'");
        check("http.method:GET", "attributes['http.method'] = 'GET'");
        check(
            r#"user:"Ada Lovelace""#,
            "attributes['user'] = 'Ada Lovelace'",
        );
    }

    #[test]
    fn a_leading_minus_excludes_and_keeps_rows_where_the_term_is_null() {
        check("-debug", "NOT coalesce(word_match(body, 'debug'), false)");
        check(
            "-region:eu",
            "NOT coalesce(attributes['region'] = 'eu', false)",
        );
        check(
            r#"-"health check""#,
            "NOT coalesce(word_match(body, 'health check'), false)",
        );
        check("a-b", "word_match(body, 'a-b')");
    }

    #[test]
    fn quotes_in_values_and_keys_are_escaped() {
        check("it's", "word_match(body, 'it''s')");
        check(r#""x') OR 1=1 --""#, "word_match(body, 'x'') OR 1=1 --')");
        check("k:v'v", "attributes['k'] = 'v''v'");
        check(r#"o'k:v"#, "word_match(body, 'o''k:v')");
    }

    #[test]
    fn malformed_queries_are_refused() {
        check(r#""open"#, "error: has an unterminated quote");
        check("-", "error: has a `-` with nothing after it");
        check("key:", "error: has no value after `key:`");
        check(
            "template:x1",
            "error: has `template:x1`; a template id is a number",
        );
        check(r#""""#, "error: has an empty phrase");
        check(r#"ab"cd""#, "error: has a quote inside the word `ab`");
        check(r#""ab"cd"#, "error: needs a space after a closing quote");
        check(&"w ".repeat(MAX_TERMS + 1), "error: has more than 64 terms");
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Params::new(
            Ok(Query(map)),
            &["q", "from", "to", "service", "severity", "limit", "cursor"],
        )
        .unwrap()
    }

    #[test]
    fn search_sql_has_the_range_terms_cursor_and_one_extra_row() {
        let cursor = Cursor {
            time_ns: 1_700_000_000_000_000_500,
            seen_at_time: 2,
        };
        let search = LogSearch::from_params(&params(&[
            ("q", "boom -x"),
            ("from", "1700000000"),
            ("to", "1700000060000"),
            ("service", "api"),
            ("limit", "10"),
            ("cursor", &cursor.encode()),
        ]))
        .unwrap();
        assert_eq!(
            search.sql(),
            "SELECT time, CAST(time AS BIGINT) AS time_ns, service, severity_text, \
             severity_number, body, trace_id, span_id, attributes FROM logs WHERE \
             time >= to_timestamp_nanos(1700000000000000000) AND \
             time < to_timestamp_nanos(1700000060000000000) AND \
             time <= to_timestamp_nanos(1700000000000000500) AND \
             word_match(body, 'boom') AND \
             NOT coalesce(word_match(body, 'x'), false) AND service = 'api' \
             ORDER BY time DESC, observed_time DESC, service, severity_number, severity_text, \
             body, trace_id, span_id LIMIT 13"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, name) in [
            (&[("limit", "0")][..], "`limit`"),
            (&[("limit", "1001")], "`limit`"),
            (&[("limit", "ten")], "`limit`"),
            (&[("cursor", "zz")], "`cursor`"),
            (&[("from", "yesterday")], "`from`"),
            (&[("from", "1700000060"), ("to", "1700000000")], "`from`"),
            (&[("q", "\"")], "`q`"),
        ] {
            let err = LogSearch::from_params(&params(pairs)).unwrap_err();
            assert!(err.to_string().contains(name), "{pairs:?}: {err}");
        }
    }

    fn row(time_ns: i64, body: &str) -> serde_json::Map<String, Value> {
        match json!({"time_ns": time_ns, "body": body}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn page_of(cursor: Option<Cursor>, limit: usize, rows: &[(i64, &str)]) -> Value {
        let search = LogSearch {
            terms: Vec::new(),
            from: 0,
            to: 1,
            limit,
            cursor,
        };
        search.page(rows.iter().map(|(t, b)| row(*t, b)).collect(), false)
    }

    #[test]
    fn cursors_count_the_records_at_the_last_time() {
        let first = page_of(None, 2, &[(9, "a"), (5, "b"), (5, "c")]);
        assert_eq!(first["logs"], json!([{"body": "a"}, {"body": "b"}]));
        let cursor = Cursor::decode(first["next_cursor"].as_str().unwrap()).unwrap();
        assert_eq!(
            cursor,
            Cursor {
                time_ns: 5,
                seen_at_time: 1
            }
        );
        // The next query starts at time 5 again: one record there is stepped over.
        let second = page_of(Some(cursor), 1, &[(5, "b"), (5, "c"), (5, "d")]);
        assert_eq!(second["logs"], json!([{"body": "c"}]));
        let cursor = Cursor::decode(second["next_cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor.seen_at_time, 2);
        let last = page_of(Some(cursor), 5, &[(5, "b"), (5, "c"), (5, "d"), (1, "e")]);
        assert_eq!(last["logs"], json!([{"body": "d"}, {"body": "e"}]));
        assert_eq!(last["next_cursor"], Value::Null);
    }
}
