//! OTLP export requests: counting and checking them, and flattening them into rows.
//!
//! Ingest calls [`retain_valid_logs`], [`retain_valid_spans`] and [`count_data_points`] on
//! every request before it is written (they count records and drop those with malformed ids);
//! the store calls the `*_rows` functions when it turns logged requests into rows.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, Metric, NumberDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::{AttrValue, Attributes, LogRow, MetricKind, MetricRow, SpanRow, TenantId};

/// The service of a resource that names none (the OpenTelemetry SDK default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// A request that decodes but breaks an OTLP rule Sextant enforces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {index}: `{field}` has {len} bytes, expected {expected} or none")]
pub struct InvalidRecord {
    /// `log record`, `span` or `span link`.
    pub what: &'static str,
    /// Position of the record in the request, from 0.
    pub index: usize,
    pub field: &'static str,
    pub len: usize,
    pub expected: usize,
}

fn check_id(
    bytes: &[u8],
    expected: usize,
    what: &'static str,
    field: &'static str,
    index: usize,
) -> Result<(), InvalidRecord> {
    if bytes.is_empty() || bytes.len() == expected {
        Ok(())
    } else {
        Err(InvalidRecord {
            what,
            index,
            field,
            len: bytes.len(),
            expected,
        })
    }
}

/// What checking a request found: records kept, records dropped, and why the first was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub accepted: usize,
    pub rejected: usize,
    pub first_error: Option<InvalidRecord>,
}

impl Checked {
    fn keep(&mut self, verdict: Result<(), InvalidRecord>) -> bool {
        match verdict {
            Ok(()) => {
                self.accepted += 1;
                true
            }
            Err(err) => {
                self.rejected += 1;
                self.first_error.get_or_insert(err);
                false
            }
        }
    }
}

/// Counts the log records of a request and drops those with malformed trace or span ids
/// (OTLP partial success: the rest is still accepted).
pub fn retain_valid_logs(request: &mut ExportLogsServiceRequest) -> Checked {
    let mut checked = Checked::default();
    let mut index = 0;
    for scope_logs in request
        .resource_logs
        .iter_mut()
        .flat_map(|r| &mut r.scope_logs)
    {
        scope_logs.log_records.retain(|record| {
            let verdict = check_id(&record.trace_id, 16, "log record", "trace_id", index)
                .and_then(|()| check_id(&record.span_id, 8, "log record", "span_id", index));
            index += 1;
            checked.keep(verdict)
        });
    }
    checked
}

/// Counts the spans of a request and drops those with malformed ids (their own or a link's).
pub fn retain_valid_spans(request: &mut ExportTraceServiceRequest) -> Checked {
    let mut checked = Checked::default();
    let mut index = 0;
    for scope_spans in request
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
    {
        scope_spans.spans.retain(|span| {
            let verdict = check_id(&span.trace_id, 16, "span", "trace_id", index)
                .and_then(|()| check_id(&span.span_id, 8, "span", "span_id", index))
                .and_then(|()| check_id(&span.parent_span_id, 8, "span", "parent_span_id", index))
                .and_then(|()| {
                    span.links.iter().try_for_each(|link| {
                        check_id(&link.trace_id, 16, "span link", "trace_id", index)?;
                        check_id(&link.span_id, 8, "span link", "span_id", index)
                    })
                });
            index += 1;
            checked.keep(verdict)
        });
    }
    checked
}

/// Counts the data points of a request (the rows it will become). Every decodable data point
/// is accepted.
pub fn count_data_points(request: &ExportMetricsServiceRequest) -> Checked {
    Checked {
        accepted: request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(data_point_count)
            .sum(),
        ..Checked::default()
    }
}

fn data_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// The `service.name` of a resource, or [`UNKNOWN_SERVICE`].
pub fn service_name(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned())
}

/// Converts OTLP `AnyValue` to [`AttrValue`].
pub fn attr_value(value: Option<&AnyValue>) -> AttrValue {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => AttrValue::Empty,
        Some(Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(Value::IntValue(i)) => AttrValue::Int(*i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(Value::BytesValue(b)) => AttrValue::Bytes(b.clone()),
        Some(Value::ArrayValue(a)) => {
            AttrValue::Array(a.values.iter().map(|v| attr_value(Some(v))).collect())
        }
        Some(Value::KvlistValue(kv)) => AttrValue::Map(attributes(&kv.values)),
        // An index into a profile's string table; meaningless outside profiles, which Sextant
        // does not ingest.
        Some(Value::StringValueStrindex(_)) => AttrValue::Empty,
    }
}

/// Converts OTLP key-values to [`Attributes`].
pub fn attributes(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| (kv.key.clone(), attr_value(kv.value.as_ref())))
        .collect()
}

fn scope_parts(scope: Option<&InstrumentationScope>) -> (String, String) {
    scope.map_or_else(Default::default, |s| (s.name.clone(), s.version.clone()))
}

/// One row per log record.
pub fn log_rows(tenant: &TenantId, request: &ExportLogsServiceRequest) -> Vec<LogRow> {
    let mut rows = Vec::new();
    for resource_logs in &request.resource_logs {
        let service = service_name(resource_logs.resource.as_ref());
        let resource_attributes = resource_logs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_logs in &resource_logs.scope_logs {
            let (scope_name, scope_version) = scope_parts(scope_logs.scope.as_ref());
            for record in &scope_logs.log_records {
                let time = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                rows.push(LogRow {
                    tenant: tenant.clone(),
                    service: service.clone(),
                    time_unix_nano: time,
                    observed_time_unix_nano: record.observed_time_unix_nano,
                    severity_number: record.severity_number,
                    severity_text: record.severity_text.clone(),
                    body: attr_value(record.body.as_ref()),
                    trace_id: record.trace_id.clone(),
                    span_id: record.span_id.clone(),
                    flags: record.flags,
                    event_name: record.event_name.clone(),
                    attributes: attributes(&record.attributes),
                    resource_attributes: resource_attributes.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                });
            }
        }
    }
    rows
}

/// One row per span.
pub fn span_rows(tenant: &TenantId, request: &ExportTraceServiceRequest) -> Vec<SpanRow> {
    let mut rows = Vec::new();
    for resource_spans in &request.resource_spans {
        let service = service_name(resource_spans.resource.as_ref());
        let resource_attributes = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_spans in &resource_spans.scope_spans {
            let (scope_name, scope_version) = scope_parts(scope_spans.scope.as_ref());
            for span in &scope_spans.spans {
                let status = span.status.as_ref();
                rows.push(SpanRow {
                    tenant: tenant.clone(),
                    service: service.clone(),
                    trace_id: span.trace_id.clone(),
                    span_id: span.span_id.clone(),
                    parent_span_id: span.parent_span_id.clone(),
                    trace_state: span.trace_state.clone(),
                    name: span.name.clone(),
                    kind: span.kind,
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                    status_code: status.map_or(0, |s| s.code),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attributes: attributes(&span.attributes),
                    resource_attributes: resource_attributes.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.time_unix_nano, e.name.clone(), attributes(&e.attributes)))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| {
                            (
                                l.trace_id.clone(),
                                l.span_id.clone(),
                                attributes(&l.attributes),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    rows
}

/// What every data point of one metric shares.
struct MetricContext<'a> {
    tenant: &'a TenantId,
    service: &'a str,
    metric: &'a Metric,
    resource_attributes: &'a Attributes,
    scope: &'a (String, String),
}

impl MetricContext<'_> {
    fn row(&self, kind: MetricKind, time: u64, start: u64, attrs: &[KeyValue]) -> MetricRow {
        MetricRow {
            tenant: self.tenant.clone(),
            service: self.service.to_owned(),
            name: self.metric.name.clone(),
            description: self.metric.description.clone(),
            unit: self.metric.unit.clone(),
            kind,
            time_unix_nano: time,
            start_time_unix_nano: start,
            value: None,
            count: None,
            min: None,
            max: None,
            bucket_bounds: Vec::new(),
            bucket_counts: Vec::new(),
            quantiles: Vec::new(),
            temporality: 0,
            is_monotonic: false,
            flags: 0,
            attributes: attributes(attrs),
            resource_attributes: self.resource_attributes.clone(),
            scope_name: self.scope.0.clone(),
            scope_version: self.scope.1.clone(),
        }
    }

    fn number_row(&self, kind: MetricKind, point: &NumberDataPoint) -> MetricRow {
        let mut row = self.row(
            kind,
            point.time_unix_nano,
            point.start_time_unix_nano,
            &point.attributes,
        );
        row.value = point.value.map(|v| match v {
            number_data_point::Value::AsDouble(d) => d,
            number_data_point::Value::AsInt(i) => i as f64,
        });
        row.flags = point.flags;
        row
    }
}

/// One row per metric data point; see ARCHITECTURE.md for how each metric type maps.
pub fn metric_rows(tenant: &TenantId, request: &ExportMetricsServiceRequest) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let service = service_name(resource_metrics.resource.as_ref());
        let resource_attributes = resource_metrics
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope = scope_parts(scope_metrics.scope.as_ref());
            for metric in &scope_metrics.metrics {
                let cx = MetricContext {
                    tenant,
                    service: &service,
                    metric,
                    resource_attributes: &resource_attributes,
                    scope: &scope,
                };
                push_metric_rows(&cx, &mut rows);
            }
        }
    }
    rows
}

fn push_metric_rows(cx: &MetricContext<'_>, rows: &mut Vec<MetricRow>) {
    match &cx.metric.data {
        None => {}
        Some(metric::Data::Gauge(gauge)) => rows.extend(
            gauge
                .data_points
                .iter()
                .map(|p| cx.number_row(MetricKind::Gauge, p)),
        ),
        Some(metric::Data::Sum(sum)) => rows.extend(sum.data_points.iter().map(|p| {
            let mut row = cx.number_row(MetricKind::Sum, p);
            row.temporality = sum.aggregation_temporality;
            row.is_monotonic = sum.is_monotonic;
            row
        })),
        Some(metric::Data::Histogram(histogram)) => {
            rows.extend(histogram.data_points.iter().map(|p| {
                let mut row = cx.row(
                    MetricKind::Histogram,
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                row.value = p.sum;
                row.count = Some(p.count);
                row.min = p.min;
                row.max = p.max;
                row.bucket_bounds = p.explicit_bounds.clone();
                row.bucket_counts = p.bucket_counts.clone();
                row.temporality = histogram.aggregation_temporality;
                row.flags = p.flags;
                row
            }))
        }
        Some(metric::Data::ExponentialHistogram(histogram)) => {
            rows.extend(histogram.data_points.iter().map(|p| {
                let mut row = cx.row(
                    MetricKind::ExponentialHistogram,
                    p.time_unix_nano,
                    p.start_time_unix_nano,
                    &p.attributes,
                );
                row.value = p.sum;
                row.count = Some(p.count);
                row.min = p.min;
                row.max = p.max;
                (row.bucket_bounds, row.bucket_counts) = exponential_buckets(p);
                row.temporality = histogram.aggregation_temporality;
                row.flags = p.flags;
                row
            }))
        }
        Some(metric::Data::Summary(summary)) => rows.extend(summary.data_points.iter().map(|p| {
            let mut row = cx.row(
                MetricKind::Summary,
                p.time_unix_nano,
                p.start_time_unix_nano,
                &p.attributes,
            );
            row.value = Some(p.sum);
            row.count = Some(p.count);
            row.quantiles = p
                .quantile_values
                .iter()
                .map(|q| (q.quantile, q.value))
                .collect();
            row.flags = p.flags;
            row
        })),
    }
}

/// Turns an exponential histogram's buckets into explicit upper bounds and counts, in the
/// layout of an explicit histogram: negative buckets (most negative first), the zero bucket
/// (upper bound `zero_threshold`), positive buckets, then an empty `+Inf` bucket. Bucket `i`
/// of scale `s` covers `(base^i, base^(i+1)]` with `base = 2^(2^-s)`.
pub fn exponential_buckets(point: &ExponentialHistogramDataPoint) -> (Vec<f64>, Vec<u64>) {
    let base = 2f64.powf(2f64.powi(-point.scale));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    if let Some(negative) = &point.negative {
        for (k, &count) in negative.bucket_counts.iter().enumerate().rev() {
            let index = negative.offset as i64 + k as i64;
            bounds.push(-base.powf(index as f64));
            counts.push(count);
        }
    }
    bounds.push(point.zero_threshold);
    counts.push(point.zero_count);
    if let Some(positive) = &point.positive {
        for (k, &count) in positive.bucket_counts.iter().enumerate() {
            let index = positive.offset as i64 + k as i64;
            bounds.push(base.powf((index + 1) as f64));
            counts.push(count);
        }
    }
    counts.push(0);
    (bounds, counts)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    use super::*;

    fn string_kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
            ..Default::default()
        }
    }

    fn logs(service: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: service
                        .map(|s| string_kv("service.name", s))
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn log_rows_take_service_and_fall_back_to_observed_time() {
        let tenant = TenantId::new("t").unwrap();
        let record = LogRecord {
            observed_time_unix_nano: 42,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("hello".into())),
            }),
            ..Default::default()
        };
        let rows = log_rows(&tenant, &logs(Some("checkout"), vec![record.clone()]));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].service, "checkout");
        assert_eq!(rows[0].time_unix_nano, 42);
        assert_eq!(rows[0].body, AttrValue::Str("hello".into()));
        let rows = log_rows(&tenant, &logs(None, vec![record]));
        assert_eq!(rows[0].service, UNKNOWN_SERVICE);
    }

    #[test]
    fn retain_valid_logs_counts_and_drops_bad_ids() {
        let good = LogRecord {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let bad = LogRecord {
            trace_id: vec![1; 5],
            ..Default::default()
        };
        let checked = retain_valid_logs(&mut logs(None, vec![good.clone(), good.clone()]));
        assert_eq!((checked.accepted, checked.rejected), (2, 0));
        let mut request = logs(None, vec![good, bad]);
        let checked = retain_valid_logs(&mut request);
        assert_eq!((checked.accepted, checked.rejected), (1, 1));
        assert_eq!(
            checked.first_error.unwrap().to_string(),
            "log record 1: `trace_id` has 5 bytes, expected 16 or none"
        );
        assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }

    fn check_exponential(scale: i32, offset: i32, counts: &[u64], bounds: &[f64]) {
        let point = ExponentialHistogramDataPoint {
            scale,
            zero_count: 1,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts.to_vec(),
            }),
            ..Default::default()
        };
        let (got_bounds, got_counts) = exponential_buckets(&point);
        assert_eq!(got_bounds, bounds);
        let mut expected_counts = vec![1];
        expected_counts.extend_from_slice(counts);
        expected_counts.push(0);
        assert_eq!(got_counts, expected_counts);
    }

    #[test]
    fn exponential_buckets_become_explicit_bounds() {
        // scale 0: base 2, bucket i covers (2^i, 2^(i+1)].
        check_exponential(0, 0, &[3, 4], &[0.0, 2.0, 4.0]);
        check_exponential(0, -1, &[5], &[0.0, 1.0]);
        // scale 1: base sqrt(2).
        check_exponential(1, 2, &[1], &[0.0, 2f64.sqrt().powi(3)]);
    }
}
