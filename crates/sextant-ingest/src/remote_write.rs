//! Prometheus remote_write 1.0: the snappy-compressed `WriteRequest` protobuf, decoded and
//! turned into an OTLP metrics request for the ingest pipeline.
//!
//! Mapping (also in ARCHITECTURE.md):
//! - a series' `__name__` is the metric name; its other labels are the data point's attributes,
//!   `job` is also the resource's `service.name` and `instance` its `service.instance.id`;
//! - the metric type comes from the metadata Prometheus sends (remembered per tenant by
//!   [`PromState`]): counters, and the `_bucket`/`_sum`/`_count` series of histograms and
//!   summaries, become cumulative monotonic sums; everything else a gauge. Before metadata for
//!   a family has arrived, names ending in `_total`, `_bucket`, `_sum` or `_count` are taken as
//!   counters;
//! - a cumulative sum's start time is when the series was first seen, and moves to the sample
//!   whose value dropped (a counter reset);
//! - Prometheus's stale marker (a NaN with the bits `0x7ff0000000000002`) becomes a data point
//!   with no value and OTLP's "no recorded value" flag, and forgets the series' reset state;
//! - exemplars ride on the data point of their series at the same time when there is one
//!   (`trace_id` and `span_id` labels as the exemplar's ids); others are counted and dropped;
//! - metadata's help and unit become the metric's description and unit.
//!
//! A series without a valid `__name__`, with an invalid or repeated label name, or with a
//! negative timestamp is rejected on its own and named in the answer; the others are kept.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    self as otlp, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::convert::string_attribute as text_attribute;

/// The `WriteRequest` message of remote_write 1.0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, 6 info,
    /// 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The bits of Prometheus's stale marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// OTLP's `FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;
/// Metric families whose metadata one tenant's state keeps.
const MAX_FAMILIES: usize = 100_000;
/// Counter series whose last value one tenant's state keeps; past it the state starts afresh
/// (start times then restart at the next sample).
const MAX_SERIES: usize = 2_000_000;

/// Decompresses (snappy, block format) and decodes a remote_write body. `max_bytes` bounds the
/// decompressed size, which is checked before anything is allocated.
pub fn decode(body: &[u8], max_bytes: usize) -> Result<WriteRequest, String> {
    let raw = crate::convert::unsnappy(body, max_bytes)?;
    <WriteRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| format!("not a remote_write WriteRequest: {e}"))
}

/// What a metric family is, from metadata or from its name.
#[derive(Clone, Debug, PartialEq)]
struct Family {
    counter_like: bool,
    help: String,
    unit: String,
}

/// What one tenant's remote_write traffic has taught: metric metadata and each counter's last
/// value and start time.
#[derive(Debug, Default)]
pub struct PromState {
    families: HashMap<String, Family>,
    counters: HashMap<u64, Counter, foldhash::fast::FixedState>,
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    last: f64,
    start_ns: u64,
}

/// One request turned into OTLP, with its counts.
#[derive(Debug, Default)]
pub struct Converted {
    pub request: ExportMetricsServiceRequest,
    /// Samples taken (stale markers included).
    pub samples: usize,
    pub stale_markers: usize,
    pub exemplars: usize,
    /// Exemplars without a sample of their series at their time, not kept.
    pub exemplars_dropped: usize,
    pub metadata: usize,
    /// Series refused, and why the first few were.
    pub rejected_series: usize,
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 10;

impl PromState {
    /// Metric families known from metadata.
    pub fn families(&self) -> usize {
        self.families.len()
    }

    /// Turns one request into an OTLP metrics request, learning its metadata and counters.
    pub fn convert(&mut self, write: WriteRequest) -> Converted {
        let mut out = Converted::default();
        for m in write.metadata {
            out.metadata += 1;
            if self.families.len() >= MAX_FAMILIES
                && !self.families.contains_key(&m.metric_family_name)
            {
                continue;
            }
            let counter_like = matches!(m.r#type, 1 | 3 | 4 | 5);
            self.families.insert(
                m.metric_family_name,
                Family {
                    counter_like,
                    help: m.help,
                    unit: m.unit,
                },
            );
        }
        if self.counters.len() > MAX_SERIES {
            self.counters.clear();
        }
        let mut builder = Builder::default();
        for series in write.timeseries {
            if let Err(why) = self.add_series(series, &mut builder, &mut out) {
                out.rejected_series += 1;
                if out.problems.len() < MAX_PROBLEMS {
                    out.problems.push(why);
                }
            }
        }
        out.request = builder.finish();
        out
    }

    fn family(&self, name: &str) -> Option<&Family> {
        if let Some(f) = self.families.get(name) {
            return Some(f);
        }
        ["_bucket", "_sum", "_count", "_total", "_created"]
            .iter()
            .find_map(|suffix| {
                let f = self.families.get(name.strip_suffix(suffix)?)?;
                // A histogram's or summary's parts are counters; a gauge's `_count` is not a
                // part of it.
                f.counter_like.then_some(f)
            })
    }

    fn add_series(
        &mut self,
        series: TimeSeries,
        builder: &mut Builder,
        out: &mut Converted,
    ) -> Result<(), String> {
        let mut name = None;
        let mut job = String::new();
        let mut instance = String::new();
        let mut attributes = Vec::with_capacity(series.labels.len());
        let mut hasher = foldhash::fast::FixedState::default().build_hasher();
        for (i, label) in series.labels.iter().enumerate() {
            if !valid_label_name(&label.name) {
                return Err(format!("label name `{}` is not valid", label.name));
            }
            if series.labels[..i].iter().any(|l| l.name == label.name) {
                return Err(format!("label `{}` appears twice", label.name));
            }
            label.name.hash(&mut hasher);
            label.value.hash(&mut hasher);
            if label.value.is_empty() {
                continue;
            }
            match label.name.as_str() {
                "__name__" => {
                    name = Some(label.value.clone());
                    continue;
                }
                "job" => job.clone_from(&label.value),
                "instance" => instance.clone_from(&label.value),
                _ => {}
            }
            attributes.push(text_attribute(&label.name, &label.value));
        }
        let Some(name) = name.filter(|n| valid_metric_name(n)) else {
            return Err("a series has no valid `__name__`".into());
        };
        if let Some(s) = series.samples.iter().find(|s| s.timestamp < 0) {
            return Err(format!("`{name}`: timestamp {} is negative", s.timestamp));
        }
        let family = self.family(&name).cloned();
        let counter = family.as_ref().map_or_else(
            || {
                ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.ends_with(s))
            },
            |f| f.counter_like,
        );
        let key = hasher.finish();
        let mut points = Vec::with_capacity(series.samples.len());
        for sample in &series.samples {
            let time_ns = sample.timestamp as u64 * 1_000_000;
            out.samples += 1;
            let stale = sample.value.to_bits() == STALE_NAN;
            let mut start_ns = 0;
            if stale {
                out.stale_markers += 1;
                self.counters.remove(&key);
            } else if counter {
                let state = self.counters.entry(key).or_insert(Counter {
                    last: sample.value,
                    start_ns: time_ns,
                });
                if sample.value < state.last {
                    state.start_ns = time_ns;
                }
                state.last = sample.value;
                start_ns = state.start_ns;
            }
            points.push(NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start_ns,
                time_unix_nano: time_ns,
                exemplars: Vec::new(),
                flags: if stale { NO_RECORDED_VALUE } else { 0 },
                value: (!stale).then_some(number_data_point::Value::AsDouble(sample.value)),
            });
        }
        for e in series.exemplars {
            out.exemplars += 1;
            let time_ns = e.timestamp.max(0) as u64 * 1_000_000;
            let Some(point) = points.iter_mut().find(|p| p.time_unix_nano == time_ns) else {
                out.exemplars_dropped += 1;
                continue;
            };
            point.exemplars.push(exemplar_of(e, time_ns));
        }
        if !points.is_empty() {
            builder.add(&job, &instance, &name, counter, family.as_ref(), points);
        }
        Ok(())
    }
}

fn exemplar_of(e: Exemplar, time_ns: u64) -> otlp::Exemplar {
    let mut trace_id = Vec::new();
    let mut span_id = Vec::new();
    let mut filtered_attributes = Vec::new();
    for label in e.labels {
        match (label.name.as_str(), hex_bytes(&label.value)) {
            ("trace_id", Some(bytes)) if bytes.len() == 16 => trace_id = bytes,
            ("span_id", Some(bytes)) if bytes.len() == 8 => span_id = bytes,
            _ => filtered_attributes.push(text_attribute(&label.name, &label.value)),
        }
    }
    otlp::Exemplar {
        filtered_attributes,
        time_unix_nano: time_ns,
        span_id,
        trace_id,
        value: Some(exemplar::Value::AsDouble(e.value)),
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Groups data points into resources (job, instance) and metrics (name).
#[derive(Default)]
struct Builder {
    resources: Vec<ResourceMetrics>,
    by_resource: HashMap<(String, String), usize>,
    by_metric: HashMap<(usize, String), usize>,
}

impl Builder {
    fn add(
        &mut self,
        job: &str,
        instance: &str,
        name: &str,
        counter: bool,
        family: Option<&Family>,
        points: Vec<NumberDataPoint>,
    ) {
        let resource = match self.by_resource.get(&(job.to_owned(), instance.to_owned())) {
            Some(&i) => i,
            None => {
                let mut attributes = Vec::new();
                if !job.is_empty() {
                    attributes.push(text_attribute("service.name", job));
                }
                if !instance.is_empty() {
                    attributes.push(text_attribute("service.instance.id", instance));
                }
                self.resources.push(ResourceMetrics {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics::default()],
                    schema_url: String::new(),
                });
                let i = self.resources.len() - 1;
                self.by_resource
                    .insert((job.to_owned(), instance.to_owned()), i);
                i
            }
        };
        let metrics = &mut self.resources[resource].scope_metrics[0].metrics;
        let index = *self
            .by_metric
            .entry((resource, name.to_owned()))
            .or_insert_with(|| {
                metrics.push(Metric {
                    name: name.to_owned(),
                    description: family.map(|f| f.help.clone()).unwrap_or_default(),
                    unit: family.map(|f| f.unit.clone()).unwrap_or_default(),
                    metadata: Vec::new(),
                    data: Some(if counter {
                        metric::Data::Sum(otlp::Sum {
                            data_points: Vec::new(),
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })
                    } else {
                        metric::Data::Gauge(otlp::Gauge {
                            data_points: Vec::new(),
                        })
                    }),
                });
                metrics.len() - 1
            });
        match &mut metrics[index].data {
            Some(metric::Data::Sum(sum)) => sum.data_points.extend(points),
            Some(metric::Data::Gauge(gauge)) => gauge.data_points.extend(points),
            _ => {}
        }
    }

    fn finish(self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: self.resources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            exemplars: Vec::new(),
        }
    }

    fn points(request: &ExportMetricsServiceRequest, name: &str) -> Vec<NumberDataPoint> {
        let mut found = Vec::new();
        for r in &request.resource_metrics {
            for m in &r.scope_metrics[0].metrics {
                if m.name == name {
                    match &m.data {
                        Some(metric::Data::Sum(s)) => found.extend(s.data_points.clone()),
                        Some(metric::Data::Gauge(g)) => found.extend(g.data_points.clone()),
                        _ => {}
                    }
                }
            }
        }
        found
    }

    fn is_sum(request: &ExportMetricsServiceRequest, name: &str) -> bool {
        request.resource_metrics.iter().any(|r| {
            r.scope_metrics[0]
                .metrics
                .iter()
                .any(|m| m.name == name && matches!(m.data, Some(metric::Data::Sum(_))))
        })
    }

    #[test]
    fn a_snappy_body_decodes_and_limits_hold() {
        let write = WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1000)])],
            metadata: Vec::new(),
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&write.encode_to_vec())
            .unwrap();
        assert_eq!(decode(&body, 1 << 20).unwrap(), write);
        assert!(decode(&body, 4).unwrap_err().contains("over the limit"));
        assert!(
            decode(b"\xff\xff\xff\xff\xff\xff", 1 << 20)
                .unwrap_err()
                .contains("snappy")
        );
        let not_proto = snap::raw::Encoder::new().compress_vec(b"\xff\xff").unwrap();
        assert!(
            decode(&not_proto, 1 << 20)
                .unwrap_err()
                .contains("WriteRequest")
        );
    }

    #[test]
    fn samples_map_to_points_with_resources_kinds_and_resets() {
        let mut state = PromState::default();
        let labels = [
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("instance", "h1:9100"),
            ("job", "api"),
        ];
        let c = state.convert(WriteRequest {
            timeseries: vec![
                series(&labels, &[(10.0, 1_000), (20.0, 2_000)]),
                series(
                    &[
                        ("__name__", "temp"),
                        ("job", "api"),
                        ("instance", "h1:9100"),
                    ],
                    &[(21.5, 1_000)],
                ),
            ],
            metadata: Vec::new(),
        });
        assert_eq!((c.samples, c.rejected_series), (3, 0));
        assert_eq!(c.request.resource_metrics.len(), 1);
        let resource = c.request.resource_metrics[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = resource.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["service.name", "service.instance.id"]);
        assert!(is_sum(&c.request, "http_requests_total"));
        assert!(!is_sum(&c.request, "temp"));
        let p = points(&c.request, "http_requests_total");
        assert_eq!(p[0].start_time_unix_nano, 1_000_000_000);
        assert_eq!(p[1].time_unix_nano, 2_000_000_000);
        assert_eq!(p[0].attributes.len(), 3, "code, instance and job");
        // A drop is a reset: the start time moves to it; later samples keep it.
        let c = state.convert(WriteRequest {
            timeseries: vec![series(&labels, &[(3.0, 3_000), (4.0, 4_000)])],
            metadata: Vec::new(),
        });
        let p = points(&c.request, "http_requests_total");
        assert_eq!(p[0].start_time_unix_nano, 3_000_000_000);
        assert_eq!(p[1].start_time_unix_nano, 3_000_000_000);
        // A stale marker: a point without a value, flagged; the series then starts afresh.
        let c = state.convert(WriteRequest {
            timeseries: vec![series(
                &labels,
                &[(f64::from_bits(STALE_NAN), 5_000), (7.0, 6_000)],
            )],
            metadata: Vec::new(),
        });
        let p = points(&c.request, "http_requests_total");
        assert_eq!(c.stale_markers, 1);
        assert_eq!((p[0].value, p[0].flags), (None, NO_RECORDED_VALUE));
        assert_eq!(p[1].start_time_unix_nano, 6_000_000_000);
    }

    #[test]
    fn metadata_decides_the_kind_and_describes_the_metric() {
        let mut state = PromState::default();
        let meta = |name: &str, kind: i32| MetricMetadata {
            r#type: kind,
            metric_family_name: name.into(),
            help: format!("{name} help"),
            unit: "seconds".into(),
        };
        let c = state.convert(WriteRequest {
            timeseries: Vec::new(),
            metadata: vec![
                meta("queue_depth_total", 2),
                meta("rpc_duration_seconds", 3),
                meta("jobs_count", 2),
            ],
        });
        assert_eq!((c.metadata, state.families()), (3, 3));
        let c = state.convert(WriteRequest {
            timeseries: vec![
                series(&[("__name__", "queue_depth_total")], &[(5.0, 1)]),
                series(
                    &[("__name__", "rpc_duration_seconds_bucket"), ("le", "0.5")],
                    &[(5.0, 1)],
                ),
                series(&[("__name__", "rpc_duration_seconds_count")], &[(5.0, 1)]),
                series(&[("__name__", "jobs_count")], &[(5.0, 1)]),
            ],
            metadata: Vec::new(),
        });
        assert!(!is_sum(&c.request, "queue_depth_total"), "a gauge says so");
        assert!(is_sum(&c.request, "rpc_duration_seconds_bucket"));
        assert!(is_sum(&c.request, "rpc_duration_seconds_count"));
        assert!(!is_sum(&c.request, "jobs_count"));
        let metric = &c.request.resource_metrics[0].scope_metrics[0].metrics[1];
        assert_eq!(
            (metric.description.as_str(), metric.unit.as_str()),
            ("rpc_duration_seconds help", "seconds")
        );
    }

    #[test]
    fn bad_series_are_refused_alone_and_exemplars_ride_on_points() {
        let mut state = PromState::default();
        let mut with_exemplar = series(&[("__name__", "latency_bucket")], &[(1.0, 1_000)]);
        with_exemplar.exemplars = vec![
            Exemplar {
                labels: vec![
                    Label {
                        name: "trace_id".into(),
                        value: "0af7651916cd43dd8448eb211c80319c".into(),
                    },
                    Label {
                        name: "span_id".into(),
                        value: "b7ad6b7169203331".into(),
                    },
                ],
                value: 0.42,
                timestamp: 1_000,
            },
            Exemplar {
                labels: Vec::new(),
                value: 0.1,
                timestamp: 9_000,
            },
        ];
        let c = state.convert(WriteRequest {
            timeseries: vec![
                series(&[("job", "x")], &[(1.0, 1)]),
                series(&[("__name__", "9lives")], &[(1.0, 1)]),
                series(&[("__name__", "ok"), ("a-b", "1")], &[(1.0, 1)]),
                series(&[("__name__", "ok"), ("a", "1"), ("a", "2")], &[(1.0, 1)]),
                series(&[("__name__", "ok")], &[(1.0, -5)]),
                with_exemplar,
            ],
            metadata: Vec::new(),
        });
        assert_eq!(c.rejected_series, 5);
        assert!(c.problems[2].contains("`a-b`"), "{:?}", c.problems);
        assert!(c.problems[3].contains("twice"));
        assert!(c.problems[4].contains("negative"));
        let p = points(&c.request, "latency_bucket");
        assert_eq!(p.len(), 1);
        assert_eq!((c.exemplars, c.exemplars_dropped), (2, 1));
        assert_eq!(p[0].exemplars[0].trace_id.len(), 16);
        assert_eq!(p[0].exemplars[0].span_id.len(), 8);
    }
}
