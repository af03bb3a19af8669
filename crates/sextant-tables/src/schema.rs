//! Arrow schemas of every table (`logs`, `spans` and `metrics`, and `templates`, `events` and
//! `incidents`), and the conversion of rows (or a logged OTLP request) into record batches of
//! the telemetry tables and of events.
//!
//! Conventions shared by the three tables:
//! - [`TIME_COLUMN`] and every other timestamp are `Timestamp(Nanosecond, "UTC")`, non-null;
//!   times past `i64::MAX` ns (year 2262) are clamped to it.
//! - Ids (`trace_id`, `span_id`, `parent_span_id`) are lowercase hex, `""` when absent.
//! - Attributes are `Map<Utf8, Utf8>`: each value as [`AttrValue::to_text`] (arrays and maps as
//!   JSON), null for a value that is not set ([`AttrValue::Empty`]).
//! - There is no `tenant` column: storage is per tenant.
//!
//! This is on the ingest path: each column is built in one pass with builders sized up front,
//! and scalar values are written straight into the builders rather than through a `String`.

use std::fmt::{Display, Write as _};
use std::io::Write as _;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Array, Float64Builder, Int32Array, Int64Array, ListBuilder,
    MapBuilder, StringArray, StringBuilder, TimestampNanosecondArray, UInt32Array, UInt64Array,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sextant_model::{
    AttrValue, Attributes, LogRow, MetricRow, Signal, SpanRow, Table, TenantId, otlp,
};

/// The timestamp column every table has: when the row happened.
pub const TIME_COLUMN: &str = "time";

/// The `logs` column that holds each row's template id.
pub const TEMPLATE_ID_COLUMN: &str = "template_id";

/// The time zone of every timestamp column.
pub const UTC: &str = "UTC";

/// The schema of `table`'s record batches (built once, then shared).
pub fn schema(table: Table) -> SchemaRef {
    static LOGS: LazyLock<SchemaRef> = LazyLock::new(log_schema);
    static SPANS: LazyLock<SchemaRef> = LazyLock::new(span_schema);
    static METRICS: LazyLock<SchemaRef> = LazyLock::new(metric_schema);
    static TEMPLATES: LazyLock<SchemaRef> = LazyLock::new(template_schema);
    static EVENTS: LazyLock<SchemaRef> = LazyLock::new(event_schema);
    static INCIDENTS: LazyLock<SchemaRef> = LazyLock::new(incident_schema);
    match table {
        Table::Logs => Arc::clone(&LOGS),
        Table::Spans => Arc::clone(&SPANS),
        Table::Metrics => Arc::clone(&METRICS),
        Table::Templates => Arc::clone(&TEMPLATES),
        Table::Events => Arc::clone(&EVENTS),
        Table::Incidents => Arc::clone(&INCIDENTS),
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into()))
}

/// `Map<Utf8, Utf8>` with the field names and nullability [`MapBuilder`] produces by default.
fn attributes_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// `List<T>` with the item field [`ListBuilder`] produces by default.
fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

fn non_null(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

fn log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TIME_COLUMN, timestamp_type()),
        non_null("observed_time", timestamp_type()),
        non_null("service", DataType::Utf8),
        non_null("severity_number", DataType::Int32),
        non_null("severity_text", DataType::Utf8),
        non_null("body", DataType::Utf8),
        non_null("trace_id", DataType::Utf8),
        non_null("span_id", DataType::Utf8),
        non_null("flags", DataType::UInt32),
        non_null("event_name", DataType::Utf8),
        non_null("attributes", attributes_type()),
        non_null("resource_attributes", attributes_type()),
        non_null("scope_name", DataType::Utf8),
        non_null("scope_version", DataType::Utf8),
        // The body's log template, set by the store as rows are committed (null before that,
        // and in segments written before templates were mined).
        Field::new(TEMPLATE_ID_COLUMN, DataType::UInt64, true),
    ]))
}

/// One row per template, once however many ids merged into it: `ids` are the ids whose log
/// rows count for it (its own first, then those merged into it), so logs join through
/// `unnest(ids)`. Counts and times are since the tenant's miner started, merged ids' included.
fn template_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TEMPLATE_ID_COLUMN, DataType::UInt64),
        non_null("ids", list_type(DataType::UInt64)),
        non_null("template", DataType::Utf8),
        non_null("count", DataType::UInt64),
        non_null("first_seen", timestamp_type()),
        non_null("last_seen", timestamp_type()),
        non_null("example", DataType::Utf8),
    ]))
}

/// One row per event (anomaly, capacity warning, alert); `labels`, `details` (the structured
/// explanation) and `decision` (what the correlator did with it) are JSON text; `feedback` is
/// the last verdict given, if any; `count` and `last_seen` sum up an alert's repeats.
fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TIME_COLUMN, timestamp_type()),
        non_null("id", DataType::Utf8),
        non_null("kind", DataType::Utf8),
        non_null("source", DataType::Utf8),
        non_null("service", DataType::Utf8),
        non_null("severity", DataType::Utf8),
        non_null("title", DataType::Utf8),
        non_null("summary", DataType::Utf8),
        non_null("fingerprint", DataType::Utf8),
        non_null("status", DataType::Utf8),
        non_null("labels", DataType::Utf8),
        non_null("details", DataType::Utf8),
        Field::new("feedback", DataType::Utf8, true),
        non_null("count", DataType::UInt64),
        non_null("last_seen", timestamp_type()),
        Field::new("decision", DataType::Utf8, true),
    ]))
}

/// The `events` batch of `events` (each with its feedback).
pub fn event_batch(events: &[(sextant_model::Event, Option<String>)]) -> RecordBatch {
    let text = |f: &dyn Fn(&sextant_model::Event) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|(e, _)| f(e)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from_iter_values(
                events.iter().map(|(e, _)| e.time_unix_nano),
            )
            .with_timezone(UTC),
        ),
        text(&|e| e.id.clone()),
        text(&|e| e.kind.as_str().to_owned()),
        text(&|e| e.source.clone()),
        text(&|e| e.service.clone()),
        text(&|e| e.severity.clone()),
        text(&|e| e.title.clone()),
        text(&|e| e.summary.clone()),
        text(&|e| e.fingerprint.clone()),
        text(&|e| e.status.clone()),
        text(&|e| serde_json::to_string(&e.labels).unwrap_or_default()),
        text(&|e| e.details.to_string()),
        Arc::new(StringArray::from_iter(
            events.iter().map(|(_, f)| f.clone()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            events.iter().map(|(e, _)| e.count),
        )),
        Arc::new(
            TimestampNanosecondArray::from_iter_values(
                events.iter().map(|(e, _)| e.last_seen_unix_nano),
            )
            .with_timezone(UTC),
        ),
        Arc::new(StringArray::from_iter(
            events
                .iter()
                .map(|(e, _)| e.decision.as_ref().map(|d| d.to_string())),
        )),
    ];
    RecordBatch::try_new(schema(Table::Events), columns)
        .expect("the events columns match their schema")
}

/// One row per incident: `time` is when it opened; `services` and `body` (the whole incident:
/// members with their reasons, timeline) are JSON text.
fn incident_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TIME_COLUMN, timestamp_type()),
        non_null("id", DataType::UInt64),
        non_null("status", DataType::Utf8),
        non_null("title", DataType::Utf8),
        non_null("severity", DataType::Utf8),
        non_null("updated_at", timestamp_type()),
        Field::new("resolved_at", timestamp_type(), true),
        non_null("services", DataType::Utf8),
        non_null("members", DataType::UInt64),
        non_null("notifications", DataType::UInt64),
        non_null("body", DataType::Utf8),
    ]))
}

fn span_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TIME_COLUMN, timestamp_type()),
        non_null("end_time", timestamp_type()),
        non_null("duration_ns", DataType::Int64),
        non_null("service", DataType::Utf8),
        non_null("trace_id", DataType::Utf8),
        non_null("span_id", DataType::Utf8),
        non_null("parent_span_id", DataType::Utf8),
        non_null("trace_state", DataType::Utf8),
        non_null("name", DataType::Utf8),
        non_null("kind", DataType::Int32),
        non_null("status_code", DataType::Int32),
        non_null("status_message", DataType::Utf8),
        non_null("attributes", attributes_type()),
        non_null("resource_attributes", attributes_type()),
        non_null("scope_name", DataType::Utf8),
        non_null("scope_version", DataType::Utf8),
        non_null("events", DataType::Utf8),
        non_null("links", DataType::Utf8),
    ]))
}

fn metric_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        non_null(TIME_COLUMN, timestamp_type()),
        non_null("start_time", timestamp_type()),
        non_null("service", DataType::Utf8),
        non_null("name", DataType::Utf8),
        non_null("description", DataType::Utf8),
        non_null("unit", DataType::Utf8),
        non_null("kind", DataType::Utf8),
        Field::new("value", DataType::Float64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        non_null("bucket_bounds", list_type(DataType::Float64)),
        non_null("bucket_counts", list_type(DataType::UInt64)),
        non_null("quantiles", list_type(DataType::Float64)),
        non_null("quantile_values", list_type(DataType::Float64)),
        non_null("temporality", DataType::Int32),
        non_null("is_monotonic", DataType::Boolean),
        non_null("flags", DataType::UInt32),
        non_null("attributes", attributes_type()),
        non_null("resource_attributes", attributes_type()),
        non_null("scope_name", DataType::Utf8),
        non_null("scope_version", DataType::Utf8),
    ]))
}

/// The `logs` batch of `rows`, in the column order of `schema(Table::Logs)`.
pub fn log_batch(rows: &[LogRow]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        timestamps(rows, |r| r.time_unix_nano),
        timestamps(rows, |r| r.observed_time_unix_nano),
        strings(rows, |r| r.service.as_str()),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.severity_number),
        )),
        strings(rows, |r| r.severity_text.as_str()),
        bodies(rows),
        hex_ids(rows, |r| r.trace_id.as_slice()),
        hex_ids(rows, |r| r.span_id.as_slice()),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.flags))),
        strings(rows, |r| r.event_name.as_str()),
        attribute_maps(rows, |r| &r.attributes),
        attribute_maps(rows, |r| &r.resource_attributes),
        strings(rows, |r| r.scope_name.as_str()),
        strings(rows, |r| r.scope_version.as_str()),
        arrow::array::new_null_array(&DataType::UInt64, rows.len()),
    ];
    batch(Table::Logs, columns)
}

/// The `spans` batch of `rows`, in the column order of `schema(Table::Spans)`.
pub fn span_batch(rows: &[SpanRow]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        timestamps(rows, |r| r.start_time_unix_nano),
        timestamps(rows, |r| r.end_time_unix_nano),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| {
            // Both are in 0..=i64::MAX, so the difference cannot overflow.
            (clamp_time(r.end_time_unix_nano) - clamp_time(r.start_time_unix_nano)).max(0)
        }))),
        strings(rows, |r| r.service.as_str()),
        hex_ids(rows, |r| r.trace_id.as_slice()),
        hex_ids(rows, |r| r.span_id.as_slice()),
        hex_ids(rows, |r| r.parent_span_id.as_slice()),
        strings(rows, |r| r.trace_state.as_str()),
        strings(rows, |r| r.name.as_str()),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.kind))),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.status_code),
        )),
        strings(rows, |r| r.status_message.as_str()),
        attribute_maps(rows, |r| &r.attributes),
        attribute_maps(rows, |r| &r.resource_attributes),
        strings(rows, |r| r.scope_name.as_str()),
        strings(rows, |r| r.scope_version.as_str()),
        json_arrays(
            rows,
            |r| r.events.as_slice(),
            |out, (time, name, attributes)| {
                write!(out, "{{\"time\":{},\"name\":", clamp_time(*time)).expect(VEC_WRITE);
                json_string(out, name);
                out.extend_from_slice(b",\"attributes\":");
                json_object(out, attributes);
                out.push(b'}');
            },
        ),
        json_arrays(
            rows,
            |r| r.links.as_slice(),
            |out, (trace_id, span_id, attributes)| {
                out.extend_from_slice(b"{\"trace_id\":\"");
                push_hex(out, trace_id);
                out.extend_from_slice(b"\",\"span_id\":\"");
                push_hex(out, span_id);
                out.extend_from_slice(b"\",\"attributes\":");
                json_object(out, attributes);
                out.push(b'}');
            },
        ),
    ];
    batch(Table::Spans, columns)
}

/// The `metrics` batch of `rows`, in the column order of `schema(Table::Metrics)`.
pub fn metric_batch(rows: &[MetricRow]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        timestamps(rows, |r| r.time_unix_nano),
        timestamps(rows, |r| r.start_time_unix_nano),
        strings(rows, |r| r.service.as_str()),
        strings(rows, |r| r.name.as_str()),
        strings(rows, |r| r.description.as_str()),
        strings(rows, |r| r.unit.as_str()),
        strings(rows, |r| r.kind.as_str()),
        Arc::new(rows.iter().map(|r| r.value).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.count).collect::<UInt64Array>()),
        Arc::new(rows.iter().map(|r| r.min).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.max).collect::<Float64Array>()),
        float_lists(
            rows,
            |r| r.bucket_bounds.len(),
            |r, values| {
                values.append_slice(&r.bucket_bounds);
            },
        ),
        {
            let total = rows.iter().map(|r| r.bucket_counts.len()).sum();
            let mut builder =
                ListBuilder::with_capacity(UInt64Builder::with_capacity(total), rows.len());
            for row in rows {
                builder.values().append_slice(&row.bucket_counts);
                builder.append(true);
            }
            Arc::new(builder.finish())
        },
        float_lists(
            rows,
            |r| r.quantiles.len(),
            |r, values| {
                r.quantiles
                    .iter()
                    .for_each(|&(q, _)| values.append_value(q));
            },
        ),
        float_lists(
            rows,
            |r| r.quantiles.len(),
            |r, values| {
                r.quantiles
                    .iter()
                    .for_each(|&(_, v)| values.append_value(v));
            },
        ),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.temporality),
        )),
        {
            let mut builder = BooleanBuilder::with_capacity(rows.len());
            rows.iter()
                .for_each(|r| builder.append_value(r.is_monotonic));
            Arc::new(builder.finish())
        },
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.flags))),
        attribute_maps(rows, |r| &r.attributes),
        attribute_maps(rows, |r| &r.resource_attributes),
        strings(rows, |r| r.scope_name.as_str()),
        strings(rows, |r| r.scope_version.as_str()),
    ];
    batch(Table::Metrics, columns)
}

/// A logged payload that is not the OTLP protobuf export request of its signal.
#[derive(Debug, thiserror::Error)]
#[error("{signal} export request: {source}")]
pub struct PayloadError {
    pub signal: Signal,
    #[source]
    pub source: prost::DecodeError,
}

/// Decodes an OTLP protobuf export request of `signal` (as the write-ahead log stores it)
/// into the batch of the signal's table ([`Table::of`]). Fails when `payload` is not such a
/// request.
pub fn batch_from_payload(
    tenant: &TenantId,
    signal: Signal,
    payload: &[u8],
) -> Result<RecordBatch, PayloadError> {
    let decode_error = |source: prost::DecodeError| PayloadError { signal, source };
    Ok(match signal {
        Signal::Logs => {
            let request = ExportLogsServiceRequest::decode(payload).map_err(decode_error)?;
            log_batch(&otlp::log_rows(tenant, &request))
        }
        Signal::Traces => {
            let request = ExportTraceServiceRequest::decode(payload).map_err(decode_error)?;
            span_batch(&otlp::span_rows(tenant, &request))
        }
        Signal::Metrics => {
            let request = ExportMetricsServiceRequest::decode(payload).map_err(decode_error)?;
            metric_batch(&otlp::metric_rows(tenant, &request))
        }
    })
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema(table), columns)
        .unwrap_or_else(|e| panic!("`{table}` columns do not match the schema: {e}"))
}

const VEC_WRITE: &str = "writing to a Vec cannot fail";
const BUILDER_WRITE: &str = "writing to a string builder cannot fail";

/// Nanoseconds since the epoch as Arrow stores them: clamped to `i64::MAX`.
fn clamp_time(unix_nano: u64) -> i64 {
    i64::try_from(unix_nano).unwrap_or(i64::MAX)
}

fn timestamps<R>(rows: &[R], time: impl Fn(&R) -> u64) -> ArrayRef {
    Arc::new(
        TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| clamp_time(time(r))))
            .with_timezone(UTC),
    )
}

fn strings<R>(rows: &[R], value: impl Fn(&R) -> &str) -> ArrayRef {
    let bytes = rows.iter().map(|r| value(r).len()).sum();
    let mut builder = StringBuilder::with_capacity(rows.len(), bytes);
    rows.iter().for_each(|r| builder.append_value(value(r)));
    Arc::new(builder.finish())
}

fn hex_ids<R>(rows: &[R], id: impl Fn(&R) -> &[u8]) -> ArrayRef {
    let bytes = rows.iter().map(|r| 2 * id(r).len()).sum();
    let mut builder = StringBuilder::with_capacity(rows.len(), bytes);
    for row in rows {
        write_hex(&mut builder, id(row));
        builder.append_value("");
    }
    Arc::new(builder.finish())
}

fn bodies(rows: &[LogRow]) -> ArrayRef {
    let bytes = rows.iter().map(|r| text_len_estimate(&r.body)).sum();
    let mut builder = StringBuilder::with_capacity(rows.len(), bytes);
    rows.iter().for_each(|r| append_text(&mut builder, &r.body));
    Arc::new(builder.finish())
}

fn attribute_maps<R>(rows: &[R], attributes: impl Fn(&R) -> &Attributes) -> ArrayRef {
    let (mut entries, mut key_bytes, mut value_bytes) = (0, 0, 0);
    for (key, value) in rows.iter().flat_map(&attributes) {
        entries += 1;
        key_bytes += key.len();
        value_bytes += text_len_estimate(value);
    }
    let mut builder = MapBuilder::with_capacity(
        None,
        StringBuilder::with_capacity(entries, key_bytes),
        StringBuilder::with_capacity(entries, value_bytes),
        rows.len(),
    );
    for row in rows {
        for (key, value) in attributes(row) {
            builder.keys().append_value(key);
            match value {
                AttrValue::Empty => builder.values().append_null(),
                value => append_text(builder.values(), value),
            }
        }
        builder
            .append(true)
            .expect("keys and values are appended in pairs");
    }
    Arc::new(builder.finish())
}

fn float_lists<R>(
    rows: &[R],
    len: impl Fn(&R) -> usize,
    append: impl Fn(&R, &mut Float64Builder),
) -> ArrayRef {
    let total = rows.iter().map(&len).sum();
    let mut builder = ListBuilder::with_capacity(Float64Builder::with_capacity(total), rows.len());
    for row in rows {
        append(row, builder.values());
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// One JSON array per row, of the items `items` gives, each written by `write_item`.
fn json_arrays<R, T>(
    rows: &[R],
    items: impl Fn(&R) -> &[T],
    write_item: impl Fn(&mut Vec<u8>, &T),
) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(rows.len(), 2 * rows.len());
    // One scratch buffer for the batch: serde_json writes to `io::Write`, the builder is only
    // `fmt::Write`.
    let mut json = Vec::new();
    for row in rows {
        json.clear();
        json.push(b'[');
        for (i, item) in items(row).iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_item(&mut json, item);
        }
        json.push(b']');
        builder.append_value(std::str::from_utf8(&json).expect("JSON is written as UTF-8"));
    }
    Arc::new(builder.finish())
}

/// Attributes as a JSON object, values typed as [`AttrValue::to_json`] types them.
fn json_object(out: &mut Vec<u8>, attributes: &Attributes) {
    out.push(b'{');
    for (i, (key, value)) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_string(out, key);
        out.push(b':');
        match value {
            // The common case, without the copy `to_json` makes.
            AttrValue::Str(s) => json_string(out, s),
            value => serde_json::to_writer(&mut *out, &value.to_json()).expect(VEC_WRITE),
        }
    }
    out.push(b'}');
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect(VEC_WRITE);
}

/// Appends [`AttrValue::to_text`] as the next value, without an intermediate `String` except
/// for arrays and maps.
fn append_text(builder: &mut StringBuilder, value: &AttrValue) {
    match value {
        AttrValue::Str(s) => builder.append_value(s),
        AttrValue::Bool(b) => append_display(builder, b),
        AttrValue::Int(i) => append_display(builder, i),
        AttrValue::Double(d) => append_display(builder, d),
        AttrValue::Bytes(bytes) => {
            write_hex(builder, bytes);
            builder.append_value("");
        }
        AttrValue::Empty => builder.append_value(""),
        AttrValue::Array(_) | AttrValue::Map(_) => builder.append_value(value.to_text()),
    }
}

fn append_display(builder: &mut StringBuilder, value: impl Display) {
    write!(builder, "{value}").expect(BUILDER_WRITE);
    builder.append_value("");
}

/// A guess of the length of [`AttrValue::to_text`], for sizing builders.
fn text_len_estimate(value: &AttrValue) -> usize {
    match value {
        AttrValue::Str(s) => s.len(),
        AttrValue::Bytes(b) => 2 * b.len(),
        AttrValue::Empty => 0,
        _ => 8,
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into the value the builder is accumulating.
fn write_hex(builder: &mut StringBuilder, bytes: &[u8]) {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        let hex = &mut buf[..2 * chunk.len()];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
        }
        let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
        builder.write_str(hex).expect(BUILDER_WRITE);
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for byte in bytes {
        out.push(HEX_DIGITS[usize::from(byte >> 4)]);
        out.push(HEX_DIGITS[usize::from(byte & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::util::pretty::pretty_format_batches;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use sextant_model::MetricKind;

    use super::*;

    fn tenant() -> TenantId {
        TenantId::new("t").unwrap()
    }

    fn attrs(pairs: &[(&str, AttrValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn str_value(s: &str) -> AttrValue {
        AttrValue::Str(s.to_owned())
    }

    /// Checks the named columns of `batch` as arrow pretty-prints them.
    fn check(batch: &RecordBatch, columns: &[&str], expected: &str) {
        let indices: Vec<usize> = columns
            .iter()
            .map(|c| batch.schema().index_of(c).unwrap())
            .collect();
        let projected = batch.project(&indices).unwrap();
        let got = pretty_format_batches(&[projected]).unwrap().to_string();
        assert_eq!(got.trim(), expected.trim(), "\n{got}");
    }

    /// The entries of one row of a map column, values null when unset.
    fn map_entries(batch: &RecordBatch, column: &str, row: usize) -> Vec<(String, Option<String>)> {
        let map = batch.column_by_name(column).unwrap().as_map();
        let entries = map.value(row);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        (0..entries.len())
            .map(|i| {
                let value = values.is_valid(i).then(|| values.value(i).to_owned());
                (keys.value(i).to_owned(), value)
            })
            .collect()
    }

    fn log_row(time: u64, body: AttrValue) -> LogRow {
        LogRow {
            tenant: tenant(),
            service: "checkout".to_owned(),
            time_unix_nano: time,
            observed_time_unix_nano: time.saturating_add(1),
            severity_number: 9,
            severity_text: "INFO".to_owned(),
            body,
            trace_id: Vec::new(),
            span_id: Vec::new(),
            flags: 0,
            event_name: String::new(),
            attributes: Vec::new(),
            resource_attributes: attrs(&[("service.name", str_value("checkout"))]),
            scope_name: "lib".to_owned(),
            scope_version: "1.0".to_owned(),
        }
    }

    #[test]
    fn log_batch_has_the_schema_and_the_values() {
        let mut traced = log_row(1_000_000_000, str_value("payment failed"));
        traced.trace_id = (0..16).collect();
        traced.span_id = vec![0xab; 8];
        traced.flags = 1;
        traced.attributes = attrs(&[
            ("http.status", AttrValue::Int(500)),
            ("retry", AttrValue::Bool(true)),
            ("ratio", AttrValue::Double(0.5)),
            ("raw", AttrValue::Bytes(vec![0xde, 0xad])),
            (
                "tags",
                AttrValue::Array(vec![str_value("a"), AttrValue::Int(1)]),
            ),
            ("unset", AttrValue::Empty),
        ]);
        let structured = log_row(
            u64::MAX,
            AttrValue::Map(attrs(&[("user", str_value("ann"))])),
        );
        let batch = log_batch(&[traced, structured]);
        assert_eq!(batch.schema(), schema(Table::Logs));
        check(
            &batch,
            &[
                TIME_COLUMN,
                "observed_time",
                "service",
                "severity_text",
                "body",
                "flags",
            ],
            r#"
+--------------------------------+--------------------------------+----------+---------------+----------------+-------+
| time                           | observed_time                  | service  | severity_text | body           | flags |
+--------------------------------+--------------------------------+----------+---------------+----------------+-------+
| 1970-01-01T00:00:01Z           | 1970-01-01T00:00:01.000000001Z | checkout | INFO          | payment failed | 1     |
| 2262-04-11T23:47:16.854775807Z | 2262-04-11T23:47:16.854775807Z | checkout | INFO          | {"user":"ann"} | 0     |
+--------------------------------+--------------------------------+----------+---------------+----------------+-------+"#,
        );
        check(
            &batch,
            &["trace_id", "span_id"],
            r#"
+----------------------------------+------------------+
| trace_id                         | span_id          |
+----------------------------------+------------------+
| 000102030405060708090a0b0c0d0e0f | abababababababab |
|                                  |                  |
+----------------------------------+------------------+"#,
        );
        let text = |s: &str| Some(s.to_owned());
        assert_eq!(
            map_entries(&batch, "attributes", 0),
            [
                ("http.status".to_owned(), text("500")),
                ("retry".to_owned(), text("true")),
                ("ratio".to_owned(), text("0.5")),
                ("raw".to_owned(), text("dead")),
                ("tags".to_owned(), text(r#"["a",1]"#)),
                ("unset".to_owned(), None),
            ]
        );
        assert_eq!(map_entries(&batch, "attributes", 1), []);
        assert_eq!(
            map_entries(&batch, "resource_attributes", 1),
            [("service.name".to_owned(), text("checkout"))]
        );
    }

    fn span_row(start: u64, end: u64) -> SpanRow {
        SpanRow {
            tenant: tenant(),
            service: "checkout".to_owned(),
            trace_id: vec![0x11; 16],
            span_id: vec![0x22; 8],
            parent_span_id: Vec::new(),
            trace_state: String::new(),
            name: "GET /cart".to_owned(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            status_code: 0,
            status_message: String::new(),
            attributes: attrs(&[("http.route", str_value("/cart"))]),
            resource_attributes: Vec::new(),
            scope_name: String::new(),
            scope_version: String::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn span_batch_has_the_schema_and_the_values() {
        let mut failed = span_row(1_000, 3_500);
        failed.parent_span_id = vec![0x33; 8];
        failed.status_code = 2;
        failed.status_message = "boom \"quoted\"".to_owned();
        failed.events = vec![
            (
                2_000,
                "exception".to_owned(),
                attrs(&[
                    ("exception.type", str_value("IOError")),
                    ("attempt", AttrValue::Int(2)),
                    ("message", str_value("say \"hi\"\n")),
                ]),
            ),
            (3_000, "retry".to_owned(), Vec::new()),
        ];
        failed.links = vec![(
            vec![0x44; 16],
            vec![0x55; 8],
            attrs(&[("why", str_value("batch"))]),
        )];
        // An end before the start (clock skew) gives a zero duration, not a negative one.
        let skewed = span_row(5_000, 4_000);
        let batch = span_batch(&[failed, skewed]);
        assert_eq!(batch.schema(), schema(Table::Spans));
        check(
            &batch,
            &[
                TIME_COLUMN,
                "end_time",
                "duration_ns",
                "parent_span_id",
                "kind",
                "status_code",
                "status_message",
            ],
            r#"
+-----------------------------+--------------------------------+-------------+------------------+------+-------------+----------------+
| time                        | end_time                       | duration_ns | parent_span_id   | kind | status_code | status_message |
+-----------------------------+--------------------------------+-------------+------------------+------+-------------+----------------+
| 1970-01-01T00:00:00.000001Z | 1970-01-01T00:00:00.000003500Z | 2500        | 3333333333333333 | 2    | 2           | boom "quoted"  |
| 1970-01-01T00:00:00.000005Z | 1970-01-01T00:00:00.000004Z    | 0           |                  | 2    | 0           |                |
+-----------------------------+--------------------------------+-------------+------------------+------+-------------+----------------+"#,
        );
        let events = batch.column_by_name("events").unwrap().as_string::<i32>();
        assert_eq!(
            events.value(0),
            r#"[{"time":2000,"name":"exception","attributes":{"exception.type":"IOError","#
                .to_owned()
                + r#""attempt":2,"message":"say \"hi\"\n"}},{"time":3000,"name":"retry","#
                + r#""attributes":{}}]"#
        );
        assert_eq!(events.value(1), "[]");
        let links = batch.column_by_name("links").unwrap().as_string::<i32>();
        assert_eq!(
            links.value(0),
            r#"[{"trace_id":"44444444444444444444444444444444","span_id":"5555555555555555","#
                .to_owned()
                + r#""attributes":{"why":"batch"}}]"#
        );
        assert_eq!(links.value(1), "[]");
        assert_eq!(
            map_entries(&batch, "attributes", 1),
            [("http.route".to_owned(), Some("/cart".to_owned()))]
        );
    }

    fn metric_row(kind: MetricKind, time: u64) -> MetricRow {
        MetricRow {
            tenant: tenant(),
            service: "checkout".to_owned(),
            name: "latency".to_owned(),
            description: String::new(),
            unit: "ms".to_owned(),
            kind,
            time_unix_nano: time,
            start_time_unix_nano: 0,
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
            attributes: attrs(&[("route", str_value("/cart"))]),
            resource_attributes: Vec::new(),
            scope_name: String::new(),
            scope_version: String::new(),
        }
    }

    #[test]
    fn metric_batch_has_the_schema_and_the_values() {
        let mut gauge = metric_row(MetricKind::Gauge, 1_000);
        gauge.value = Some(12.5);
        let mut histogram = metric_row(MetricKind::Histogram, 2_000);
        histogram.value = Some(30.0);
        histogram.count = Some(4);
        histogram.min = Some(1.0);
        histogram.max = Some(20.0);
        histogram.bucket_bounds = vec![5.0, 10.0];
        histogram.bucket_counts = vec![2, 1, 1];
        histogram.temporality = 2;
        let mut summary = metric_row(MetricKind::Summary, 3_000);
        summary.count = Some(10);
        summary.quantiles = vec![(0.5, 3.0), (0.99, 9.0)];
        let mut sum = metric_row(MetricKind::Sum, 4_000);
        sum.value = Some(7.0);
        sum.is_monotonic = true;
        sum.temporality = 1;
        let batch = metric_batch(&[gauge, histogram, summary, sum]);
        assert_eq!(batch.schema(), schema(Table::Metrics));
        check(
            &batch,
            &[
                "kind",
                "value",
                "count",
                "min",
                "max",
                "temporality",
                "is_monotonic",
            ],
            r#"
+-----------+-------+-------+-----+------+-------------+--------------+
| kind      | value | count | min | max  | temporality | is_monotonic |
+-----------+-------+-------+-----+------+-------------+--------------+
| gauge     | 12.5  |       |     |      | 0           | false        |
| histogram | 30.0  | 4     | 1.0 | 20.0 | 2           | false        |
| summary   |       | 10    |     |      | 0           | false        |
| sum       | 7.0   |       |     |      | 1           | true         |
+-----------+-------+-------+-----+------+-------------+--------------+"#,
        );
        check(
            &batch,
            &[
                "bucket_bounds",
                "bucket_counts",
                "quantiles",
                "quantile_values",
            ],
            r#"
+---------------+---------------+-------------+-----------------+
| bucket_bounds | bucket_counts | quantiles   | quantile_values |
+---------------+---------------+-------------+-----------------+
| []            | []            | []          | []              |
| [5.0, 10.0]   | [2, 1, 1]     | []          | []              |
| []            | []            | [0.5, 0.99] | [3.0, 9.0]      |
| []            | []            | []          | []              |
+---------------+---------------+-------------+-----------------+"#,
        );
        assert_eq!(
            map_entries(&batch, "attributes", 2),
            [("route".to_owned(), Some("/cart".to_owned()))]
        );
    }

    #[test]
    fn empty_input_gives_an_empty_batch() {
        for (table, batch) in [
            (Table::Logs, log_batch(&[])),
            (Table::Spans, span_batch(&[])),
            (Table::Metrics, metric_batch(&[])),
        ] {
            assert_eq!(batch.num_rows(), 0, "{table}");
            assert_eq!(batch.schema(), schema(table), "{table}");
        }
    }

    #[test]
    fn schemas_are_shared_and_start_with_the_time_column() {
        for table in Table::STORED {
            assert!(Arc::ptr_eq(&schema(table), &schema(table)));
            let time = schema(table).field(0).clone();
            assert_eq!(time.name(), TIME_COLUMN);
            assert_eq!(time.data_type(), &timestamp_type());
            assert!(!time.is_nullable());
        }
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv(
                "service.name",
                any_value::Value::StringValue("checkout".to_owned()),
            )],
            ..Default::default()
        })
    }

    #[test]
    fn batch_from_payload_equals_the_batch_of_the_rows() {
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 5,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("hi".to_owned())),
                            }),
                            attributes: vec![kv("n", any_value::Value::IntValue(3))],
                            ..Default::default()
                        },
                        LogRecord {
                            observed_time_unix_nano: 6,
                            trace_id: vec![1; 16],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = batch_from_payload(&tenant(), Signal::Logs, &logs.encode_to_vec()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch, log_batch(&otlp::log_rows(&tenant(), &logs)));

        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET /".to_owned(),
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 25,
                        events: vec![span::Event {
                            time_unix_nano: 12,
                            name: "cache miss".to_owned(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = batch_from_payload(&tenant(), Signal::Traces, &traces.encode_to_vec()).unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch, span_batch(&otlp::span_rows(&tenant(), &traces)));

        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "queue.depth".to_owned(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint {
                                    time_unix_nano: 7,
                                    value: Some(number_data_point::Value::AsInt(4)),
                                    ..Default::default()
                                },
                                NumberDataPoint {
                                    time_unix_nano: 8,
                                    value: Some(number_data_point::Value::AsDouble(4.5)),
                                    ..Default::default()
                                },
                            ],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch =
            batch_from_payload(&tenant(), Signal::Metrics, &metrics.encode_to_vec()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch, metric_batch(&otlp::metric_rows(&tenant(), &metrics)));
    }

    #[test]
    fn batch_from_garbage_payload_is_a_decode_error() {
        for signal in Signal::ALL {
            let err = batch_from_payload(&tenant(), signal, b"\xff\xff\xff").unwrap_err();
            assert_eq!(err.signal, signal);
            assert!(
                err.to_string()
                    .starts_with(&format!("{signal} export request: "))
            );
        }
    }
}
