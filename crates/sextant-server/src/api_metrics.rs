//! `GET /api/v1/metrics/query_range`: one metric of the caller's tenant as time series,
//! aggregated into steps.
//!
//! Parameters (times as in [`crate::read_params`]):
//! - `name` (required): the metric name.
//! - `match`: comma-separated `label=value` pairs, all of which must hold; `service` compares
//!   with the service, any other label with the data point attribute of that key. Values cannot
//!   hold a comma. At most 32 pairs.
//! - `from`, `to`: the range, `from` inclusive, `to` exclusive; by default the last hour.
//! - `step`: the bucket width, a whole number of seconds written `30s`, `5m`, `1h` or `1d`;
//!   60 s by default. At most 11 000 steps per request.
//! - `agg`: what each bucket holds, per series (`auto` by default):
//!   - `auto`: by the series' kind: a gauge and an up-down sum as `avg`, a monotonic sum (a
//!     counter, cumulative or delta) as `rate`, a histogram (explicit or exponential) and a
//!     summary as `mean`; each series in the answer says which (`"agg"`);
//!   - `sum`, `avg`, `min`, `max`, `count`: of the points' `value` (for histograms and
//!     summaries, `value` is the sum of observations);
//!   - `mean`: the mean observation of histograms and summaries: the step's increase of their
//!     sum over the increase of their count, each cumulative point measured from the series'
//!     previous one (its first point, and a point after a reset, from the series' start);
//!     delta points add their sums and counts;
//!   - `rate`: per-second increase of a counter. For cumulative points, the increase from the
//!     bucket's first point to its last (a drop is taken as a counter reset and the new value
//!     counted as increase); delta points add their values. Divided by the step in seconds, so
//!     a bucket with one cumulative point has rate 0;
//!   - `p50`, `p90`, `p95`, `p99`: a quantile of histogram points, interpolated linearly inside
//!     the bucket that holds it (the first bucket starts at 0 when its bound is positive, and
//!     the `+Inf` bucket answers with the largest bound). Delta points in a step are added
//!     together; for cumulative points the step's last point is used (the distribution since
//!     the series started). Points of other kinds are skipped.
//!
//! - `band`: `true` adds each series' expected band (see [`SeriesBuilder::finish`]): the live
//!   detectors' model run over the answer's points, so the band at a point is what was expected
//!   from the points before it.
//! - `time_format`: `rfc3339` (the default) writes each point's time as an RFC 3339 string,
//!   as every time in the API; `unix` as whole Unix seconds, for clients that draw charts.
//!
//! A series is one distinct (service, attributes); its labels are the attributes and `service`
//! (which replaces an attribute of that name). Buckets start at multiples of `step` since the
//! epoch and are reported by their start; a bucket without points has no entry.
//! The points stream from the query into the series as they are read (see
//! [`crate::range_series`]), so the answer costs memory by series and steps, not by points; a
//! range of more than 50,000,000 points is refused.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use sextant_model::Table;

use crate::range_series::{Aggregation, SeriesBuilder};
use crate::read_params::{
    NANOS_PER_SECOND, Params, TimeFormat, bad, parse_step, sql_string, sql_time,
};
use crate::{ApiError, AppState};

const DEFAULT_STEP_SECONDS: i64 = 60;
const MAX_STEPS: i64 = 11_000;
/// Data points one range query may read.
const MAX_POINTS: u64 = 50_000_000;

pub async fn query_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let answer = run(&state, &headers, query).await?;
    Ok(([(CONTENT_TYPE, "application/json")], answer))
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<String, ApiError> {
    let principal = crate::api_sql::query_principal(state, headers)?;
    let params = Params::new(
        query,
        &[
            "name",
            "match",
            "from",
            "to",
            "step",
            "agg",
            "band",
            "time_format",
        ],
    )?;
    let times = TimeFormat::from_params(&params)?;
    let request = RangeQuery::from_params(&params)?;
    let band = match params.get("band") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("band", "must be `true` or `false`")),
    };
    let builder = request.run(state, &principal).await?;
    let config = band.then(|| state.services().map(|s| s.events.detector_config()));
    Ok(builder.finish(config.transpose()?.as_ref(), times))
}

/// A checked request.
#[derive(Debug, PartialEq)]
pub(crate) struct RangeQuery {
    pub name: String,
    pub matchers: Vec<(String, String)>,
    pub from: i64,
    pub to: i64,
    pub step_seconds: i64,
    pub agg: Aggregation,
}

/// Most `label=value` pairs in `match`.
pub(crate) const MAX_MATCHERS: usize = 32;

pub(crate) fn parse_matchers(text: &str) -> Option<Vec<(String, String)>> {
    text.split(',')
        .map(|pair| {
            let (label, value) = pair.split_once('=')?;
            let label = label.trim();
            (!label.is_empty()).then(|| (label.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

impl RangeQuery {
    /// Streams the query's rows into its series.
    pub async fn run(
        &self,
        state: &AppState,
        principal: &crate::Principal,
    ) -> Result<SeriesBuilder, ApiError> {
        let services = state.services()?;
        let snapshot = services.tables.snapshot(&principal.tenant, Table::Metrics);
        let builder =
            SeriesBuilder::new(self.agg, self.from, self.to, self.step_seconds, MAX_POINTS);
        Ok(services
            .query
            .fold_for(
                principal.tenant.as_str(),
                vec![snapshot],
                &self.sql(),
                builder,
                |builder, batch| builder.add(batch),
            )
            .await?)
    }

    /// The `name` (required) and `match` parameters, as `query_range` and `forecast` take them.
    pub fn series_params(params: &Params) -> Result<(String, Vec<(String, String)>), ApiError> {
        let name = params
            .get("name")
            .ok_or_else(|| bad("name", "is required"))?
            .to_owned();
        let matchers = match params.get("match") {
            None => Vec::new(),
            Some(text) => parse_matchers(text)
                .ok_or_else(|| bad("match", "must be `label=value` pairs separated by commas"))?,
        };
        if matchers.len() > MAX_MATCHERS {
            return Err(bad(
                "match",
                &format!(
                    "has {} pairs; at most {MAX_MATCHERS} are accepted",
                    matchers.len()
                ),
            ));
        }
        Ok((name, matchers))
    }

    pub fn from_params(params: &Params) -> Result<RangeQuery, ApiError> {
        let (name, matchers) = RangeQuery::series_params(params)?;
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
            None => Aggregation::Auto,
            Some(text) => Aggregation::parse(text).ok_or_else(|| {
                bad(
                    "agg",
                    "must be one of auto, sum, avg, min, max, count, rate, mean, p50, p90, p95, p99",
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
        let histogram_columns = match self.agg {
            Aggregation::Quantile(_) => ", bucket_bounds, bucket_counts",
            Aggregation::Mean | Aggregation::Auto => ", count, is_monotonic",
            _ => "",
        };
        let order = if self.agg.needs_time_order() {
            " ORDER BY time"
        } else {
            ""
        };
        format!(
            "SELECT CAST(time AS BIGINT) AS time_ns, service, attributes, kind, temporality, \
             value{histogram_columns} FROM metrics WHERE {}{order}",
            conditions.join(" AND ")
        )
    }
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
            &["name", "match", "from", "to", "step", "agg", "band"],
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
             value, count, is_monotonic FROM metrics WHERE name = 'http.requests' AND \
             time >= to_timestamp_nanos(1700000000000000000) AND \
             time < to_timestamp_nanos(1700003600000000000) AND service = 'api' AND \
             attributes['route'] = '/a''b' ORDER BY time",
        );
        check(
            &[RANGE[0], RANGE[1], ("name", "load"), ("agg", "avg")],
            "SELECT CAST(time AS BIGINT) AS time_ns, service, attributes, kind, temporality, \
             value FROM metrics WHERE name = 'load' AND \
             time >= to_timestamp_nanos(1700000000000000000) AND \
             time < to_timestamp_nanos(1700003600000000000)",
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
        let many = vec!["k=v"; 33].join(",");
        for (pair, name) in [
            (("match", "service"), "`match`"),
            (("match", "=x"), "`match`"),
            (("step", "0s"), "`step`"),
            (("step", "1.5m"), "`step`"),
            (("step", "5w"), "`step`"),
            (("agg", "median"), "`agg`"),
            (("to", "1699999999"), "`from`"),
            (("match", many.as_str()), "at most 32"),
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
}
