//! The rows telemetry becomes: one per log record, per span, per metric data point.
//!
//! Rows are what the store buffers and what SQL sees. Every row carries its tenant, its
//! service (the resource's `service.name`, or `unknown_service`), a nanosecond timestamp and
//! its attributes.

use crate::TenantId;

/// An attribute value, as OTLP's `AnyValue` carries it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    Map(Attributes),
    /// An `AnyValue` with no value set.
    Empty,
}

impl AttrValue {
    /// The value as text: strings as they are, scalars printed, bytes as hex, arrays and maps
    /// as JSON. This is what a log body or a label becomes when a column wants a string.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => hex::encode(b),
            AttrValue::Empty => String::new(),
            AttrValue::Array(_) | AttrValue::Map(_) => self.to_json().to_string(),
        }
    }

    /// The value as JSON (bytes as hex strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Str(s) => Value::String(s.clone()),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Int(i) => Value::from(*i),
            AttrValue::Double(d) => {
                serde_json::Number::from_f64(*d).map_or(Value::String(d.to_string()), Value::Number)
            }
            AttrValue::Bytes(b) => Value::String(hex::encode(b)),
            AttrValue::Array(items) => Value::Array(items.iter().map(AttrValue::to_json).collect()),
            AttrValue::Map(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            AttrValue::Empty => Value::Null,
        }
    }
}

/// Attributes in the order they arrived (OTLP keys are unique; order is kept for fidelity).
pub type Attributes = Vec<(String, AttrValue)>;

/// One log record.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub tenant: TenantId,
    pub service: String,
    /// Event time in ns since the Unix epoch; the observed time when the event time is unset.
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: AttrValue,
    /// 16 bytes, or empty when the record is not part of a trace.
    pub trace_id: Vec<u8>,
    /// 8 bytes, or empty.
    pub span_id: Vec<u8>,
    pub flags: u32,
    pub event_name: String,
    pub attributes: Attributes,
    pub resource_attributes: Attributes,
    pub scope_name: String,
    pub scope_version: String,
}

/// One span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRow {
    pub tenant: TenantId,
    pub service: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub trace_state: String,
    pub name: String,
    /// OTLP `SpanKind` number (0 unspecified, 1 internal, 2 server, 3 client, 4 producer,
    /// 5 consumer).
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    pub status_message: String,
    pub attributes: Attributes,
    pub resource_attributes: Attributes,
    pub scope_name: String,
    pub scope_version: String,
    /// Span events as (time, name, attributes).
    pub events: Vec<(u64, String, Attributes)>,
    /// Span links as (trace id, span id, attributes).
    pub links: Vec<(Vec<u8>, Vec<u8>, Attributes)>,
}

/// Which OTLP metric type a row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub const ALL: [MetricKind; 5] = [
        MetricKind::Gauge,
        MetricKind::Sum,
        MetricKind::Histogram,
        MetricKind::ExponentialHistogram,
        MetricKind::Summary,
    ];

    /// The kind named by [`MetricKind::as_str`].
    pub fn from_name(name: &str) -> Option<MetricKind> {
        MetricKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// One metric data point (a "sample"). Which fields are set depends on `kind`; see
/// ARCHITECTURE.md for the mapping of each OTLP metric type.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub tenant: TenantId,
    pub service: String,
    pub name: String,
    pub description: String,
    pub unit: String,
    pub kind: MetricKind,
    pub time_unix_nano: u64,
    pub start_time_unix_nano: u64,
    /// Gauge and sum: the point's value (integers widened to f64). Histograms and summaries:
    /// the sum of observations when known.
    pub value: Option<f64>,
    /// Histograms and summaries: number of observations.
    pub count: Option<u64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Histograms: upper bounds of the finite buckets (explicit, or derived from an exponential
    /// histogram's scale and offset). `bucket_counts` has one more entry (the `+Inf` bucket).
    pub bucket_bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    /// Summaries: (quantile, value) pairs.
    pub quantiles: Vec<(f64, f64)>,
    /// OTLP aggregation temporality (0 unspecified, 1 delta, 2 cumulative); 0 for gauges and
    /// summaries.
    pub temporality: i32,
    pub is_monotonic: bool,
    pub flags: u32,
    pub attributes: Attributes,
    pub resource_attributes: Attributes,
    pub scope_name: String,
    pub scope_version: String,
}
