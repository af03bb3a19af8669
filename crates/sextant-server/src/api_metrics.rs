//! `GET /api/v1/metrics/query_range`: one metric of the caller's tenant as time series,
//! aggregated into steps.
//!
//! Parameters (times as in [`crate::read_params`]):
//! - `name` (required): the metric name.
//! - `match`: comma-separated `label=value` pairs, all of which must hold; `service` compares
//!   with the service, any other label with the data point attribute of that key. Values cannot
//!   hold a comma.
//! - `from`, `to`: the range, `from` inclusive, `to` exclusive; by default the last hour.
//! - `step`: the bucket width, a whole number of seconds written `30s`, `5m`, `1h` or `1d`;
//!   60 s by default. At most 11 000 steps per request.
//! - `agg`: what each bucket holds, per series (`avg` by default):
//!   - `sum`, `avg`, `min`, `max`, `count`: of the points' `value` (for histograms and
//!     summaries, `value` is the sum of observations);
//!   - `rate`: per-second increase of a counter. For cumulative points, the increase from the
//!     bucket's first point to its last (a drop is taken as a counter reset and the new value
//!     counted as increase); for delta points, the sum of the values. Divided by the step in
//!     seconds, so a bucket with one cumulative point has rate 0;
//!   - `p50`, `p90`, `p95`, `p99`: a quantile of histogram points, interpolated linearly inside
//!     the bucket that holds it (the first bucket starts at 0 when its bound is positive, and
//!     the `+Inf` bucket answers with the largest bound). Delta points in a step are added
//!     together; for cumulative points the step's last point is used (the distribution since
//!     the series started). Points of other kinds are skipped.
//!
//! A series is one distinct (service, attributes); its labels are the attributes and `service`
//! (which replaces an attribute of that name). Buckets start at multiples of `step` since the epoch and are reported by their
//! start in Unix seconds; a bucket without points has no entry. The points are read as rows and
//! aggregated here, so a range whose points exceed the query row limit is refused.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sextant_model::Table;

use crate::read_params::{
    NANOS_PER_SECOND, Params, bad, json_rows, run_query, sql_string, sql_time,
};
use crate::{ApiError, AppState};

const DEFAULT_STEP_SECONDS: i64 = 60;
const MAX_STEPS: i64 = 11_000;
/// OTLP `AggregationTemporality` of delta points.
const TEMPORALITY_DELTA: i64 = 1;

pub async fn query_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    match run(&state, &headers, query).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Value, ApiError> {
    let principal = crate::api_sql::query_principal(state, headers)?;
    let params = Params::new(query, &["name", "match", "from", "to", "step", "agg"])?;
    let request = RangeQuery::from_params(&params)?;
    let output = run_query(state, &principal, Table::Metrics, &request.sql()).await?;
    if output.truncated {
        return Err(ApiError::BadRequest(
            "too many data points in the range; narrow `from`/`to` or `match`".to_owned(),
        ));
    }
    Ok(request.series(json_rows(&output)))
}

/// One series' points by the start of their step, in nanoseconds.
type Buckets = BTreeMap<i64, Vec<Map<String, Value>>>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Rate,
    Quantile(f64),
}

impl Aggregation {
    fn parse(text: &str) -> Option<Aggregation> {
        Some(match text {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "count" => Aggregation::Count,
            "rate" => Aggregation::Rate,
            "p50" => Aggregation::Quantile(0.5),
            "p90" => Aggregation::Quantile(0.9),
            "p95" => Aggregation::Quantile(0.95),
            "p99" => Aggregation::Quantile(0.99),
            _ => return None,
        })
    }
}

/// A checked request.
#[derive(Debug, PartialEq)]
struct RangeQuery {
    name: String,
    matchers: Vec<(String, String)>,
    from: i64,
    to: i64,
    step_seconds: i64,
    agg: Aggregation,
}

/// `30s`, `5m`, `1h`, `1d` (or bare seconds) as seconds.
fn parse_step(text: &str) -> Option<i64> {
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

fn parse_matchers(text: &str) -> Option<Vec<(String, String)>> {
    text.split(',')
        .map(|pair| {
            let (label, value) = pair.split_once('=')?;
            let label = label.trim();
            (!label.is_empty()).then(|| (label.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

impl RangeQuery {
    fn from_params(params: &Params) -> Result<RangeQuery, ApiError> {
        let name = params
            .get("name")
            .ok_or_else(|| bad("name", "is required"))?
            .to_owned();
        let matchers = match params.get("match") {
            None => Vec::new(),
            Some(text) => parse_matchers(text)
                .ok_or_else(|| bad("match", "must be `label=value` pairs separated by commas"))?,
        };
        let step_seconds = match params.get("step") {
            None => DEFAULT_STEP_SECONDS,
            Some(text) => parse_step(text).ok_or_else(|| {
                bad(
                    "step",
                    "must be a whole number of seconds like `30s`, `5m`, `1h`",
                )
            })?,
        };
        let agg = match params.get("agg") {
            None => Aggregation::Avg,
            Some(text) => Aggregation::parse(text).ok_or_else(|| {
                bad(
                    "agg",
                    "must be one of sum, avg, min, max, count, rate, p50, p90, p95, p99",
                )
            })?,
        };
        let (from, to) = params.time_range()?;
        let step_ns = step_seconds * NANOS_PER_SECOND;
        if (to - from) / step_ns >= MAX_STEPS {
            return Err(bad(
                "step",
                &format!("gives more than {MAX_STEPS} steps over the range"),
            ));
        }
        Ok(RangeQuery {
            name,
            matchers,
            from,
            to,
            step_seconds,
            agg,
        })
    }

    fn sql(&self) -> String {
        let mut conditions = vec![
            format!("name = {}", sql_string(&self.name)),
            format!("time >= {}", sql_time(self.from)),
            format!("time < {}", sql_time(self.to)),
        ];
        for (label, value) in &self.matchers {
            conditions.push(if label == "service" {
                format!("service = {}", sql_string(value))
            } else {
                format!("attributes[{}] = {}", sql_string(label), sql_string(value))
            });
        }
        let histogram_columns = if matches!(self.agg, Aggregation::Quantile(_)) {
            ", bucket_bounds, bucket_counts"
        } else {
            ""
        };
        format!(
            "SELECT CAST(time AS BIGINT) AS time_ns, service, attributes, kind, temporality, \
             value{histogram_columns} FROM metrics WHERE {} ORDER BY time",
            conditions.join(" AND ")
        )
    }

    /// The answer from the rows of [`RangeQuery::sql`] (ordered by time).
    fn series(&self, rows: Vec<Map<String, Value>>) -> Value {
        let step_ns = self.step_seconds * NANOS_PER_SECOND;
        // Series key (labels as canonical JSON) -> labels, bucket start -> points.
        let mut series: BTreeMap<String, (Value, Buckets)> = BTreeMap::new();
        for row in rows {
            let Some(time_ns) = row.get("time_ns").and_then(Value::as_i64) else {
                continue;
            };
            let mut labels: BTreeMap<String, Value> = match row.get("attributes") {
                Some(Value::Object(attributes)) => attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                _ => BTreeMap::new(),
            };
            labels.insert(
                "service".to_owned(),
                row.get("service").cloned().unwrap_or(Value::Null),
            );
            let key = serde_json::to_string(&labels).unwrap_or_default();
            let bucket = time_ns.div_euclid(step_ns) * step_ns;
            series
                .entry(key)
                .or_insert_with(|| (json!(labels), BTreeMap::new()))
                .1
                .entry(bucket)
                .or_default()
                .push(row);
        }
        let series: Vec<Value> = series
            .into_values()
            .filter_map(|(labels, buckets)| {
                let points: Vec<Value> = buckets
                    .into_iter()
                    .filter_map(|(bucket, rows)| {
                        let value = self.aggregate(&rows)?;
                        Some(json!([bucket / NANOS_PER_SECOND, value]))
                    })
                    .collect();
                (!points.is_empty()).then(|| json!({"labels": labels, "points": points}))
            })
            .collect();
        json!({ "series": series })
    }

    /// One bucket's value from its points (in time order), `None` if nothing to report.
    fn aggregate(&self, rows: &[Map<String, Value>]) -> Option<f64> {
        let values = || rows.iter().filter_map(|row| row.get("value")?.as_f64());
        let value = match self.agg {
            Aggregation::Sum => values().sum(),
            Aggregation::Avg => {
                let (sum, n) = values().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                if n == 0 {
                    return None;
                }
                sum / n as f64
            }
            Aggregation::Min => values().reduce(f64::min)?,
            Aggregation::Max => values().reduce(f64::max)?,
            Aggregation::Count => rows.len() as f64,
            Aggregation::Rate => {
                let delta = rows.iter().any(|row| {
                    row.get("temporality").and_then(Value::as_i64) == Some(TEMPORALITY_DELTA)
                });
                let increase = if delta {
                    values().sum()
                } else {
                    counter_increase(values())
                };
                increase / self.step_seconds as f64
            }
            Aggregation::Quantile(q) => {
                let histograms = rows.iter().filter(|row| {
                    matches!(
                        row.get("kind").and_then(Value::as_str),
                        Some("histogram" | "exponential_histogram")
                    )
                });
                let mut merged: Option<(Vec<f64>, Vec<f64>)> = None;
                for row in histograms {
                    let (bounds, counts) =
                        (numbers(row, "bucket_bounds"), numbers(row, "bucket_counts"));
                    if counts.len() != bounds.len() + 1 {
                        continue;
                    }
                    let delta =
                        row.get("temporality").and_then(Value::as_i64) == Some(TEMPORALITY_DELTA);
                    merged = match merged {
                        Some((b, mut c)) if delta && b == bounds => {
                            c.iter_mut().zip(&counts).for_each(|(c, n)| *c += n);
                            Some((b, c))
                        }
                        _ => Some((bounds, counts)),
                    };
                }
                let (bounds, counts) = merged?;
                histogram_quantile(q, &bounds, &counts)?
            }
        };
        value.is_finite().then_some(value)
    }
}

fn numbers(row: &Map<String, Value>, key: &str) -> Vec<f64> {
    row.get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The increase of a cumulative counter over `values`, a drop counted as a reset to zero.
fn counter_increase(values: impl Iterator<Item = f64>) -> f64 {
    let mut increase = 0.0;
    let mut previous: Option<f64> = None;
    for value in values {
        if let Some(previous) = previous {
            increase += if value >= previous {
                value - previous
            } else {
                value
            };
        }
        previous = Some(value);
    }
    increase
}

/// The `q` quantile of a histogram with upper `bounds` and `counts` (one more count than
/// bounds, the last for `+Inf`), interpolated linearly inside the bucket that holds it.
fn histogram_quantile(q: f64, bounds: &[f64], counts: &[f64]) -> Option<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, &count) in counts.iter().enumerate() {
        if count > 0.0 && below + count >= rank {
            let Some(&upper) = bounds.get(i) else {
                // The `+Inf` bucket: the largest finite bound is all that is known.
                return bounds.last().copied();
            };
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => return Some(upper),
                _ => bounds[i - 1],
            };
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Params::new(
            Ok(Query(map)),
            &["name", "match", "from", "to", "step", "agg"],
        )
        .unwrap()
    }

    /// Builds the request from `pairs` and checks its SQL, or the error it gives.
    fn check(pairs: &[(&str, &str)], expected: &str) {
        let actual = match RangeQuery::from_params(&params(pairs)) {
            Ok(request) => request.sql(),
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(actual, expected, "{pairs:?}");
    }

    const RANGE: [(&str, &str); 2] = [("from", "1700000000"), ("to", "1700003600")];

    #[test]
    fn sql_filters_by_name_range_and_matchers() {
        check(
            &[
                RANGE[0],
                RANGE[1],
                ("name", "http.requests"),
                ("match", "service=api, route=/a'b"),
            ],
            "SELECT CAST(time AS BIGINT) AS time_ns, service, attributes, kind, temporality, \
             value FROM metrics WHERE name = 'http.requests' AND \
             time >= to_timestamp_nanos(1700000000000000000) AND \
             time < to_timestamp_nanos(1700003600000000000) AND service = 'api' AND \
             attributes['route'] = '/a''b' ORDER BY time",
        );
        check(
            &[RANGE[0], RANGE[1], ("name", "latency"), ("agg", "p99")],
            "SELECT CAST(time AS BIGINT) AS time_ns, service, attributes, kind, temporality, \
             value, bucket_bounds, bucket_counts FROM metrics WHERE name = 'latency' AND \
             time >= to_timestamp_nanos(1700000000000000000) AND \
             time < to_timestamp_nanos(1700003600000000000) ORDER BY time",
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        check(&RANGE, "error: parameter `name` is required");
        for (pair, name) in [
            (("match", "service"), "`match`"),
            (("match", "=x"), "`match`"),
            (("step", "0s"), "`step`"),
            (("step", "1.5m"), "`step`"),
            (("step", "5w"), "`step`"),
            (("agg", "median"), "`agg`"),
            (("to", "1699999999"), "`from`"),
        ] {
            let err = RangeQuery::from_params(&params(&[RANGE[0], RANGE[1], ("name", "x"), pair]))
                .unwrap_err();
            assert!(err.to_string().contains(name), "{pair:?}: {err}");
        }
    }

    #[test]
    fn steps_in_every_unit() {
        for (text, seconds) in [
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("1h", Some(3600)),
            ("1d", Some(86_400)),
            ("90", Some(90)),
            ("m", None),
            ("", None),
            ("-1s", None),
        ] {
            assert_eq!(parse_step(text), seconds, "{text}");
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let bounds = [1.0, 5.0, 10.0];
        // 10 below 1, 30 in (1, 5], 60 in (5, 10], none above.
        let counts = [10.0, 30.0, 60.0, 0.0];
        assert_eq!(histogram_quantile(0.05, &bounds, &counts), Some(0.5));
        assert_eq!(histogram_quantile(0.25, &bounds, &counts), Some(3.0));
        assert_eq!(histogram_quantile(0.7, &bounds, &counts), Some(7.5));
        assert_eq!(histogram_quantile(1.0, &bounds, &counts), Some(10.0));
        assert_eq!(
            histogram_quantile(0.99, &bounds, &[0.0, 0.0, 1.0, 9.0]),
            Some(10.0)
        );
        assert_eq!(histogram_quantile(0.5, &bounds, &[0.0; 4]), None);
    }

    #[test]
    fn counter_increase_survives_resets() {
        assert_eq!(counter_increase([5.0, 8.0, 10.0].into_iter()), 5.0);
        assert_eq!(counter_increase([5.0, 8.0, 2.0, 4.0].into_iter()), 7.0);
        assert_eq!(counter_increase([5.0].into_iter()), 0.0);
    }

    #[test]
    fn series_group_by_service_and_attributes_in_aligned_buckets() {
        let request = RangeQuery {
            name: "n".to_owned(),
            matchers: Vec::new(),
            from: 0,
            to: 1,
            step_seconds: 60,
            agg: Aggregation::Rate,
        };
        let rows = [
            (60, "a", 1.0),
            (90, "a", 31.0),
            (119, "a", 61.0),
            (120, "a", 70.0),
            (100, "b", 5.0),
        ]
        .iter()
        .map(|(t, service, v)| {
            match json!({"time_ns": t * NANOS_PER_SECOND, "service": service,
                         "attributes": {"k": "v"}, "temporality": 2, "value": v})
            {
                Value::Object(map) => map,
                _ => unreachable!(),
            }
        })
        .collect();
        assert_eq!(
            request.series(rows),
            json!({"series": [
                {"labels": {"k": "v", "service": "a"}, "points": [[60, 1.0], [120, 0.0]]},
                {"labels": {"k": "v", "service": "b"}, "points": [[60, 0.0]]},
            ]})
        );
    }
}
