//! `GET /api/v1/forecast`: where a metric's series are heading, with prediction intervals.
//!
//! Parameters (times as in [`crate::read_params`]):
//! - `name` (required), `match`, `step`, `agg`, `time_format`: as `query_range`; the history is aggregated
//!   into steps the same way (by default each series by its kind: a counter as its rate).
//! - `from`, `to`: the history to learn from; by default the 3 days before now.
//! - `horizon` (required): how far ahead, a duration like `30m`, `6h`, `2d`; at most 10,000
//!   steps.
//! - `season`: the season length (a duration like `1d`); by default the forecaster looks for
//!   one in the history.
//!
//! The answer: `{"series": [{"labels": {...}, "method": ..., "season_seconds": ...,
//! "points": [[time, forecast, lower, upper], ...]}]}` with 95% intervals, the first
//! point one step after the last step of the history. Missing steps inside the history are
//! gaps the forecaster fills; leading ones are dropped. At most 1,000 series per request.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use sextant_analytics::forecast::{self, ForecastConfig};

use crate::api_metrics::RangeQuery;
use crate::range_series::Aggregation;
use crate::read_params::{NANOS_PER_SECOND, Params, TimeFormat, bad, now_ns, parse_step};
use crate::{ApiError, AppState};

const DEFAULT_HISTORY_SECONDS: i64 = 3 * 86_400;
const DEFAULT_STEP_SECONDS: i64 = 60;
const MAX_HISTORY_STEPS: i64 = 11_000;
const MAX_HORIZON_STEPS: i64 = 10_000;
const MAX_SERIES: usize = 1000;

pub async fn forecast(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let params = Params::new(
        query,
        &[
            "name",
            "match",
            "from",
            "to",
            "step",
            "agg",
            "horizon",
            "season",
            "time_format",
        ],
    )?;
    let request = ForecastRequest::from_params(&params)?;
    let times = TimeFormat::from_params(&params)?;
    let builder = request.range.run(&state, &principal).await?;
    let series = builder.into_series();
    if series.len() > MAX_SERIES {
        return Err(ApiError::BadRequest(format!(
            "{} series match; at most {MAX_SERIES} can be forecast at once: narrow `match`",
            series.len()
        )));
    }
    let answer = tokio::task::spawn_blocking(move || request.forecast_all(series, times))
        .await
        .map_err(|_| ApiError::Internal)??;
    Ok(axum::Json(answer))
}

/// A checked request.
#[derive(Debug)]
pub(crate) struct ForecastRequest {
    pub range: RangeQuery,
    pub horizon_steps: usize,
    pub season_steps: Option<usize>,
}

fn duration(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|text| {
            parse_step(text).ok_or_else(|| {
                bad(
                    name,
                    "must be a whole number of seconds like `30m`, `6h`, `2d`",
                )
            })
        })
        .transpose()
}

impl ForecastRequest {
    pub fn from_params(params: &Params) -> Result<ForecastRequest, ApiError> {
        let (name, matchers) = RangeQuery::series_params(params)?;
        let step_seconds = duration(params, "step")?.unwrap_or(DEFAULT_STEP_SECONDS);
        let agg = match params.get("agg") {
            // As `query_range`: each series by its kind.
            None => Aggregation::Auto,
            Some(text) => match Aggregation::parse(text) {
                Some(Aggregation::Quantile(_) | Aggregation::Count) | None => {
                    return Err(bad(
                        "agg",
                        "must be one of auto, sum, avg, min, max, rate, mean",
                    ));
                }
                Some(agg) => agg,
            },
        };
        let to = params.time("to")?.unwrap_or_else(now_ns);
        let from = params
            .time("from")?
            .unwrap_or_else(|| to.saturating_sub(DEFAULT_HISTORY_SECONDS * NANOS_PER_SECOND));
        if from >= to {
            return Err(bad("from", "must be before `to`"));
        }
        let step_ns = step_seconds * NANOS_PER_SECOND;
        if (to - from) / step_ns >= MAX_HISTORY_STEPS {
            return Err(bad(
                "step",
                &format!("gives more than {MAX_HISTORY_STEPS} steps of history"),
            ));
        }
        let horizon = duration(params, "horizon")?.ok_or_else(|| bad("horizon", "is required"))?;
        let horizon_steps = (horizon + step_seconds - 1) / step_seconds;
        if horizon_steps > MAX_HORIZON_STEPS {
            return Err(bad(
                "horizon",
                &format!("is more than {MAX_HORIZON_STEPS} steps ahead"),
            ));
        }
        let season_steps = duration(params, "season")?
            .map(|season| {
                if season % step_seconds != 0 {
                    return Err(bad("season", "must be a whole number of steps"));
                }
                Ok((season / step_seconds) as usize)
            })
            .transpose()?;
        Ok(ForecastRequest {
            range: RangeQuery {
                name,
                matchers,
                from,
                to,
                step_seconds,
                agg,
            },
            horizon_steps: horizon_steps as usize,
            season_steps,
        })
    }

    /// Forecasts every series.
    pub fn forecast_all(
        &self,
        series: Vec<crate::range_series::LabeledPoints>,
        times: TimeFormat,
    ) -> Result<Value, ApiError> {
        let step = self.range.step_seconds;
        let config = ForecastConfig::default();
        let mut out = Vec::with_capacity(series.len());
        for (labels, points) in series {
            let (Some(&(first, _)), Some(&(last, _))) = (points.first(), points.last()) else {
                continue;
            };
            let mut history = vec![f64::NAN; ((last - first) / step) as usize + 1];
            for (seconds, value) in &points {
                history[((seconds - first) / step) as usize] = *value;
            }
            let result =
                forecast::forecast(&history, self.horizon_steps, self.season_steps, &config)
                    .map_err(|e| {
                        ApiError::BadRequest(format!("cannot forecast {labels:?}: {e}"))
                    })?;
            let forecast_points: Vec<Value> = (0..self.horizon_steps)
                .map(|h| {
                    json!([
                        times.value(last + (h as i64 + 1) * step),
                        result.mean[h],
                        result.lower[h],
                        result.upper[h]
                    ])
                })
                .collect();
            out.push(json!({
                "labels": labels,
                "method": result.method,
                "season_seconds": result.season.map(|s| s as i64 * step),
                "history_points": points.len(),
                "points": forecast_points,
            }));
        }
        Ok(json!({ "series": out }))
    }
}
