//! `GET /api/v1/topology?from=&to=`: the caller's service map, derived from its spans — an
//! edge wherever a span's parent belongs to another service (a CLIENT or PRODUCER span met by
//! a SERVER or CONSUMER span is such a pair), and an edge to a named external node for client
//! spans no instrumented server answered (named by `peer.service`, `db.system`,
//! `server.address` or `net.peer.name`) — with request rate, error rate and duration quantiles
//! per service (its SERVER and CONSUMER spans, and its root spans) and per edge (the callee's
//! spans; for an external node, the client spans).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use sextant_incidents::topology::{Edge, Node, ServiceMap, Traffic};
use sextant_model::Table;

use crate::read_params::{Params, format_time, json_rows, run_query, sql_time};
use crate::{ApiError, AppState, Principal};

/// Duration quantiles in milliseconds, and counts, of the spans a query groups.
const FIGURES: &str = "count(*) AS requests,
    sum(CASE WHEN {s}.status_code = 2 THEN 1 ELSE 0 END) AS errors,
    approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY {s}.duration_ns) / 1e6 AS p50,
    approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY {s}.duration_ns) / 1e6 AS p95,
    approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY {s}.duration_ns) / 1e6 AS p99";

fn figures(alias: &str) -> String {
    FIGURES.replace("{s}", alias)
}

pub async fn topology(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let principal = crate::api_sql::query_principal(&state, &headers)?;
    let params = Params::new(query, &["from", "to"])?;
    let (from, to) = params.time_range()?;
    let map = service_map(&state, &principal, from, to).await?;
    Ok(axum::Json(map_json(&map, from, to)))
}

/// The map as the API shows it.
pub(crate) fn map_json(map: &ServiceMap, from: i64, to: i64) -> Value {
    json!({
        "from": format_time(from),
        "to": format_time(to),
        "nodes": map.nodes().map(|n| json!({"name": n.name, "kind": n.kind, "traffic": n.traffic})).collect::<Vec<_>>(),
        "edges": map.edges().map(|e| json!({"caller": e.caller, "callee": e.callee, "traffic": e.traffic})).collect::<Vec<_>>(),
    })
}

/// The principal's tenant's service map over `[from, to)`.
pub(crate) async fn service_map(
    state: &AppState,
    principal: &Principal,
    from: i64,
    to: i64,
) -> Result<ServiceMap, ApiError> {
    let seconds = (to - from) as f64 / 1e9;
    let window = format!("time >= {} AND time < {}", sql_time(from), sql_time(to));
    let spans = format!(
        "s AS (SELECT trace_id, span_id, parent_span_id, service, kind, status_code, duration_ns,
            coalesce(nullif(attributes['peer.service'], ''), nullif(attributes['db.system'], ''),
                     nullif(attributes['server.address'], ''), nullif(attributes['net.peer.name'], ''))
            AS peer
         FROM spans WHERE {window})"
    );
    let served = format!(
        "SELECT service AS name, {} FROM spans WHERE {window} AND (kind IN (2, 5) OR parent_span_id = '')
         GROUP BY service",
        figures("spans")
    );
    let calls = format!(
        "WITH {spans}
         SELECT p.service AS caller, c.service AS callee, {} FROM s c
         JOIN s p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
         WHERE c.service <> p.service GROUP BY p.service, c.service",
        figures("c")
    );
    let external = format!(
        "WITH {spans}, answered AS (SELECT DISTINCT trace_id, parent_span_id FROM s WHERE kind IN (2, 5))
         SELECT c.service AS caller, c.peer AS callee, {} FROM s c
         LEFT JOIN answered a ON a.trace_id = c.trace_id AND a.parent_span_id = c.span_id
         WHERE c.kind IN (3, 4) AND c.peer IS NOT NULL AND a.parent_span_id IS NULL
         GROUP BY c.service, c.peer",
        figures("c")
    );
    let mut nodes = Vec::new();
    for row in json_rows(&run_query(state, principal, Table::Spans, &served).await?) {
        nodes.push(Node {
            name: text(&row, "name"),
            kind: "service".into(),
            traffic: traffic(&row, seconds),
        });
    }
    let mut edges = Vec::new();
    for row in json_rows(&run_query(state, principal, Table::Spans, &calls).await?) {
        edges.push(Edge {
            caller: text(&row, "caller"),
            callee: text(&row, "callee"),
            traffic: traffic(&row, seconds),
        });
    }
    let known: std::collections::HashSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for row in json_rows(&run_query(state, principal, Table::Spans, &external).await?) {
        let edge = Edge {
            caller: text(&row, "caller"),
            callee: text(&row, "callee"),
            traffic: traffic(&row, seconds),
        };
        if !known.contains(&edge.callee) && !nodes.iter().any(|n| n.name == edge.callee) {
            nodes.push(Node {
                name: edge.callee.clone(),
                kind: "external".into(),
                traffic: edge.traffic.clone(),
            });
        }
        edges.push(edge);
    }
    Ok(ServiceMap::new(nodes, edges))
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn traffic(row: &Map<String, Value>, seconds: f64) -> Traffic {
    let number = |key: &str| row.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let count = |key: &str| row.get(key).and_then(Value::as_u64).unwrap_or(0);
    Traffic::new(
        count("requests"),
        count("errors"),
        seconds,
        [number("p50"), number("p95"), number("p99")],
    )
}
