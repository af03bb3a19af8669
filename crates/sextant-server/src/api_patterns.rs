//! `GET /api/v1/patterns` and `GET /api/v1/patterns/{id}/series`: the caller's tenant's log
//! templates with their counts in a time range, and one template's count per step.
//!
//! `/api/v1/patterns` parameters (times as in [`crate::read_params`]):
//! - `from`, `to`: the range (default: the last hour);
//! - `service`: only lines of this service;
//! - `q`: words that must all be in the template text (whole words, ignoring ASCII case);
//! - `limit`: templates returned, most frequent first (100 by default, at most 1,000).
//!
//! Each pattern has its id, template text, count of lines in the range, first and last line
//! time in the range, an example line (the miner's, from any time), and its severity mix
//! (lines per `severity_text`). Lines stored under an id that was later merged into another
//! template count for the template they belong to now.
//!
//! `/api/v1/patterns/{id}/series` takes `from`, `to`, `step` and `time_format` (as
//! `query_range`: `30s`, `5m`, ...; 60 s by default; times RFC 3339 unless `unix`) and answers
//! the template's lines per step, zeros included.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use sextant_model::Table;

use crate::read_params::{
    NANOS_PER_SECOND, Params, TimeFormat, bad, json_rows, parse_step, run_query_over, sql_string,
    sql_time,
};
use crate::{ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
const DEFAULT_STEP_SECONDS: i64 = 60;
const MAX_STEPS: i64 = 11_000;
const MAX_WORDS: usize = 16;

/// The `templates` table with one row per id a log row can carry (`id`), naming the template
/// it counts for (`template_id`): logs join it on `l.template_id = t.id`.
pub(crate) const TEMPLATE_OF_ID: &str =
    "(SELECT unnest(ids) AS id, template_id, template, example FROM templates)";

pub async fn patterns(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    list(&state, &headers, query).await.map(axum::Json)
}

pub async fn series(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    one_series(&state, &headers, &id, query)
        .await
        .map(axum::Json)
}

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Value, ApiError> {
    let principal = crate::api_sql::query_principal(state, headers)?;
    let params = Params::new(query, &["from", "to", "service", "q", "limit"])?;
    let (from, to) = params.time_range()?;
    let limit = params.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let mut conditions = vec![
        format!("l.time >= {}", sql_time(from)),
        format!("l.time < {}", sql_time(to)),
    ];
    if let Some(service) = params.get("service") {
        conditions.push(format!("l.service = {}", sql_string(service)));
    }
    if let Some(q) = params.get("q") {
        let words: Vec<&str> = q.split_whitespace().collect();
        if words.len() > MAX_WORDS {
            return Err(bad("q", &format!("has more than {MAX_WORDS} words")));
        }
        for word in words {
            conditions.push(format!("word_match(t.template, {})", sql_string(word)));
        }
    }
    let sql = format!(
        "SELECT t.template_id AS id, t.template, t.example, l.severity_text AS severity, \
         count(*) AS n, \
         min(min(l.time)) OVER (PARTITION BY t.template_id) AS first_seen, \
         max(max(l.time)) OVER (PARTITION BY t.template_id) AS last_seen \
         FROM logs l JOIN {TEMPLATE_OF_ID} t ON l.template_id = t.id WHERE {} \
         GROUP BY t.template_id, t.template, t.example, l.severity_text",
        conditions.join(" AND ")
    );
    let output = run_query_over(state, &principal, &[Table::Logs, Table::Templates], &sql).await?;
    if output.truncated {
        return Err(ApiError::BadRequest(
            "too many templates and severities in the range; narrow it".to_owned(),
        ));
    }
    Ok(json!({ "patterns": fold_patterns(json_rows(&output), limit) }))
}

/// One entry per template from rows of (id, template, example, severity, n, first, last),
/// one row per template and severity (first and last are the template's, on every row), most
/// frequent first (then by id), at most `limit`.
fn fold_patterns(rows: Vec<Map<String, Value>>, limit: usize) -> Vec<Value> {
    struct Pattern {
        template: Value,
        example: Value,
        count: u64,
        first_seen: Value,
        last_seen: Value,
        severity: BTreeMap<String, u64>,
    }
    let mut patterns: BTreeMap<u64, Pattern> = BTreeMap::new();
    for row in rows {
        let Some(id) = row.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let n = row.get("n").and_then(Value::as_u64).unwrap_or(0);
        let field = |name: &str| row.get(name).cloned().unwrap_or(Value::Null);
        let pattern = patterns.entry(id).or_insert_with(|| Pattern {
            template: field("template"),
            example: field("example"),
            count: 0,
            first_seen: field("first_seen"),
            last_seen: field("last_seen"),
            severity: BTreeMap::new(),
        });
        pattern.count += n;
        let severity = row
            .get("severity")
            .and_then(Value::as_str)
            .unwrap_or_default();
        *pattern.severity.entry(severity.to_owned()).or_default() += n;
    }
    let mut patterns: Vec<(u64, Pattern)> = patterns.into_iter().collect();
    patterns.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    patterns
        .into_iter()
        .take(limit)
        .map(|(id, p)| {
            json!({
                "id": id,
                "template": p.template,
                "count": p.count,
                "first_seen": p.first_seen,
                "last_seen": p.last_seen,
                "example": p.example,
                "severity": p.severity,
            })
        })
        .collect()
}

async fn one_series(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Value, ApiError> {
    let principal = crate::api_sql::query_principal(state, headers)?;
    let id: u64 = id
        .parse()
        .map_err(|_| bad("id", "must be a template id (a number)"))?;
    let params = Params::new(query, &["from", "to", "step", "time_format"])?;
    let times = TimeFormat::from_params(&params)?;
    let (from, to) = params.time_range()?;
    let step_seconds = match params.get("step") {
        None => DEFAULT_STEP_SECONDS,
        Some(text) => parse_step(text).ok_or_else(|| {
            bad(
                "step",
                "must be a whole number of seconds like `30s`, `5m`, `1h`",
            )
        })?,
    };
    let step_ns = step_seconds * NANOS_PER_SECOND;
    let first_bucket = from.div_euclid(step_ns) * step_ns;
    let last_bucket = (to - 1).div_euclid(step_ns) * step_ns;
    let steps = (last_bucket - first_bucket) / step_ns + 1;
    if steps > MAX_STEPS {
        return Err(bad(
            "step",
            &format!("gives more than {MAX_STEPS} steps over the range"),
        ));
    }
    let template = run_query_over(
        state,
        &principal,
        &[Table::Templates],
        &format!("SELECT template_id, template FROM templates WHERE array_has(ids, CAST({id} AS BIGINT UNSIGNED))"),
    )
    .await?;
    let template = json_rows(&template);
    let Some(found) = template.first() else {
        return Err(ApiError::NotFound(format!("no template {id}")));
    };
    let resolved = found
        .get("template_id")
        .and_then(Value::as_u64)
        .unwrap_or(id);
    let sql = format!(
        "SELECT CAST(date_bin(INTERVAL '{step_seconds} seconds', l.time, \
         TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS bucket_ns, count(*) AS n \
         FROM logs l JOIN {TEMPLATE_OF_ID} t ON l.template_id = t.id \
         WHERE t.template_id = {resolved} AND l.time >= {} AND l.time < {} GROUP BY 1",
        sql_time(from),
        sql_time(to)
    );
    let output = run_query_over(state, &principal, &[Table::Logs, Table::Templates], &sql).await?;
    let counts: HashMap<i64, u64> = json_rows(&output)
        .iter()
        .filter_map(|row| Some((row.get("bucket_ns")?.as_i64()?, row.get("n")?.as_u64()?)))
        .collect();
    let points: Vec<Value> = (0..steps)
        .map(|step| {
            let bucket = first_bucket + step * step_ns;
            json!([
                times.value(bucket / NANOS_PER_SECOND),
                counts.get(&bucket).copied().unwrap_or(0)
            ])
        })
        .collect();
    Ok(json!({
        "id": resolved,
        "template": found.get("template").cloned().unwrap_or(Value::Null),
        "step_seconds": step_seconds,
        "points": points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, severity: &str, n: u64, first: &str, last: &str) -> Map<String, Value> {
        match json!({"id": id, "template": format!("t{id}"), "example": "e", "severity": severity,
                     "n": n, "first_seen": first, "last_seen": last})
        {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn severities_fold_into_one_pattern_ordered_by_count() {
        let rows = vec![
            row(1, "INFO", 5, "2026-01-01T00:00:01Z", "2026-01-01T00:00:09Z"),
            row(
                2,
                "ERROR",
                3,
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:02Z",
            ),
            row(
                1,
                "ERROR",
                1,
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:09Z",
            ),
            row(3, "", 6, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ];
        let folded = fold_patterns(rows, 2);
        assert_eq!(
            Value::Array(folded),
            json!([
                {"id": 1, "template": "t1", "example": "e", "count": 6,
                 "first_seen": "2026-01-01T00:00:01Z", "last_seen": "2026-01-01T00:00:09Z",
                 "severity": {"ERROR": 1, "INFO": 5}},
                {"id": 3, "template": "t3", "example": "e", "count": 6,
                 "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
                 "severity": {"": 6}},
            ])
        );
    }
}
