//! Root-cause rankings of open incidents, recomputed as evidence arrives: every few seconds,
//! each open incident whose members changed since its last ranking (and whose last ranking is
//! at least [`MIN_INTERVAL`] old) is ranked again with [`sextant_incidents::rca::rank`], and the
//! new version is kept beside the old ones.
//!
//! Candidates: the incident's services and their neighbours on the service map (at most
//! [`MAX_SERVICES`]); per service, every metric (gauges as they are, monotonic sums as rates
//! between steps; the derived `sextant.service.*` series included, `sextant.edge.*` left out as
//! they repeat the callee's) averaged per [`STEP_SECONDS`], with the hour before the incident
//! (less five minutes) as the baseline and from five minutes before it opened to five minutes
//! after its last activity as the incident window, that activity counted up to the end of the
//! incident's gathering time (the correlator's `group_window_seconds`: the quarter of an hour in
//! which it takes new signals; what a long incident does after it is its members going on, and
//! weighing it would let hours of later noise outvote the onset); the ERROR log patterns of those services
//! that are new in the window or run at least three times their baseline rate; and the spans
//! of the window and of the quarter of an hour before it (at most [`MAX_SPANS`] each), for each
//! service's own time and the gaps of its calls ([`sextant_incidents::rca::traces`]). The
//! service map gives the direction. Each ranked service's evidence also lists the incident's
//! anomalies of that service (the detectors' events).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sextant_incidents::correlator::Incident;
use sextant_incidents::rca::traces::{SpanRecord, TraceEvidence, trace_evidence};
use sextant_incidents::rca::{
    self, CandidateSeries, LogSignal, PatternCount, RcaConfig, RcaInput, rank,
};
use sextant_incidents::topology::ServiceMap;
use sextant_model::{Table, TenantId};

use crate::correlation::Correlation;
use crate::read_params::{
    NANOS_PER_SECOND, format_time, json_rows, now_ns, run_query, run_query_over, sql_string,
    sql_time,
};
use crate::{ApiError, AppState, Principal};

/// Services ranked at most per incident.
pub const MAX_SERVICES: usize = 50;
/// An incident is ranked again at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Services kept in a stored ranking.
const KEPT: usize = 10;
const MINUTE: i64 = 60 * NANOS_PER_SECOND;
/// Metrics are averaged (counters turned into rates) per this many seconds: a common scrape
/// interval, fine enough that a fault of a minute spans several points.
const STEP_SECONDS: i64 = 15;
/// The baseline: the hour before the incident window.
const BASELINE: i64 = 60 * MINUTE;
/// The spans' baseline: the quarter of an hour before the window.
const TRACE_BASELINE: i64 = 15 * MINUTE;
/// Spans read at most of the baseline and of the window each (the latest).
const MAX_SPANS: usize = 100_000;
/// The window starts this long before the incident opened and ends this long after its last
/// activity.
const MARGIN: i64 = 5 * MINUTE;

/// What a ranking was computed from: a new one is due when it changes.
pub fn basis(incident: &Incident) -> Value {
    json!({
        "members": incident.members.len(),
        "notifications": incident.notifications,
        "updated_at": incident.updated_at,
    })
}

fn principal(tenant: &TenantId) -> Principal {
    Principal::internal(tenant, "sextant.rca")
}

fn number(row: &serde_json::Map<String, Value>, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

fn text(row: &serde_json::Map<String, Value>, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The candidate services: the incident's, then their neighbours on the map.
fn candidate_services(incident: &Incident, map: &ServiceMap) -> Vec<String> {
    let mut services: Vec<String> = incident.services.iter().cloned().collect();
    let mut seen: BTreeSet<String> = services.iter().cloned().collect();
    for edge in map.edges() {
        for (a, b) in [(&edge.caller, &edge.callee), (&edge.callee, &edge.caller)] {
            if incident.services.contains(a) && seen.insert(b.clone()) {
                services.push(b.clone());
            }
        }
    }
    services.truncate(MAX_SERVICES);
    services
}

/// The incident window: from [`MARGIN`] before the incident opened to [`MARGIN`] after its last
/// activity, counted up to `gathering` after it opened (the time in which it takes new signals).
fn incident_window(incident: &Incident, gathering: i64) -> (i64, i64) {
    let last = incident
        .updated_at
        .clamp(incident.opened_at, incident.opened_at + gathering);
    (incident.opened_at - MARGIN, last + MARGIN)
}

/// Ranks one incident now; the JSON kept as its next version.
pub async fn rank_incident(
    state: &AppState,
    tenant: &TenantId,
    incident: &Incident,
) -> Result<Value, ApiError> {
    let principal = principal(tenant);
    let gathering =
        state.services()?.correlation.config().group_window_seconds as i64 * NANOS_PER_SECOND;
    let (window_start, window_end) = incident_window(incident, gathering);
    let baseline_start = window_start - BASELINE;
    // The map of the incident's own time (event time, so a replay derives the same one).
    let map =
        crate::api_topology::service_map(state, &principal, baseline_start, window_end).await?;
    let services = candidate_services(incident, &map);
    if services.is_empty() {
        return Ok(
            json!({"basis": basis(incident), "services": [], "series_considered": 0,
            "note": "the incident names no service"}),
        );
    }
    let in_list = services
        .iter()
        .map(|s| sql_string(s))
        .collect::<Vec<_>>()
        .join(", ");
    let bounds = format!(
        "time >= {} AND time < {} AND service IN ({in_list})",
        sql_time(baseline_start),
        sql_time(window_end)
    );
    let sql = format!(
        "SELECT service, name, kind, is_monotonic,
            CAST(date_bin(INTERVAL '{STEP_SECONDS} seconds', time) AS BIGINT) AS t,
            avg(value) AS v, max(value) AS hi
         FROM metrics WHERE {bounds} AND value IS NOT NULL AND kind IN ('gauge', 'sum')
           AND name NOT LIKE 'sextant.edge.%'
         GROUP BY service, name, kind, is_monotonic, t ORDER BY t"
    );
    let rows = json_rows(&run_query(state, &principal, Table::Metrics, &sql).await?);
    let mut series: BTreeMap<(String, String), CandidateSeries> = BTreeMap::new();
    // A counter's last step and value: its rate is the rise from one step to the next (a fall
    // is a reset, and gives no point).
    let mut last_count: HashMap<(String, String), (i64, f64)> = HashMap::new();
    for row in &rows {
        let (Some(t), Some(avg)) = (row.get("t").and_then(Value::as_i64), number(row, "v")) else {
            continue;
        };
        let monotonic = row.get("is_monotonic").and_then(Value::as_bool) == Some(true)
            && row.get("kind").and_then(Value::as_str) == Some("sum");
        let (service, name) = (text(row, "service"), text(row, "name"));
        let value = if monotonic {
            let Some(hi) = number(row, "hi") else {
                continue;
            };
            let previous = last_count.insert((service.clone(), name.clone()), (t, hi));
            match previous {
                Some((at, before)) if hi >= before && t > at => {
                    (hi - before) / ((t - at) as f64 / NANOS_PER_SECOND as f64)
                }
                _ => continue,
            }
        } else {
            avg
        };
        let entry = series
            .entry((service.clone(), name.clone()))
            .or_insert_with(|| CandidateSeries {
                service,
                metric: name,
                normal: Vec::new(),
                anomalous: Vec::new(),
            });
        if t < window_start {
            entry.normal.push(value);
        } else {
            entry.anomalous.push((t, value));
        }
    }
    let series: Vec<CandidateSeries> = series.into_values().collect();
    let log_bounds = format!(
        "l.time >= {} AND l.time < {} AND l.service IN ({in_list})",
        sql_time(baseline_start),
        sql_time(window_end)
    );
    let logs = log_signals(
        state,
        &principal,
        &log_bounds,
        window_start,
        window_end,
        baseline_start,
    )
    .await?;
    let config = RcaConfig::default();
    let spans = spans(state, &principal, window_start, window_end).await?;
    let traces: Vec<TraceEvidence> = trace_evidence(&spans, window_start, &config)
        .into_values()
        .collect();
    let input = RcaInput {
        series: &series,
        logs: &logs,
        map: Some(&map),
        traces: &traces,
    };
    let ranking = rank(&input, &config);
    // The incident's anomalies of each service: the detectors' events the ranking agrees with.
    let services: Vec<Value> = ranking
        .services
        .iter()
        .take(KEPT)
        .map(|candidate| {
            let mut value = serde_json::to_value(candidate).expect("rankings serialise");
            let anomalies: Vec<Value> = incident
                .members
                .iter()
                .filter(|m| m.kind == "anomaly" && m.service == candidate.service)
                .map(|m| json!({"event_id": m.event_id, "title": m.title, "first_seen": format_time(m.first_seen)}))
                .collect();
            value["evidence"]["anomalies"] = Value::Array(anomalies);
            value
        })
        .collect();
    Ok(json!({
        "basis": basis(incident),
        "window": {"baseline_from": format_time(baseline_start), "from": format_time(window_start),
                   "to": format_time(window_end)},
        "series_considered": series.len(),
        "log_signals": logs.len(),
        "spans_considered": spans.len(),
        "services": services,
    }))
}

/// The spans of the incident window and of the [`TRACE_BASELINE`] before it, each period at
/// most [`MAX_SPANS`] (the latest), for the trace evidence.
async fn spans(
    state: &AppState,
    principal: &Principal,
    window_start: i64,
    window_end: i64,
) -> Result<Vec<SpanRecord>, ApiError> {
    let mut spans = Vec::new();
    for (from, to) in [
        (window_start - TRACE_BASELINE, window_start),
        (window_start, window_end),
    ] {
        let sql = format!(
            "SELECT trace_id, span_id, parent_span_id, service, CAST(time AS BIGINT) AS start,
                CAST(end_time AS BIGINT) AS finish
             FROM spans WHERE time >= {} AND time < {} ORDER BY time DESC LIMIT {MAX_SPANS}",
            sql_time(from),
            sql_time(to)
        );
        let rows = json_rows(&run_query(state, principal, Table::Spans, &sql).await?);
        spans.extend(rows.iter().filter_map(|row| {
            let hex = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or_default();
            Some(SpanRecord {
                trace_id: u128::from_str_radix(hex("trace_id"), 16).ok()?,
                span_id: u64::from_str_radix(hex("span_id"), 16).ok()?,
                parent_span_id: u64::from_str_radix(hex("parent_span_id"), 16).ok(),
                service: text(row, "service"),
                start: row.get("start").and_then(Value::as_i64)?,
                end: row.get("finish").and_then(Value::as_i64)?,
            })
        }));
    }
    Ok(spans)
}

/// ERROR log patterns of the candidate services that are new in the window, or spiking
/// (`bounds`: the SQL condition on `logs l` for the services and the whole period).
async fn log_signals(
    state: &AppState,
    principal: &Principal,
    bounds: &str,
    window_start: i64,
    window_end: i64,
    baseline_start: i64,
) -> Result<Vec<LogSignal>, ApiError> {
    let sql = format!(
        "SELECT l.service AS service, t.template_id AS template_id, max(t.template) AS template,
            sum(CASE WHEN l.time >= {w} THEN 1 ELSE 0 END) AS in_window,
            sum(CASE WHEN l.time < {w} THEN 1 ELSE 0 END) AS before,
            CAST(min(CASE WHEN l.time >= {w} THEN l.time END) AS BIGINT) AS first_seen
         FROM logs l JOIN {of_id} t ON l.template_id = t.id
         WHERE {bounds} AND l.severity_number >= 17
         GROUP BY l.service, t.template_id",
        w = sql_time(window_start),
        of_id = crate::api_patterns::TEMPLATE_OF_ID,
    );
    let rows =
        json_rows(&run_query_over(state, principal, &[Table::Logs, Table::Templates], &sql).await?);
    let counts: Vec<PatternCount> = rows
        .iter()
        .map(|row| PatternCount {
            service: text(row, "service"),
            template_id: row.get("template_id").and_then(Value::as_u64).unwrap_or(0),
            template: text(row, "template"),
            before: number(row, "before").unwrap_or(0.0) as u64,
            in_window: number(row, "in_window").unwrap_or(0.0) as u64,
            first_seen: row
                .get("first_seen")
                .and_then(Value::as_i64)
                .unwrap_or(window_start),
        })
        .collect();
    Ok(rca::log_signals(
        &counts,
        (window_start - baseline_start) as f64 / MINUTE as f64,
        (window_end - window_start) as f64 / MINUTE as f64,
    ))
}

/// Ranks one incident and keeps the ranking as its next version, with an audit record when
/// the order of its services changed.
pub async fn rank_and_keep(
    state: &AppState,
    tenant: &TenantId,
    incident: &Incident,
) -> Result<(), ApiError> {
    let ranking = rank_incident(state, tenant, incident).await?;
    let before = latest(state, tenant, incident.id)?;
    let body = ranking.to_string();
    let meta = state.meta.clone();
    let (t, id) = (tenant.clone(), incident.id);
    let version = tokio::task::spawn_blocking(move || meta.add_ranking(&t, id, now_ns(), &body))
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "ranking task failed");
            ApiError::Internal
        })??;
    if !order_changed(before.as_ref(), &ranking) {
        return Ok(());
    }
    let top = &ranking["services"][0];
    let _ = crate::audit::record(
        state,
        tenant,
        "sextant.rca",
        "rca.ranking",
        &incident.id.to_string(),
        json!({"version": version, "first": top["service"],
               "metric": top["metric"], "score": top["score"],
               "sentence": top["sentence"]}),
    )
    .await;
    Ok(())
}

/// Whether `ranking` orders its services otherwise than the one `before` it (or is the first):
/// the audit trail records a ranking then, not at each new version of the same order.
fn order_changed(before: Option<&Value>, ranking: &Value) -> bool {
    let order = |ranking: &Value| -> Vec<String> {
        ranking["services"]
            .as_array()
            .map(|services| {
                services
                    .iter()
                    .filter_map(|s| s["service"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    before.is_none_or(|before| order(before) != order(ranking))
}

/// Whether an incident's ranking is due: its evidence changed since the last one (`last`: the
/// basis it was computed from and when), at least `interval` ago; `now` and `at` on one clock.
pub fn due(incident: &Incident, last: Option<&(Value, i64)>, now: i64, interval: i64) -> bool {
    last.is_none_or(|(seen, at)| *seen != basis(incident) && now - at >= interval)
}

/// Ranks every open incident whose evidence changed, every few seconds, until the process
/// ends.
pub async fn run(state: AppState, correlation: Arc<Correlation>, every: Duration) {
    let interval = MIN_INTERVAL.as_nanos() as i64;
    let started = Instant::now();
    let clock = || started.elapsed().as_nanos() as i64;
    let mut last: HashMap<(TenantId, u64), (Value, i64)> = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        for (tenant, incident) in correlation.open_snapshot().await {
            let key = (tenant.clone(), incident.id);
            if !due(&incident, last.get(&key), clock(), interval) {
                continue;
            }
            let basis = basis(&incident);
            if !last.contains_key(&key)
                && let Ok(Some(stored)) = latest(&state, &tenant, incident.id)
                && stored["basis"] == basis
            {
                // Ranked before a restart from the same evidence.
                last.insert(key, (basis, clock()));
                continue;
            }
            match rank_and_keep(&state, &tenant, &incident).await {
                Ok(()) => {
                    last.insert(key, (basis, clock()));
                }
                Err(err) => {
                    tracing::warn!(%tenant, incident = incident.id, error = %err, "incident not ranked");
                    last.insert(key, (Value::Null, clock()));
                }
            }
        }
    }
}

/// The newest stored ranking of an incident, with its version and time.
pub fn latest(
    state: &AppState,
    tenant: &TenantId,
    incident: u64,
) -> Result<Option<Value>, ApiError> {
    Ok(versions(state, tenant, incident, 1)?.into_iter().next())
}

/// An incident's newest `limit` rankings, each with `version` and `computed_at`.
pub fn versions(
    state: &AppState,
    tenant: &TenantId,
    incident: u64,
    limit: usize,
) -> Result<Vec<Value>, ApiError> {
    let rows = state.meta.rankings(tenant, incident, limit)?;
    Ok(rows
        .into_iter()
        .map(|(version, at, body)| {
            let mut value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                object.insert("version".into(), json!(version));
                object.insert("computed_at".into(), json!(format_time(at)));
            }
            value
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_order_is_worth_an_audit_record() {
        let ranking = |services: &[(&str, f64)]| json!({"services": services.iter().map(|(s, score)| json!({"service": s, "score": score})).collect::<Vec<_>>()});
        let first = ranking(&[("db", 9.0), ("api", 2.0)]);
        assert!(order_changed(None, &first));
        // New scores, same order: a new version, no new record.
        assert!(!order_changed(
            Some(&first),
            &ranking(&[("db", 12.0), ("api", 1.0)])
        ));
        assert!(order_changed(
            Some(&first),
            &ranking(&[("api", 9.0), ("db", 2.0)])
        ));
        assert!(order_changed(Some(&first), &ranking(&[("db", 9.0)])));
    }

    #[test]
    fn the_window_covers_the_incidents_gathering_time_not_its_whole_life() {
        let quarter = 15 * MINUTE;
        let mut incident = Incident::new(1, "checkout", "warning", 100 * MINUTE);
        incident.updated_at = 103 * MINUTE;
        assert_eq!(
            incident_window(&incident, quarter),
            (95 * MINUTE, 108 * MINUTE)
        );
        // Hours of members going on: the window stops a margin after the gathering time.
        incident.updated_at = 300 * MINUTE;
        assert_eq!(
            incident_window(&incident, quarter),
            (95 * MINUTE, 120 * MINUTE)
        );
    }
}
