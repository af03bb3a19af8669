//! Reads a tenant's stored telemetry back, without changing anything on disk: the segment files
//! the catalog lists plus the write-ahead log past the checkpoint. For tools and tests; queries
//! go through the query engine.

use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int32Array, ListArray, MapArray, StringArray,
    TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::record_batch::RecordBatch;
use sextant_model::{
    AttrValue, Attributes, LogRow, MetricKind, MetricRow, SpanRow, Table, TenantId,
};
use sextant_tables::schema::batch_from_payload;

use crate::meta::{CatalogStore, SqliteMetadata};
use crate::wal::read_records;
use crate::{Error, Result};

/// The folder of the write-ahead log inside a data directory.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The metadata database inside a data directory.
pub fn metadata_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta.db")
}

/// Reads rows of one tenant from a data directory of a stopped server.
#[derive(Clone, Debug)]
pub struct TelemetryReader {
    data_dir: PathBuf,
}

impl TelemetryReader {
    pub fn new(data_dir: impl Into<PathBuf>) -> TelemetryReader {
        TelemetryReader {
            data_dir: data_dir.into(),
        }
    }

    /// Every row of a tenant's table: segment files first, then the log's unflushed records.
    pub fn batches(&self, tenant: &TenantId, table: Table) -> Result<Vec<RecordBatch>> {
        let meta = SqliteMetadata::open(&metadata_path(&self.data_dir))?;
        if meta.key_check()?.is_some() {
            return Err(Error::Crypto(format!(
                "`{}` is encrypted; the reader reads unencrypted data directories only",
                self.data_dir.display()
            )));
        }
        let checkpoint = meta.checkpoint()?;
        // Records of an erased tenant up to its marker are not the tenant's data any more.
        let erased_through = meta.erasures()?.get(tenant).copied().unwrap_or(0);
        let mut batches = Vec::new();
        let segments = crate::segments_dir(&self.data_dir);
        for entry in meta.segments()? {
            if entry.tenant != *tenant || entry.table != table {
                continue;
            }
            let path = segments.join(&entry.file.path);
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .map_err(|e| Error::Decode(e.to_string()))?;
            for batch in reader {
                batches.push(batch.map_err(|e| Error::Decode(e.to_string()))?);
            }
        }
        read_records(&wal_dir(&self.data_dir), &mut |record| {
            if record.seq > checkpoint
                && record.seq > erased_through
                && record.tenant == *tenant
                && Table::of(record.signal) == table
            {
                batches.push(batch_from_payload(tenant, record.signal, &record.payload)?);
            }
            Ok(())
        })?;
        Ok(batches)
    }

    pub fn log_rows(&self, tenant: &TenantId) -> Result<Vec<LogRow>> {
        let mut rows = Vec::new();
        for batch in self.batches(tenant, Table::Logs)? {
            let c = Columns(&batch);
            for i in 0..batch.num_rows() {
                rows.push(LogRow {
                    tenant: tenant.clone(),
                    service: c.str("service", i),
                    time_unix_nano: c.time("time", i),
                    observed_time_unix_nano: c.time("observed_time", i),
                    severity_number: c.i32("severity_number", i),
                    severity_text: c.str("severity_text", i),
                    body: AttrValue::Str(c.str("body", i)),
                    trace_id: c.hex("trace_id", i),
                    span_id: c.hex("span_id", i),
                    flags: c.u32("flags", i),
                    event_name: c.str("event_name", i),
                    attributes: c.map("attributes", i),
                    resource_attributes: c.map("resource_attributes", i),
                    scope_name: c.str("scope_name", i),
                    scope_version: c.str("scope_version", i),
                });
            }
        }
        Ok(rows)
    }

    pub fn span_rows(&self, tenant: &TenantId) -> Result<Vec<SpanRow>> {
        let mut rows = Vec::new();
        for batch in self.batches(tenant, Table::Spans)? {
            let c = Columns(&batch);
            for i in 0..batch.num_rows() {
                rows.push(SpanRow {
                    tenant: tenant.clone(),
                    service: c.str("service", i),
                    trace_id: c.hex("trace_id", i),
                    span_id: c.hex("span_id", i),
                    parent_span_id: c.hex("parent_span_id", i),
                    trace_state: c.str("trace_state", i),
                    name: c.str("name", i),
                    kind: c.i32("kind", i),
                    start_time_unix_nano: c.time("time", i),
                    end_time_unix_nano: c.time("end_time", i),
                    status_code: c.i32("status_code", i),
                    status_message: c.str("status_message", i),
                    attributes: c.map("attributes", i),
                    resource_attributes: c.map("resource_attributes", i),
                    scope_name: c.str("scope_name", i),
                    scope_version: c.str("scope_version", i),
                    events: events_from_json(&c.str("events", i)),
                    links: links_from_json(&c.str("links", i)),
                });
            }
        }
        Ok(rows)
    }

    pub fn metric_rows(&self, tenant: &TenantId) -> Result<Vec<MetricRow>> {
        let mut rows = Vec::new();
        for batch in self.batches(tenant, Table::Metrics)? {
            let c = Columns(&batch);
            for i in 0..batch.num_rows() {
                let quantiles = c.f64_list("quantiles", i);
                let values = c.f64_list("quantile_values", i);
                rows.push(MetricRow {
                    tenant: tenant.clone(),
                    service: c.str("service", i),
                    name: c.str("name", i),
                    description: c.str("description", i),
                    unit: c.str("unit", i),
                    kind: MetricKind::from_name(&c.str("kind", i))
                        .ok_or_else(|| Error::Decode(format!("unknown metric kind in row {i}")))?,
                    time_unix_nano: c.time("time", i),
                    start_time_unix_nano: c.time("start_time", i),
                    value: c.opt_f64("value", i),
                    count: c.opt_u64("count", i),
                    min: c.opt_f64("min", i),
                    max: c.opt_f64("max", i),
                    bucket_bounds: c.f64_list("bucket_bounds", i),
                    bucket_counts: c.u64_list("bucket_counts", i),
                    quantiles: quantiles.into_iter().zip(values).collect(),
                    temporality: c.i32("temporality", i),
                    is_monotonic: c.bool("is_monotonic", i),
                    flags: c.u32("flags", i),
                    attributes: c.map("attributes", i),
                    resource_attributes: c.map("resource_attributes", i),
                    scope_name: c.str("scope_name", i),
                    scope_version: c.str("scope_version", i),
                });
            }
        }
        Ok(rows)
    }
}

/// Typed access to a batch's columns by name. A column of the wrong type is a bug in the
/// schema, so these panic with the column's name.
struct Columns<'a>(&'a RecordBatch);

impl Columns<'_> {
    fn column<T: Array + 'static>(&self, name: &str) -> &T {
        self.0
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .unwrap_or_else(|| panic!("column `{name}` missing or of another type"))
    }

    fn str(&self, name: &str, i: usize) -> String {
        self.column::<StringArray>(name).value(i).to_owned()
    }

    fn hex(&self, name: &str, i: usize) -> Vec<u8> {
        hex::decode(self.column::<StringArray>(name).value(i)).unwrap_or_default()
    }

    fn time(&self, name: &str, i: usize) -> u64 {
        self.column::<TimestampNanosecondArray>(name)
            .value(i)
            .max(0) as u64
    }

    fn i32(&self, name: &str, i: usize) -> i32 {
        self.column::<Int32Array>(name).value(i)
    }

    fn u32(&self, name: &str, i: usize) -> u32 {
        self.column::<UInt32Array>(name).value(i)
    }

    fn bool(&self, name: &str, i: usize) -> bool {
        self.column::<BooleanArray>(name).value(i)
    }

    fn opt_f64(&self, name: &str, i: usize) -> Option<f64> {
        let column = self.column::<Float64Array>(name);
        column.is_valid(i).then(|| column.value(i))
    }

    fn opt_u64(&self, name: &str, i: usize) -> Option<u64> {
        let column = self.column::<UInt64Array>(name);
        column.is_valid(i).then(|| column.value(i))
    }

    fn f64_list(&self, name: &str, i: usize) -> Vec<f64> {
        let list = self.column::<ListArray>(name).value(i);
        list.as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec()
    }

    fn u64_list(&self, name: &str, i: usize) -> Vec<u64> {
        let list = self.column::<ListArray>(name).value(i);
        list.as_primitive::<arrow::datatypes::UInt64Type>()
            .values()
            .to_vec()
    }

    fn map(&self, name: &str, i: usize) -> Attributes {
        let entries = self.column::<MapArray>(name).value(i);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        (0..entries.len())
            .map(|j| {
                let value = if values.is_valid(j) {
                    AttrValue::Str(values.value(j).to_owned())
                } else {
                    AttrValue::Empty
                };
                (keys.value(j).to_owned(), value)
            })
            .collect()
    }
}

fn json_attributes(value: Option<&serde_json::Value>) -> Attributes {
    value
        .and_then(|v| v.as_object())
        .map(|object| {
            object
                .iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), AttrValue::Str(text))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn events_from_json(text: &str) -> Vec<(u64, String, Attributes)> {
    let parsed: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    parsed
        .iter()
        .map(|event| {
            (
                event["time"].as_u64().unwrap_or(0),
                event["name"].as_str().unwrap_or("").to_owned(),
                json_attributes(event.get("attributes")),
            )
        })
        .collect()
}

fn links_from_json(text: &str) -> Vec<(Vec<u8>, Vec<u8>, Attributes)> {
    let parsed: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    parsed
        .iter()
        .map(|link| {
            let id = |key: &str| hex::decode(link[key].as_str().unwrap_or("")).unwrap_or_default();
            (
                id("trace_id"),
                id("span_id"),
                json_attributes(link.get("attributes")),
            )
        })
        .collect()
}
