//! Capacity and trend warnings: for each configured rule (a metric with a limit), forecast its
//! series every check and raise a `capacity` event when the forecast reaches the limit within
//! the rule's horizon ("reaches LIMIT in about T (between A and B)"). The forecast is the
//! history's linear trend with its prediction interval ([`linear_trend`]): how a filling disk
//! or a growing queue is extrapolated by people too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sextant_analytics::forecast::{ForecastConfig, linear_trend};
use sextant_analytics::text::{duration, number};
use sextant_model::{Event, EventKind, TenantId};
use sha2::{Digest, Sha256};

use crate::api_metrics::{RangeQuery, parse_matchers};
use crate::range_series::Aggregation;
use crate::read_params::{NANOS_PER_SECOND, now_ns, parse_step};
use crate::{AppState, Principal};

/// One rule, as written in the config file's `[[capacity]]` tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityRule {
    /// The metric.
    pub name: String,
    /// `label=value` pairs separated by commas, as `query_range`'s `match`. Default: all series.
    #[serde(default)]
    pub r#match: String,
    /// The limit, in the metric's unit.
    pub limit: f64,
    /// Warn when the forecast reaches the limit within this long (`6h`, `7d`). Default `1d`.
    #[serde(default = "default_horizon")]
    pub horizon: String,
    /// History step (`5m`). Default `5m`.
    #[serde(default = "default_step")]
    pub step: String,
    /// History length (`3d`). Default `3d`.
    #[serde(default = "default_history")]
    pub history: String,
    /// `avg`, `max`, `sum`, `min` or `rate` per step. Default `avg`.
    #[serde(default = "default_agg")]
    pub agg: String,
}

fn default_horizon() -> String {
    "1d".to_owned()
}
fn default_step() -> String {
    "5m".to_owned()
}
fn default_history() -> String {
    "3d".to_owned()
}
fn default_agg() -> String {
    "avg".to_owned()
}

/// A rule with its durations checked.
#[derive(Clone, Debug)]
struct Checked {
    rule: CapacityRule,
    matchers: Vec<(String, String)>,
    horizon_seconds: i64,
    step_seconds: i64,
    history_seconds: i64,
    agg: Aggregation,
}

impl CapacityRule {
    /// Checks the rule; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<Checked, String> {
        let duration = |field: &str, text: &str| {
            parse_step(text).ok_or_else(|| {
                format!(
                    "capacity rule `{}`: `{field}` must be a duration like `5m`, `1d`",
                    self.name
                )
            })
        };
        let matchers = if self.r#match.trim().is_empty() {
            Vec::new()
        } else {
            parse_matchers(&self.r#match).ok_or_else(|| {
                format!(
                    "capacity rule `{}`: `match` must be `label=value` pairs",
                    self.name
                )
            })?
        };
        let agg = match Aggregation::parse(&self.agg) {
            Some(
                agg @ (Aggregation::Avg
                | Aggregation::Max
                | Aggregation::Min
                | Aggregation::Sum
                | Aggregation::Rate),
            ) => agg,
            _ => {
                return Err(format!(
                    "capacity rule `{}`: `agg` must be avg, max, min, sum or rate",
                    self.name
                ));
            }
        };
        if self.name.is_empty() || !self.limit.is_finite() {
            return Err("capacity rule: `name` and a finite `limit` are required".to_owned());
        }
        let checked = Checked {
            rule: self.clone(),
            matchers,
            horizon_seconds: duration("horizon", &self.horizon)?,
            step_seconds: duration("step", &self.step)?,
            history_seconds: duration("history", &self.history)?,
            agg,
        };
        if checked.history_seconds / checked.step_seconds > 10_000
            || checked.horizon_seconds / checked.step_seconds > 10_000
        {
            return Err(format!(
                "capacity rule `{}`: `history` and `horizon` must each be at most 10,000 steps",
                self.name
            ));
        }
        Ok(checked)
    }
}

/// Runs the rules every `interval` until the process ends. Invalid rules are logged and
/// skipped (the config loader refuses them first).
pub async fn run(state: AppState, rules: Vec<CapacityRule>, interval: Duration) {
    if rules.is_empty() {
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        match check_all(&state, &rules, now_ns(), interval).await {
            Ok(raised) if raised > 0 => tracing::info!(raised, "capacity warnings raised"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "capacity check failed"),
        }
    }
}

/// Checks every rule for every tenant at `now`; returns how many new events were stored.
/// A series and rule's warning is stored once (deduplicated by fingerprint); later checks
/// that still find it update its count, newest time, sentence and explanation.
pub async fn check_all(
    state: &AppState,
    rules: &[CapacityRule],
    now: i64,
    interval: Duration,
) -> Result<usize, String> {
    let services = state.services().map_err(|e| e.to_string())?;
    let tenants = state.meta.tenants().map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for rule in rules {
        let rule = match rule.checked() {
            Ok(rule) => rule,
            Err(err) => {
                tracing::error!(error = %err, "capacity rule skipped");
                continue;
            }
        };
        for tenant in &tenants {
            events.extend(check_rule(state, tenant, &rule, now, interval).await?);
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    // A warning that holds is one event whose count and newest time grow with each check,
    // not a new event per check.
    let meta = state.meta.clone();
    let stored = tokio::task::spawn_blocking(move || meta.upsert_alerts(&events))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    services.correlation.notify();
    Ok(stored.iter().filter(|(_, new)| *new).count())
}

async fn check_rule(
    state: &AppState,
    tenant: &TenantId,
    rule: &Checked,
    now: i64,
    interval: Duration,
) -> Result<Vec<Event>, String> {
    let step = rule.step_seconds;
    let to = now.div_euclid(step * NANOS_PER_SECOND) * step * NANOS_PER_SECOND;
    let range = RangeQuery {
        name: rule.rule.name.clone(),
        matchers: rule.matchers.clone(),
        from: to - rule.history_seconds * NANOS_PER_SECOND,
        to,
        step_seconds: step,
        agg: rule.agg,
    };
    let principal = Principal::internal(tenant, "sextant.capacity");
    let series = range
        .run(state, &principal)
        .await
        .map_err(|e| e.to_string())?
        .into_series();
    let horizon = (rule.horizon_seconds / step).max(1) as usize;
    let mut events = Vec::new();
    for (labels, points) in series {
        if points.len() < 10 {
            continue;
        }
        let first = points[0].0;
        let last = points[points.len() - 1].0;
        let mut history = vec![f64::NAN; ((last - first) / step) as usize + 1];
        for (seconds, value) in &points {
            history[((seconds - first) / step) as usize] = *value;
        }
        let Ok(result) = linear_trend(&history, horizon, &ForecastConfig::default()) else {
            continue;
        };
        let limit = rule.rule.limit;
        let current = points[points.len() - 1].1;
        // Which side the limit is on: upward for usage below its limit, downward for free
        // space above it.
        let rising = current < limit;
        let crossed = |values: &[f64]| {
            values
                .iter()
                .position(|&v| if rising { v >= limit } else { v <= limit })
        };
        let Some(expected_step) = crossed(&result.mean) else {
            continue;
        };
        let (early, late) = if rising {
            (crossed(&result.upper), crossed(&result.lower))
        } else {
            (crossed(&result.lower), crossed(&result.upper))
        };
        let seconds_of = |step_index: usize| (step_index as i64 + 1) * step;
        let eta = seconds_of(expected_step);
        let earliest = early.map(seconds_of).unwrap_or(eta);
        let latest = late.map(seconds_of);
        events.push(capacity_event(CapacityFinding {
            tenant,
            rule: &rule.rule,
            labels: &labels,
            now,
            current,
            eta,
            earliest,
            latest,
            method: result.method,
            interval,
        }));
    }
    Ok(events)
}

struct CapacityFinding<'a> {
    tenant: &'a TenantId,
    rule: &'a CapacityRule,
    labels: &'a BTreeMap<String, String>,
    now: i64,
    current: f64,
    eta: i64,
    earliest: i64,
    latest: Option<i64>,
    method: &'static str,
    interval: Duration,
}

fn capacity_event(finding: CapacityFinding<'_>) -> Event {
    let rule = finding.rule;
    let service = finding.labels.get("service").cloned().unwrap_or_default();
    let mut series_labels = finding.labels.clone();
    series_labels.remove("service");
    let series_text = if series_labels.is_empty() {
        rule.name.clone()
    } else {
        let pairs: Vec<String> = series_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}{{{}}}", rule.name, pairs.join(","))
    };
    let interval = match finding.latest {
        Some(latest) => format!(
            "between {} and {}",
            duration(finding.earliest),
            duration(latest)
        ),
        None => format!("from {} on", duration(finding.earliest)),
    };
    let summary = format!(
        "{}: {series_text} (now {}) reaches {} in about {} ({interval}).",
        if service.is_empty() {
            "(no service)"
        } else {
            &service
        },
        number(finding.current),
        number(rule.limit),
        duration(finding.eta),
    );
    let key: Vec<String> = finding
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let fingerprint = format!("capacity:{}{{{}}}", rule.name, key.join(","));
    let bucket = finding.now / (finding.interval.as_nanos().max(1) as i64);
    let mut hash = Sha256::new();
    hash.update(finding.tenant.as_str().as_bytes());
    hash.update([0]);
    hash.update(fingerprint.as_bytes());
    hash.update(bucket.to_le_bytes());
    let mut labels = finding.labels.clone();
    labels.insert("__name__".to_owned(), rule.name.clone());
    Event {
        id: hex::encode(&hash.finalize()[..8]),
        tenant: finding.tenant.clone(),
        time_unix_nano: finding.now,
        kind: EventKind::Capacity,
        source: "sextant.capacity".to_owned(),
        service,
        severity: "warning".to_owned(),
        title: format!(
            "{series_text} reaches {} in about {}",
            rule.limit,
            duration(finding.eta)
        ),
        summary,
        fingerprint,
        status: "firing".to_owned(),
        labels,
        details: json!({
            "series": {"name": rule.name, "labels": finding.labels},
            "current": finding.current,
            "limit": rule.limit,
            "reaches_in_seconds": finding.eta,
            "interval_seconds": [finding.earliest, finding.latest],
            "horizon": rule.horizon,
            "method": finding.method,
            "rule": {"name": rule.name, "match": rule.r#match, "step": rule.step, "history": rule.history, "agg": rule.agg},
        }),
        count: 1,
        last_seen_unix_nano: finding.now,
        decision: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_are_named() {
        let rule = CapacityRule {
            name: "disk.used".to_owned(),
            r#match: String::new(),
            limit: 100.0,
            horizon: default_horizon(),
            step: default_step(),
            history: default_history(),
            agg: default_agg(),
        };
        assert!(rule.validate().is_ok());
        for (broken, field) in [
            (
                CapacityRule {
                    horizon: "soon".into(),
                    ..rule.clone()
                },
                "`horizon`",
            ),
            (
                CapacityRule {
                    agg: "p99".into(),
                    ..rule.clone()
                },
                "`agg`",
            ),
            (
                CapacityRule {
                    r#match: "mount".into(),
                    ..rule.clone()
                },
                "`match`",
            ),
            (
                CapacityRule {
                    limit: f64::NAN,
                    ..rule.clone()
                },
                "`limit`",
            ),
            (
                CapacityRule {
                    step: "1s".into(),
                    ..rule.clone()
                },
                "10,000 steps",
            ),
        ] {
            let err = broken.validate().unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }
}
