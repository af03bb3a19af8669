//! Derived service series: after each step (a minute by default, plus a lag for late spans),
//! the step's traffic of every service and every edge of each tenant's service map is written
//! as gauges through the ingest pipeline — so they are stored with the metrics, queryable with
//! `query_range`, and watched by the anomaly detectors like any other series.
//!
//! Per service (resource `service.name` = the service): [`REQUEST_RATE`] (requests per second),
//! [`ERROR_RATE`] (errors / requests) and [`DURATION_P50`], [`DURATION_P95`],
//! [`DURATION_P99`] (milliseconds). Per edge the same names with `sextant.edge.` in place of
//! `sextant.service.`, with attributes `caller` and `callee` and the callee as the service.
//! Spans arriving after the lag miss their step; after a restart the step in progress is
//! skipped.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_incidents::topology::{ServiceMap, Traffic};
use sextant_ingest::otlp::OtlpRequest;
use sextant_model::TenantId;

use crate::read_params::{NANOS_PER_SECOND, now_ns};
use crate::{AppState, Principal};

pub const REQUEST_RATE: &str = "sextant.service.request_rate";
pub const ERROR_RATE: &str = "sextant.service.error_rate";
pub const DURATION_P50: &str = "sextant.service.duration_p50";
pub const DURATION_P95: &str = "sextant.service.duration_p95";
pub const DURATION_P99: &str = "sextant.service.duration_p99";
/// Most nodes and edges written per tenant and step; a larger map is cut (and logged).
pub const MAX_SERIES_OWNERS: usize = 2_000;

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.to_owned())),
    })
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..Default::default()
    }
}

/// The five gauges of one service or edge at `time`.
fn gauges(prefix: &str, traffic: &Traffic, attributes: &[KeyValue], time: i64) -> Vec<Metric> {
    let point = |value: f64, unit: &str, name: &str| Metric {
        name: format!("{prefix}{name}"),
        unit: unit.to_owned(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: attributes.to_vec(),
                time_unix_nano: time as u64,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    vec![
        point(traffic.request_rate, "1/s", "request_rate"),
        point(traffic.error_rate, "1", "error_rate"),
        point(traffic.p50_ms, "ms", "duration_p50"),
        point(traffic.p95_ms, "ms", "duration_p95"),
        point(traffic.p99_ms, "ms", "duration_p99"),
    ]
}

/// The export request holding `map`'s series for the step starting at `time`.
pub fn series_request(map: &ServiceMap, time: i64) -> ExportMetricsServiceRequest {
    let mut by_service: std::collections::BTreeMap<String, Vec<Metric>> = Default::default();
    for node in map.nodes().filter(|n| n.traffic.requests > 0) {
        by_service
            .entry(node.name.clone())
            .or_default()
            .extend(gauges("sextant.service.", &node.traffic, &[], time));
    }
    for edge in map.edges().filter(|e| e.traffic.requests > 0) {
        let attributes = [
            attribute("caller", &edge.caller),
            attribute("callee", &edge.callee),
        ];
        by_service
            .entry(edge.callee.clone())
            .or_default()
            .extend(gauges("sextant.edge.", &edge.traffic, &attributes, time));
    }
    ExportMetricsServiceRequest {
        resource_metrics: by_service
            .into_iter()
            .take(MAX_SERIES_OWNERS)
            .map(|(service, metrics)| ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![attribute("service.name", &service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Writes the series of the step `[from, from + step)` for `tenant`; how many points.
async fn derive(
    state: &AppState,
    tenant: &TenantId,
    from: i64,
    step: i64,
) -> Result<usize, String> {
    let principal = Principal::internal(tenant, "sextant.derived_series");
    let map = crate::api_topology::service_map(state, &principal, from, from + step)
        .await
        .map_err(|e| e.to_string())?;
    let request = series_request(&map, from);
    if request.resource_metrics.is_empty() {
        return Ok(0);
    }
    let points = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .map(|s| s.metrics.len())
        .sum();
    let size = request.encoded_len();
    let pipeline = state.pipeline().map_err(|e| e.to_string())?;
    pipeline
        .ingest_request(tenant, OtlpRequest::Metrics(request), size)
        .await
        .map_err(|e| e.to_string())?;
    Ok(points)
}

/// Derives every tenant's series after each `step`, `lag` after the step ends, until the
/// process ends.
pub async fn run(state: AppState, step: Duration, lag: Duration) {
    let step_ns = step.as_nanos() as i64;
    let lag_ns = lag.as_nanos() as i64;
    if step_ns <= 0 {
        return;
    }
    // The first step derived is the one in progress now (a restart skips the one before).
    let mut next = now_ns().div_euclid(step_ns) * step_ns;
    loop {
        let due = next + step_ns + lag_ns;
        let wait = (due - now_ns()).max(0);
        tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        let tenants = match state.meta.tenants() {
            Ok(tenants) => tenants,
            Err(err) => {
                tracing::warn!(error = %err, "derived series: cannot list tenants");
                next += step_ns;
                continue;
            }
        };
        for tenant in &tenants {
            if let Err(err) = derive(&state, tenant, next, step_ns).await {
                tracing::warn!(%tenant, error = %err, "derived service series not written");
            }
        }
        next += step_ns;
        // Far behind (a suspended process): skip to the step in progress.
        let current = now_ns().div_euclid(step_ns) * step_ns;
        if current - next > 10 * step_ns.max(NANOS_PER_SECOND) {
            next = current;
        }
    }
}
